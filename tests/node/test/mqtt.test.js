// MQTT.js against Diglot over WebSocket (ws://ADDR/ws, subprotocol "mqtt") and raw TCP.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { unique, useBroker } from '../broker.js';
import { closeAll, mqttConnect } from '../clients.js';

const broker = useBroker();

for (const [label, protocolVersion] of [
  ['MQTT 3.1.1', 4],
  ['MQTT 5', 5],
]) {
  describe(`MQTT.js ${label} over WebSocket`, () => {
    test('negotiates the "mqtt" subprotocol and connects', async () => {
      const { client } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion });
      try {
        assert.equal(client.connected, true);
      } finally {
        await closeAll(client);
      }
    });

    test('subscribe with a + wildcard, QoS 0 and QoS 1 round trip', async () => {
      const base = unique(`mqttjs/v${protocolVersion}/`);
      const { client: sub, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion });
      const { client: pub } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion });
      try {
        const granted = await sub.subscribeAsync(`${base}/+/temp`, { qos: 1 });
        assert.equal(granted.length, 1);
        assert.equal(granted[0].topic, `${base}/+/temp`);
        assert.equal(granted[0].qos, 1, 'SUBACK grants QoS 1');

        // Topics the filter does not match, published before the one it does: the first
        // message the subscriber sees must be the matching one.
        await pub.publishAsync(`${base}/kitchen/temp/extra`, 'no', { qos: 0 });
        await pub.publishAsync(`${base}/temp`, 'no', { qos: 0 });

        await pub.publishAsync(`${base}/kitchen/temp`, '21.5', { qos: 0 });
        const m0 = await inbox.next();
        assert.equal(m0.topic, `${base}/kitchen/temp`);
        assert.equal(m0.payload.toString(), '21.5');
        assert.equal(m0.packet.qos, 0);
        assert.equal(m0.packet.retain, false);

        // QoS 1: publishAsync resolves on PUBACK; the delivery is QoS 1 with a packet id
        // (MQTT.js answers it with PUBACK). The payload is binary, NUL bytes included.
        const binary = Buffer.from([0x00, 0x01, 0xfe, 0xff, 0x00, 0x41]);
        await pub.publishAsync(`${base}/hall/temp`, binary, { qos: 1 });
        const m1 = await inbox.next();
        assert.equal(m1.topic, `${base}/hall/temp`);
        assert.deepEqual(Buffer.from(m1.payload), binary);
        assert.equal(m1.packet.qos, 1);
        assert.equal(typeof m1.packet.messageId, 'number');
        assert.ok(m1.packet.messageId > 0);

        // A QoS 0 subscription downgrades a QoS 1 publish to QoS 0.
        const g0 = await sub.subscribeAsync(`${base}/low/#`, { qos: 0 });
        assert.equal(g0[0].qos, 0);
        await pub.publishAsync(`${base}/low/x`, 'down', { qos: 1 });
        const md = await inbox.next();
        assert.equal(md.topic, `${base}/low/x`);
        assert.equal(md.payload.toString(), 'down');
        assert.equal(md.packet.qos, 0);
      } finally {
        await closeAll(sub, pub);
      }
    });

    test('a client receives its own publish (QoS 1) and unsubscribe stops delivery', async () => {
      const topic = unique(`mqttjs/v${protocolVersion}/self/`);
      const { client, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion });
      try {
        await client.subscribeAsync(topic, { qos: 1 });
        await client.publishAsync(topic, 'echo', { qos: 1 });
        const m = await inbox.next();
        assert.equal(m.topic, topic);
        assert.equal(m.payload.toString(), 'echo');
        assert.equal(m.packet.qos, 1);

        await client.unsubscribeAsync(topic);
        const marker = `${topic}-marker`;
        await client.subscribeAsync(marker, { qos: 1 });
        await client.publishAsync(topic, 'after-unsubscribe', { qos: 1 });
        await client.publishAsync(marker, 'marker', { qos: 1 });
        const next = await inbox.next();
        assert.equal(next.topic, marker, 'nothing arrives on the unsubscribed topic');
      } finally {
        await closeAll(client);
      }
    });
  });
}

test('MQTT 5: content type and user properties are forwarded unchanged [MQTT-3.3.2-20, MQTT-3.3.2-18]', async () => {
  const topic = unique('mqttjs/v5/props/');
  const { client: sub, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 5 });
  const { client: pub } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 5 });
  try {
    await sub.subscribeAsync(topic, { qos: 1 });
    await pub.publishAsync(topic, '{"t":1}', {
      qos: 1,
      properties: {
        contentType: 'application/json',
        userProperties: { source: 'mqtt.js', 'x-ü': 'ä b' },
      },
    });
    const m = await inbox.next();
    assert.equal(m.payload.toString(), '{"t":1}');
    assert.equal(m.packet.properties?.contentType, 'application/json');
    assert.equal(m.packet.properties?.userProperties?.source, 'mqtt.js');
    assert.equal(m.packet.properties?.userProperties?.['x-ü'], 'ä b');
  } finally {
    await closeAll(sub, pub);
  }
});

test('MQTT.js over raw TCP reaches an MQTT.js subscriber over WebSocket', async () => {
  const topic = unique('mqttjs/tcp-to-ws/');
  const { client: sub, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  const { client: pub } = await mqttConnect(`mqtt://${broker.mqtt}`, { protocolVersion: 4 });
  try {
    await sub.subscribeAsync(topic, { qos: 1 });
    await pub.publishAsync(topic, 'over tcp', { qos: 1 });
    const m = await inbox.next();
    assert.equal(m.topic, topic);
    assert.equal(m.payload.toString(), 'over tcp');
    assert.equal(m.packet.qos, 1);
  } finally {
    await closeAll(sub, pub);
  }
});

test('an inbound QoS 2 publish completes and is delivered at the granted QoS', async () => {
  const topic = unique('mqttjs/qos2/');
  const { client: sub, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  const { client: pub } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  try {
    const [granted] = await sub.subscribeAsync(topic, { qos: 2 });
    assert.ok([0, 1, 2].includes(granted.qos), `granted ${granted.qos}`);
    // publishAsync with QoS 2 resolves after PUBREC, PUBREL, PUBCOMP.
    await pub.publishAsync(topic, 'exactly once', { qos: 2 });
    const m = await inbox.next();
    assert.equal(m.payload.toString(), 'exactly once');
    // Delivered at min(publish QoS, granted QoS) [MQTT-3.8.4-8 / MQTT 5 §3.8.4].
    assert.equal(m.packet.qos, Math.min(2, granted.qos));
  } finally {
    await closeAll(sub, pub);
  }
});

test('a second connection with the same client id takes over the session [MQTT-3.1.4-3]', async () => {
  const clientId = unique('takeover-');
  const { client: first } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4, clientId });
  const closed = new Promise((res) => first.once('close', res));
  const { client: second, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4, clientId });
  try {
    await closed;
    assert.equal(first.connected, false);
    const topic = unique('mqttjs/takeover/');
    await second.subscribeAsync(topic, { qos: 1 });
    await second.publishAsync(topic, 'still here', { qos: 1 });
    assert.equal((await inbox.next()).payload.toString(), 'still here');
  } finally {
    first.end(true);
    await closeAll(second);
  }
});

test('MQTT.js connects on the /mqtt path too', async () => {
  const { client } = await mqttConnect(broker.wsUrl('/mqtt'), { protocolVersion: 4 });
  await closeAll(client);
});
