// Cross-protocol over the one WebSocket port: MQTT.js and @stomp/stompjs share one topic
// namespace (docs/protocol-mapping.md): STOMP /topic/a/b is MQTT topic a/b.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useBroker } from '../broker.js';
import { closeAll, mqttConnect, stompConnect, stompPublishWithReceipt, stompSubscribe } from '../clients.js';

const broker = useBroker();

test('MQTT.js publish on chat/room.1 reaches a stompjs subscriber on /topic/chat/+', async () => {
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  const { client: mq } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  try {
    const { inbox, id } = await stompSubscribe(stomp, '/topic/chat/+');
    await mq.publishAsync('chat/room.1', 'hi from MQTT', { qos: 0 });
    const m = await inbox.next();
    assert.equal(m.body, 'hi from MQTT');
    assert.equal(m.headers.destination, '/topic/chat/room.1');
    assert.equal(m.headers.subscription, id);
    assert.ok(m.headers['message-id']);

    await mq.publishAsync('chat/room.1', 'QoS 1 from MQTT', { qos: 1 });
    const m1 = await inbox.next();
    assert.equal(m1.body, 'QoS 1 from MQTT');
    assert.equal(m1.headers.destination, '/topic/chat/room.1');
  } finally {
    await closeAll(stomp, mq);
  }
});

test('stompjs publish to /topic/chat/room.1 reaches an MQTT.js subscriber on chat/#', async () => {
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  const { client: mq, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  try {
    await mq.subscribeAsync('chat/#', { qos: 1 });
    stomp.publish({ destination: '/topic/chat/room.1', body: 'hi from STOMP' });
    const m = await inbox.next();
    assert.equal(m.topic, 'chat/room.1');
    assert.equal(m.payload.toString(), 'hi from STOMP');
    assert.equal(m.packet.qos, 0, 'a SEND without persistent:true is QoS 0');
  } finally {
    await closeAll(stomp, mq);
  }
});

const ODD = 'home/a.b*c d/ü €/日本語 😀';

test(`a topic with dots, *, spaces and non-ASCII survives MQTT → STOMP: ${ODD}`, async () => {
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  const { client: mq } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  try {
    const exact = await stompSubscribe(stomp, `/topic/${ODD}`);
    const wild = await stompSubscribe(stomp, '/topic/home/#');
    await mq.publishAsync(ODD, 'odd ü', { qos: 1 });
    for (const { inbox, id } of [exact, wild]) {
      const m = await inbox.next();
      assert.equal(m.body, 'odd ü');
      assert.equal(m.headers.destination, `/topic/${ODD}`);
      assert.equal(m.headers.subscription, id);
    }
  } finally {
    await closeAll(stomp, mq);
  }
});

test(`a topic with dots, *, spaces and non-ASCII survives STOMP → MQTT: ${ODD}`, async () => {
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  const { client: exact, inbox: exactIn } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  const { client: wild, inbox: wildIn } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 5 });
  try {
    await exact.subscribeAsync(ODD, { qos: 1 });
    await wild.subscribeAsync('home/+/+/+', { qos: 1 });
    await stompPublishWithReceipt(stomp, { destination: `/topic/${ODD}`, body: 'odd ü' });
    for (const inbox of [exactIn, wildIn]) {
      const m = await inbox.next();
      assert.equal(m.topic, ODD);
      assert.equal(m.payload.toString(), 'odd ü');
    }
  } finally {
    await closeAll(stomp, exact, wild);
  }
});

test('a topic with a colon crosses both ways (STOMP 1.2 header escaping)', async () => {
  const topic = 'sensors/urn:dev:42/temp';
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  const { client: mq, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  try {
    const { inbox: sinbox } = await stompSubscribe(stomp, `/topic/${topic}`);
    await mq.subscribeAsync(topic, { qos: 0 });
    await mq.publishAsync(topic, 'from mqtt', { qos: 0 });
    const s = await sinbox.next();
    assert.equal(s.headers.destination, `/topic/${topic}`);
    assert.equal(s.body, 'from mqtt');
    const echo = await inbox.next();
    assert.equal(echo.payload.toString(), 'from mqtt');

    stomp.publish({ destination: `/topic/${topic}`, body: 'from stomp' });
    const m = await inbox.next();
    assert.equal(m.topic, topic);
    assert.equal(m.payload.toString(), 'from stomp');
  } finally {
    await closeAll(stomp, mq);
  }
});

test('STOMP persistent:true reaches MQTT as QoS 1 (capped by the subscription)', async () => {
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  const { client: q1, inbox: in1 } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  const { client: q0, inbox: in0 } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 4 });
  try {
    await q1.subscribeAsync('qos/persistent', { qos: 1 });
    await q0.subscribeAsync('qos/persistent', { qos: 0 });
    stomp.publish({ destination: '/topic/qos/persistent', body: 'p', headers: { persistent: 'true' } });
    const m1 = await in1.next();
    assert.equal(m1.payload.toString(), 'p');
    assert.equal(m1.packet.qos, 1);
    const m0 = await in0.next();
    assert.equal(m0.payload.toString(), 'p');
    assert.equal(m0.packet.qos, 0);
  } finally {
    await closeAll(stomp, q1, q0);
  }
});

