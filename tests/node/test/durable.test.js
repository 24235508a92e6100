// Durable delivery with real clients: MQTT.js persistent sessions (3.1.1 clean=false, MQTT 5
// clean start 0 + Session Expiry Interval) keep QoS 1 messages while the client is away and
// across a daemon restart; @stomp/stompjs `/queue/<name>` is a competing-consumer queue with
// client-individual acks, redelivery (`redelivered`, `redelivery-count`) and a dead-letter
// queue `/queue/dlq.<name>`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import mqtt from 'mqtt';

import { EVENTUALLY_MS, Inbox, eventually, startBroker, unique, useBroker } from '../broker.js';
import { closeAll, mqttConnect, stompConnect, stompPublishWithReceipt, stompSubscribe } from '../clients.js';

const broker = useBroker();

/**
 * Connects MQTT.js with listeners attached (and `setup(client)` run) before the CONNECT goes
 * out, so neither the CONNACK nor a PUBLISH the broker sends right after it (a stored
 * session's backlog) can be missed or handled before the test is ready for it. Resolves to
 * { client, inbox, connack }.
 */
async function mqttSession(url, opts, setup = () => {}) {
  const client = mqtt.connect(url, {
    reconnectPeriod: 0,
    connectTimeout: EVENTUALLY_MS,
    keepalive: 30,
    ...opts,
  });
  setup(client);
  const inbox = new Inbox(`MQTT client ${opts.clientId}`);
  client.on('message', (topic, payload, packet) => inbox.push({ topic, payload, packet }));
  let onError;
  let onClose;
  try {
    const connack = await eventually(`CONNACK for ${opts.clientId}`, (res, rej) => {
      onError = rej;
      onClose = () => rej(new Error(`connection of ${opts.clientId} closed before CONNACK`));
      client.once('connect', res);
      client.once('error', onError);
      client.once('close', onClose);
    });
    return { client, inbox, connack };
  } catch (e) {
    client.end(true);
    throw e;
  } finally {
    client.removeListener('error', onError);
    client.removeListener('close', onClose);
  }
}

/** Options for a persistent session in MQTT 3.1.1 (4) or MQTT 5 (5). */
function persistent(clientId, protocolVersion) {
  const opts = { clientId, protocolVersion, clean: false };
  if (protocolVersion === 5) opts.properties = { sessionExpiryInterval: 300 };
  return opts;
}

/** Creates a persistent session subscribed to `filter` at QoS 1, then leaves (DISCONNECT). */
async function parkSession(url, clientId, protocolVersion, filter) {
  const { client, connack } = await mqttSession(url, persistent(clientId, protocolVersion));
  try {
    assert.equal(connack.sessionPresent, false, 'a new client id has no session yet');
    const granted = await client.subscribeAsync(filter, { qos: 1 });
    assert.equal(granted[0].qos, 1, 'SUBACK grants QoS 1');
  } finally {
    await closeAll(client);
  }
}

/** Publishes `n` QoS 1 messages m0..m{n-1}, each acknowledged (PUBACK) before the next. */
async function publishAcked(url, topic, n, protocolVersion = 4) {
  const { client } = await mqttConnect(url, { protocolVersion });
  try {
    for (let i = 0; i < n; i += 1) {
      await client.publishAsync(topic, `m${i}`, { qos: 1 });
    }
  } finally {
    await closeAll(client);
  }
}

const expected = (n, from = 0) => Array.from({ length: n }, (_, i) => `m${from + i}`);

/** Reads `n` messages from `inbox`. */
async function take(inbox, n) {
  const got = [];
  for (let i = 0; i < n; i += 1) got.push(await inbox.next(`message ${i + 1} of ${n}`));
  return got;
}

/** Waits (eventually-bounded) until `predicate()` holds; polls, asserts nothing about time. */
async function until(what, predicate) {
  let timer;
  try {
    await eventually(what, (res) => {
      timer = setInterval(() => predicate() && res(), 10);
    });
  } finally {
    clearInterval(timer);
  }
}