test('MQTT 5 content type and STOMP content-type map onto each other', async () => {
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  const { client: mq, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 5 });
  try {
    // MQTT 5 → STOMP
    const { inbox: sinbox } = await stompSubscribe(stomp, '/topic/typed/from-mqtt');
    await mq.publishAsync('typed/from-mqtt', '{"a":1}', {
      qos: 1,
      properties: { contentType: 'application/json' },
    });
    const s = await sinbox.next();
    assert.equal(s.body, '{"a":1}');
    assert.equal(s.headers['content-type'], 'application/json');

    // STOMP → MQTT 5: content-type → Content Type, other headers → User Properties.
    await mq.subscribeAsync('typed/from-stomp', { qos: 1 });
    stomp.publish({
      destination: '/topic/typed/from-stomp',
      body: '<a/>',
      headers: { 'content-type': 'application/xml', 'x-trace': 'abc 123' },
    });
    const m = await inbox.next();
    assert.equal(m.topic, 'typed/from-stomp');
    assert.equal(m.payload.toString(), '<a/>');
    assert.equal(m.packet.properties?.contentType, 'application/xml');
    assert.equal(m.packet.properties?.userProperties?.['x-trace'], 'abc 123');
    assert.equal(m.packet.properties?.userProperties?.destination, undefined, 'STOMP frame headers are not user properties');
  } finally {
    await closeAll(stomp, mq);
  }
});

test('STOMP reply-to / correlation-id ⇔ MQTT 5 Response Topic / Correlation Data', async () => {
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  const { client: mq, inbox } = await mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 5 });
  try {
    // STOMP → MQTT 5: a /topic/… reply-to becomes its topic.
    await mq.subscribeAsync('rpc/requests', { qos: 1 });
    stomp.publish({
      destination: '/topic/rpc/requests',
      body: 'ping',
      headers: { 'reply-to': '/topic/rpc/replies/7', 'correlation-id': 'req-7' },
    });
    const m = await inbox.next();
    assert.equal(m.payload.toString(), 'ping');
    assert.equal(m.packet.properties?.responseTopic, 'rpc/replies/7');
    assert.equal(Buffer.from(m.packet.properties?.correlationData ?? []).toString(), 'req-7');

    // MQTT 5 → STOMP: the reverse.
    const { inbox: sinbox } = await stompSubscribe(stomp, '/topic/rpc/replies/+');
    await mq.publishAsync('rpc/replies/8', 'pong', {
      qos: 1,
      properties: { responseTopic: 'rpc/replies/9', correlationData: Buffer.from('req-8') },
    });
    const s = await sinbox.next();
    assert.equal(s.body, 'pong');
    assert.equal(s.headers['reply-to'], '/topic/rpc/replies/9');
    assert.equal(s.headers['correlation-id'], 'req-8');
  } finally {
    await closeAll(stomp, mq);
  }
});

test('an MQTT.js last will (connection dropped) reaches a stompjs subscriber', async () => {
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  const { inbox } = await stompSubscribe(stomp, '/topic/will/+');
  const { client: mortal } = await mqttConnect(broker.wsUrl('/ws'), {
    protocolVersion: 4,
    will: { topic: 'will/mortal', payload: Buffer.from('gone'), qos: 1, retain: false },
  });
  try {
    // Drop the connection without DISCONNECT: the broker must publish the will [MQTT-3.1.2-8].
    mortal.stream.destroy();
    const m = await inbox.next('the will message');
    assert.equal(m.body, 'gone');
    assert.equal(m.headers.destination, '/topic/will/mortal');
  } finally {
    mortal.end(true);
    await closeAll(stomp);
  }
});