for (const [label, protocolVersion] of [
  ['MQTT 3.1.1 (clean session 0)', 4],
  ['MQTT 5 (clean start 0, session expiry 300 s)', 5],
]) {
  describe(`MQTT.js ${label} persistent session`, () => {
    test('keeps 20 QoS 1 messages while the client is away and delivers them in order', async () => {
      const clientId = unique(`away-v${protocolVersion}-`);
      const base = unique(`durable/v${protocolVersion}/`);
      await parkSession(broker.wsUrl(), clientId, protocolVersion, `${base}/#`);
      await publishAcked(broker.wsUrl(), `${base}/a`, 20, protocolVersion);

      const { client, inbox, connack } = await mqttSession(broker.wsUrl(), persistent(clientId, protocolVersion));
      try {
        assert.equal(connack.sessionPresent, true, 'CONNACK session present');
        const got = await take(inbox, 20);
        assert.deepEqual(
          got.map((m) => m.payload.toString()),
          expected(20),
        );
        for (const m of got) {
          assert.equal(m.topic, `${base}/a`);
          assert.equal(m.packet.qos, 1);
          // Never sent before: DUP must be 0 on a first delivery attempt [MQTT-3.3.1-3].
          assert.equal(m.packet.dup, false, `DUP on first delivery of ${m.payload}`);
        }
        // The session keeps its subscription: a message published now arrives too.
        await publishAcked(broker.wsUrl(), `${base}/b`, 1, protocolVersion);
        const live = await inbox.next('a live message on the resumed session');
        assert.equal(live.topic, `${base}/b`);
        assert.equal(live.payload.toString(), 'm0');
      } finally {
        await closeAll(client);
      }
    });

    test('redelivers an unacknowledged message first, with DUP=1, then the rest in order', async () => {
      const clientId = unique(`unacked-v${protocolVersion}-`);
      const base = unique(`durable/unacked/v${protocolVersion}/`);
      await parkSession(broker.wsUrl(), clientId, protocolVersion, `${base}/#`);
      await publishAcked(broker.wsUrl(), `${base}/x`, 5, protocolVersion);

      // MQTT.js PUBACKs a QoS 1 message only once handleMessage calls back: never calling it
      // leaves m0 unacknowledged (and stalls the client's input, so nothing else is acked).
      // It must be in place before the CONNECT: the backlog follows the CONNACK at once.
      const first = await mqttSession(broker.wsUrl(), persistent(clientId, protocolVersion), (c) => {
        c.handleMessage = () => {};
      });
      let unacked;
      try {
        assert.equal(first.connack.sessionPresent, true);
        unacked = await first.inbox.next('the first delivery of m0');
        assert.equal(unacked.payload.toString(), 'm0');
        assert.equal(unacked.packet.dup, false);
      } finally {
        // Forced: MQTT.js would otherwise wait for its stalled input.
        await new Promise((res) => first.client.end(true, res));
      }

      const again = await mqttSession(broker.wsUrl(), persistent(clientId, protocolVersion));
      try {
        assert.equal(again.connack.sessionPresent, true);
        const got = await take(again.inbox, 5);
        assert.deepEqual(
          got.map((m) => m.payload.toString()),
          expected(5),
          'the unacknowledged message first, then the rest, in publish order',
        );
        assert.equal(got[0].packet.dup, true, 'DUP=1 on the redelivery of m0 [MQTT-3.3.1-1]');
        // The original packet identifier is reused [MQTT-4.4.0-1].
        assert.equal(got[0].packet.messageId, unacked.packet.messageId);
        if (protocolVersion === 5) {
          const props = got[0].packet.properties?.userProperties ?? {};
          assert.equal(String(props['redelivery-count']), '1', `user properties ${JSON.stringify(props)}`);
        }
        // m1..m4 may or may not have reached the first client before it stopped reading, so
        // their DUP flag is not checked.
        for (const m of got) assert.equal(m.packet.qos, 1);
      } finally {
        await closeAll(again.client);
      }
    });
  });
}

for (const protocolVersion of [4, 5]) {
  test(`MQTT.js v${protocolVersion === 4 ? '3.1.1' : '5'} persistent session survives a daemon restart (SIGTERM, same data dir)`, async () => {
    let b = await startBroker();
    try {
      const clientId = unique(`restart-v${protocolVersion}-`);
      const base = unique(`durable/restart/v${protocolVersion}/`);
      await parkSession(`mqtt://${b.mqtt}`, clientId, protocolVersion, `${base}/+`);
      await publishAcked(`mqtt://${b.mqtt}`, `${base}/r`, 20, protocolVersion);

      b = await b.restart();

      const { client, inbox, connack } = await mqttSession(
        `mqtt://${b.mqtt}`,
        persistent(clientId, protocolVersion),
      );
      try {
        assert.equal(connack.sessionPresent, true, 'CONNACK session present after the restart');
        const got = await take(inbox, 20);
        assert.deepEqual(
          got.map((m) => m.payload.toString()),
          expected(20),
        );
        for (const m of got) {
          assert.equal(m.topic, `${base}/r`);
          assert.equal(m.packet.qos, 1);
        }
      } finally {
        await closeAll(client);
      }
    } finally {
      const { code, signal } = await b.stop();
      assert.equal(code, 0, `diglot exited with code ${code} signal ${signal}\n${b.log()}`);
    }
  });
}

describe('@stomp/stompjs durable queues', () => {
  test('/queue/jobs with two consumers: each message reaches exactly one, round-robin', async () => {
    const destination = '/queue/jobs';
    const { client: c1 } = await stompConnect(broker.wsUrl());
    const { client: c2 } = await stompConnect(broker.wsUrl());
    const { client: pub } = await stompConnect(broker.wsUrl());
    try {
      const got = { c1: [], c2: [] };
      const destinations = new Set();
      const s1 = await stompSubscribe(c1, destination, { id: 'w1' });
      const s2 = await stompSubscribe(c2, destination, { id: 'w2' });
      const drain = async (sub, name) => {
        for (;;) {
          const m = await sub.inbox.next().catch(() => null);
          if (!m) return;
          destinations.add(m.headers.destination);
          got[name].push(m.body);
        }
      };
      const draining = [drain(s1, 'c1'), drain(s2, 'c2')];
      for (let i = 0; i < 10; i += 1) {
        const { frame } = await stompPublishWithReceipt(pub, { destination, body: `job${i}` });
        assert.equal(frame.command, 'RECEIPT');
      }
      const all = () => [...got.c1, ...got.c2];
      await until('all 10 jobs delivered', () => new Set(all()).size === 10);
      assert.equal(all().length, 10, `no job delivered twice: ${JSON.stringify(got)}`);
      assert.deepEqual([...destinations], [destination]);
      assert.deepEqual([...all()].sort(), expected(10).map((m) => m.replace('m', 'job')).sort());
      // Round-robin: both consumers are idle and have room, so they alternate.
      assert.equal(got.c1.length, 5, JSON.stringify(got));
      assert.equal(got.c2.length, 5, JSON.stringify(got));
      // Each consumer sees its share in queue order.
      for (const name of ['c1', 'c2']) {
        const n = got[name].map((b) => Number(b.slice(3)));
        assert.deepEqual(n, [...n].sort((a, b) => a - b), `${name} in order: ${got[name]}`);
      }
      // Stop the drains (they give up on the "eventually" bound otherwise).
      s1.inbox.push(null);
      s2.inbox.push(null);
      await Promise.all(draining);
    } finally {
      await closeAll(c1, c2, pub);
    }
  });

  test('client-individual: out-of-order acks, then a new consumer gets the rest first, in order, redelivered', async () => {
    const destination = `/queue/${unique('orders-')}`;
    const { client: pub } = await stompConnect(broker.wsUrl());
    try {
      for (let i = 0; i < 6; i += 1) await stompPublishWithReceipt(pub, { destination, body: `o${i}` });

      const { client: c } = await stompConnect(broker.wsUrl());
      let msgs;
      try {
        const { inbox } = await stompSubscribe(c, destination, { id: 's', ack: 'client-individual' });
        msgs = await take(inbox, 6);
        assert.deepEqual(
          msgs.map((m) => m.body),
          ['o0', 'o1', 'o2', 'o3', 'o4', 'o5'],
        );
        for (const m of msgs) {
          assert.equal(m.headers.redelivered, undefined, 'first delivery is not flagged redelivered');
          assert.ok(m.headers.ack, 'STOMP 1.2 MESSAGE on a client-individual subscription has an ack header');
        }
        msgs[4].ack();
        msgs[1].ack();
      } finally {
        // DISCONNECT with a receipt: the ACKs before it are processed by then.
        await closeAll(c);
      }

      // A message that was never delivered, queued behind the unacknowledged ones.
      await stompPublishWithReceipt(pub, { destination, body: 'o6' });

      const { client: c2 } = await stompConnect(broker.wsUrl());
      try {
        const { inbox } = await stompSubscribe(c2, destination, { id: 's2', ack: 'client-individual' });
        const again = await take(inbox, 5);
        assert.deepEqual(
          again.map((m) => m.body),
          ['o0', 'o2', 'o3', 'o5', 'o6'],
        );
        for (const m of again.slice(0, 4)) {
          assert.equal(m.headers.redelivered, 'true', `${m.body}: ${JSON.stringify(m.headers)}`);
          assert.equal(m.headers['redelivery-count'], '1', `${m.body}: ${JSON.stringify(m.headers)}`);
        }
        assert.equal(again[4].headers.redelivered, undefined, 'o6 was never delivered before');
        assert.equal(again[4].headers['redelivery-count'], undefined);
        for (const m of again) m.ack();
      } finally {
        await closeAll(c2);
      }
    } finally {
      await closeAll(pub);
    }
  });

  test('NACK with requeue:false dead-letters the message to /queue/dlq.<name>', async () => {
    const name = unique('jobs-');
    const destination = `/queue/${name}`;
    const { client: pub } = await stompConnect(broker.wsUrl());
    try {
      await stompPublishWithReceipt(pub, { destination, body: 'good' });
      await stompPublishWithReceipt(pub, { destination, body: 'poison' });

      const { client: c } = await stompConnect(broker.wsUrl());
      try {
        const { inbox } = await stompSubscribe(c, destination, {
          id: 'w',
          ack: 'client-individual',
          'prefetch-count': '1',
        });
        const good = await inbox.next();
        assert.equal(good.body, 'good');
        good.ack();
        const poison = await inbox.next();
        assert.equal(poison.body, 'poison');
        poison.nack({ requeue: 'false' });
      } finally {
        await closeAll(c);
      }

      const { client: d } = await stompConnect(broker.wsUrl());
      try {
        const { inbox } = await stompSubscribe(d, `/queue/dlq.${name}`, { id: 'd', ack: 'client-individual' });
        const dead = await inbox.next('the NACKed message on the dead-letter queue');
        assert.equal(dead.body, 'poison');
        dead.ack();
      } finally {
        await closeAll(d);
      }

      // The NACKed message is gone from the queue itself: a consumer's first message is one
      // published afterwards.
      await stompPublishWithReceipt(pub, { destination, body: 'after' });
      const { client: c2 } = await stompConnect(broker.wsUrl());
      try {
        const { inbox } = await stompSubscribe(c2, destination, { id: 'w2', ack: 'client-individual' });
        const m = await inbox.next();
        assert.equal(m.body, 'after');
        m.ack();
      } finally {
        await closeAll(c2);
      }
    } finally {
      await closeAll(pub);
    }
  });

  test('an MQTT publish to $queue/<name> reaches the STOMP /queue/<name> consumer', async () => {
    const name = unique('mixed-');
    const { client: pub } = await stompConnect(broker.wsUrl());
    const { client: mq } = await mqttConnect(broker.wsUrl(), { protocolVersion: 4 });
    try {
      await stompPublishWithReceipt(pub, { destination: `/queue/${name}`, body: 'from-stomp' });
      await mq.publishAsync(`$queue/${name}`, 'from-mqtt', { qos: 1 });
    } finally {
      await closeAll(pub, mq);
    }
    const { client: c } = await stompConnect(broker.wsUrl());
    try {
      const { inbox } = await stompSubscribe(c, `/queue/${name}`, { id: 'q', ack: 'client' });
      const [a, z] = await take(inbox, 2);
      assert.deepEqual([a.body, z.body], ['from-stomp', 'from-mqtt']);
      assert.equal(z.headers.destination, `/queue/${name}`);
      z.ack(); // cumulative on a `client` subscription
    } finally {
      await closeAll(c);
    }
  });

  test('durable topic subscription (client-id + durable:true + id) keeps messages while away', async () => {
    const clientId = unique('dash-');
    const base = unique('durable/news/');
    const connectHeaders = { 'client-id': clientId };
    const { client: s } = await stompConnect(broker.wsUrl(), { connectHeaders });
    try {
      await stompSubscribe(s, `/topic/${base}/#`, { id: 'news', durable: 'true' });
    } finally {
      await closeAll(s);
    }

    await publishAcked(broker.wsUrl(), `${base}/today`, 3);

    const { client: s2 } = await stompConnect(broker.wsUrl(), { connectHeaders });
    try {
      const { inbox } = await stompSubscribe(s2, `/topic/${base}/#`, { id: 'news', durable: 'true' });
      const got = await take(inbox, 3);
      assert.deepEqual(
        got.map((m) => m.body),
        expected(3),
      );
      for (const m of got) assert.equal(m.headers.destination, `/topic/${base}/today`);
    } finally {
      await closeAll(s2);
    }
  });
});
