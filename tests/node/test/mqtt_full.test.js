// MQTT.js 5 against Diglot over WebSocket (ws://ADDR/ws), protocol 4 (3.1.1) and 5: the
// feature list of issue 4's "Tests" section that mqtt.test.js and durable.test.js do not cover
// yet (wildcards, QoS 2 both ways, retained, wills, unsubscribe, a 1 MiB payload, a 1000-message
// burst, MQTT 5 properties, shared subscriptions), plus the MQTT 5 extras the broker implements
// (subscription identifiers, topic aliases, message expiry, response information, will delay,
// session expiry, `$queue/` consumers).
//
// Persistent sessions receiving QoS 1 messages published while offline, in order, are covered
// by durable.test.js and not repeated here.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import mqtt from 'mqtt';

import { EVENTUALLY_MS, Inbox, eventually, unique, useBroker } from '../broker.js';
import { closeAll, mqttConnect } from '../clients.js';

const broker = useBroker();

/** Reads `n` messages from `inbox`. */
async function take(inbox, n) {
  const got = [];
  for (let i = 0; i < n; i += 1) got.push(await inbox.next(`message ${i + 1} of ${n}`));
  return got;
}

/**
 * Proves that nothing (else) is pending on `inbox` for `client`: subscribes to a fresh marker
 * topic, publishes to it, and returns the next message, which must be the marker. Publishing
 * and delivery of one session are ordered, so anything the broker still had for the client
 * would come first.
 */
async function nextIsMarker(client, inbox, what) {
  const marker = unique('mqttjs/full/marker/');
  await client.subscribeAsync(marker, { qos: 1 });
  await client.publishAsync(marker, 'marker', { qos: 1 });
  const m = await inbox.next(`the marker (${what})`);
  assert.equal(m.topic, marker, `${what}: got ${m.topic} ${m.payload} before the marker`);
}

/**
 * Connects MQTT.js with listeners in place before the CONNECT goes out; resolves to
 * { client, inbox, connack } (the CONNACK packet, with MQTT 5 properties).
 */
async function connectWithConnack(url, opts) {
  const client = mqtt.connect(url, {
    clientId: unique('mqttjs-full-'),
    reconnectPeriod: 0,
    connectTimeout: EVENTUALLY_MS,
    keepalive: 30,
    ...opts,
  });
  const inbox = new Inbox(`MQTT client ${client.options.clientId}`);
  client.on('message', (topic, payload, packet) => inbox.push({ topic, payload, packet }));
  try {
    const connack = await eventually('CONNACK', (res, rej) => {
      client.once('connect', res);
      client.once('error', rej);
      client.once('close', () => rej(new Error('closed before CONNACK')));
    });
    client.removeAllListeners('error');
    client.removeAllListeners('close');
    return { client, inbox, connack };
  } catch (e) {
    client.end(true);
    throw e;
  }
}

/** Ends the connection without DISCONNECT: the socket is destroyed under MQTT.js. */
async function dropAbruptly(client) {
  const closed = new Promise((res) => client.once('close', res));
  client.stream.destroy();
  await closed;
  client.end(true);
}

for (const [label, protocolVersion] of [
  ['MQTT 3.1.1', 4],
  ['MQTT 5', 5],
]) {
  const url = () => broker.wsUrl('/ws');
  const connect = (opts = {}) => mqttConnect(url(), { protocolVersion, ...opts });

  describe(`MQTT.js ${label} over WebSocket: full feature set`, () => {
    test('+ and # wildcards match per [MQTT-4.7]; $-topics are not matched by a leading wildcard', async () => {
      const base = unique(`mqttjs/full/v${protocolVersion}/wild/`);
      const { client: sub, inbox } = await connect();
      const { client: pub } = await connect();
      try {
        await sub.subscribeAsync([`${base}/+/b`, `${base}/x/#`], { qos: 1 });
        const published = [
          [`${base}/a/b`, true], // + fills one level
          [`${base}/a/c`, false],
          [`${base}/a/b/c`, false], // + is one level only
          [`${base}/x`, true], // # also matches the parent level [MQTT-4.7.1-2]
          [`${base}/x/y/z`, true],
          [`${base}//b`, true], // an empty level is a level
        ];
        for (const [topic] of published) await pub.publishAsync(topic, topic, { qos: 1 });
        const want = published.filter(([, match]) => match).map(([t]) => t);
        const got = await take(inbox, want.length);
        assert.deepEqual(
          got.map((m) => m.topic),
          want,
        );
        for (const m of got) assert.equal(m.payload.toString(), m.topic);
        await nextIsMarker(sub, inbox, 'no non-matching topic delivered');
      } finally {
        await closeAll(sub, pub);
      }

      // A first-level wildcard does not match a topic starting with $ [MQTT-4.7.2-1]. The
      // broker publishes $SYS/broker/version as a retained message from its start.
      const { client: wild, inbox: wildIn } = await connect();
      const { client: sys, inbox: sysIn } = await connect();
      try {
        await wild.subscribeAsync(['+/broker/version', '#'], { qos: 0 });
        await sys.subscribeAsync('$SYS/broker/version', { qos: 0 });
        const v = await sysIn.next('$SYS/broker/version');
        assert.equal(v.topic, '$SYS/broker/version');
        assert.ok(v.payload.length > 0);
        assert.equal(v.packet.retain, true);
        // `#` matches everything else, so the marker comes through; nothing under $SYS before it.
        const marker = unique('mqttjs/full/marker/');
        await wild.publishAsync(marker, 'marker', { qos: 1 });
        for (;;) {
          const m = await wildIn.next('the marker on #');
          assert.ok(!m.topic.startsWith('$'), `a leading wildcard matched ${m.topic}`);
          if (m.topic === marker) break;
        }
      } finally {
        await closeAll(wild, sys);
      }
    });

    test('QoS 0, 1 and 2 publishes are delivered at min(publish QoS, granted QoS)', async () => {
      const base = unique(`mqttjs/full/v${protocolVersion}/qos/`);
      const { client: sub, inbox } = await connect();
      const { client: pub } = await connect();
      try {
        const granted = await sub.subscribeAsync(
          { [`${base}/q0`]: { qos: 0 }, [`${base}/q1`]: { qos: 1 }, [`${base}/q2`]: { qos: 2 } },
        );
        assert.deepEqual(
          granted.map((g) => [g.topic, g.qos]),
          [
            [`${base}/q0`, 0],
            [`${base}/q1`, 1],
            [`${base}/q2`, 2],
          ],
        );
        for (const sq of [0, 1, 2]) {
          for (const pq of [0, 1, 2]) {
            await pub.publishAsync(`${base}/q${sq}`, `p${pq}s${sq}`, { qos: pq });
            const m = await inbox.next();
            assert.equal(m.topic, `${base}/q${sq}`);
            assert.equal(m.payload.toString(), `p${pq}s${sq}`);
            assert.equal(m.packet.qos, Math.min(pq, sq), `publish QoS ${pq} on a QoS ${sq} subscription`);
            if (m.packet.qos > 0) assert.ok(m.packet.messageId > 0);
          }
        }
        // A QoS 2 delivery was completed (PUBREC/PUBREL/PUBCOMP): the session keeps going and
        // nothing is redelivered.
        await nextIsMarker(sub, inbox, 'no duplicate after QoS 2 deliveries');
      } finally {
        await closeAll(sub, pub);
      }
    });

    test('retained: delivered on subscribe with RETAIN=1, replaced, cleared by an empty payload', async () => {
      const base = unique(`mqttjs/full/v${protocolVersion}/retained/`);
      const { client: pub } = await connect();
      try {
        await pub.publishAsync(`${base}/a`, 'first', { qos: 1, retain: true });
        await pub.publishAsync(`${base}/a`, 'second', { qos: 1, retain: true });
        await pub.publishAsync(`${base}/b`, 'bee', { qos: 0, retain: true });

        const { client: s1, inbox: in1 } = await connect();
        try {
          await s1.subscribeAsync(`${base}/+`, { qos: 1 });
          const got = await take(in1, 2);
          const byTopic = Object.fromEntries(got.map((m) => [m.topic, m]));
          assert.deepEqual(Object.keys(byTopic).sort(), [`${base}/a`, `${base}/b`]);
          assert.equal(byTopic[`${base}/a`].payload.toString(), 'second', 'the newest replaces');
          assert.equal(byTopic[`${base}/b`].payload.toString(), 'bee');
          for (const m of got) assert.equal(m.packet.retain, true, `${m.topic} RETAIN=1 on subscribe`);
          assert.equal(byTopic[`${base}/a`].packet.qos, 1);
          assert.equal(byTopic[`${base}/b`].packet.qos, 0);

          // A live publish to an existing subscription: RETAIN=0 for 3.1.1 [MQTT-3.3.1-9]; MQTT 5
          // without Retain As Published clears it too [MQTT-3.3.1-12].
          await pub.publishAsync(`${base}/a`, 'live', { qos: 1, retain: true });
          const live = await in1.next();
          assert.equal(live.payload.toString(), 'live');
          assert.equal(live.packet.retain, false);

          // Clearing: an empty retained payload is delivered to current subscribers as usual...
          await pub.publishAsync(`${base}/a`, '', { qos: 1, retain: true });
          const cleared = await in1.next();
          assert.equal(cleared.topic, `${base}/a`);
          assert.equal(cleared.payload.length, 0);
        } finally {
          await closeAll(s1);
        }

        // ...and a new subscriber gets only what is still retained.
        const { client: s2, inbox: in2 } = await connect();
        try {
          await s2.subscribeAsync(`${base}/#`, { qos: 1 });
          const m = await in2.next();
          assert.equal(m.topic, `${base}/b`);
          assert.equal(m.packet.retain, true);
          await nextIsMarker(s2, in2, 'the cleared retained message is gone');
        } finally {
          await closeAll(s2);
        }
      } finally {
        await pub.publishAsync(`${base}/b`, '', { qos: 1, retain: true }).catch(() => {});
        await closeAll(pub);
      }
    });

    test('the will is published on an abrupt close and not on DISCONNECT', async () => {
      const base = unique(`mqttjs/full/v${protocolVersion}/will/`);
      const { client: watcher, inbox } = await connect();
      try {
        await watcher.subscribeAsync(`${base}/#`, { qos: 1 });

        // A clean DISCONNECT discards the will [MQTT-3.1.2-10].
        const { client: polite } = await connect({
          will: { topic: `${base}/polite`, payload: Buffer.from('never'), qos: 1, retain: false },
        });
        await closeAll(polite);

        const { client: rude } = await connect({
          will: { topic: `${base}/rude`, payload: Buffer.from('gone'), qos: 1, retain: false },
        });
        await dropAbruptly(rude);
        const w = await inbox.next('the will of the abruptly closed client');
        assert.equal(w.topic, `${base}/rude`, 'the polite client left no will');
        assert.equal(w.payload.toString(), 'gone');
        assert.equal(w.packet.qos, 1);
      } finally {
        await closeAll(watcher);
      }
    });

    test('unsubscribe stops delivery for that filter only; UNSUBACK for an unknown filter', async () => {
      const base = unique(`mqttjs/full/v${protocolVersion}/unsub/`);
      const { client, inbox } = await connect();
      try {
        await client.subscribeAsync([`${base}/a`, `${base}/b`], { qos: 1 });
        const ack = await client.unsubscribeAsync(`${base}/a`);
        if (protocolVersion === 5) {
          // UNSUBACK reason code 0x00 Success.
          assert.deepEqual(ack.granted, [0]);
        }
        await client.publishAsync(`${base}/a`, 'dropped', { qos: 1 });
        await client.publishAsync(`${base}/b`, 'kept', { qos: 1 });
        const m = await inbox.next();
        assert.equal(m.topic, `${base}/b`);
        assert.equal(m.payload.toString(), 'kept');
        // Unsubscribing a filter that is not subscribed still gets an UNSUBACK [MQTT-3.10.4-5].
        const none = await client.unsubscribeAsync(`${base}/never`);
        if (protocolVersion === 5) {
          // 0x00, or 0x11 No subscription existed.
          assert.ok([[0], [0x11]].some((c) => c[0] === none.granted[0] && none.granted.length === 1), none.granted);
        }
        await nextIsMarker(client, inbox, 'nothing on the unsubscribed filter');
      } finally {
        await closeAll(client);
      }
    });

    test('a payload of 1 MiB minus 512 bytes round-trips byte for byte', async () => {
      const topic = unique(`mqttjs/full/v${protocolVersion}/big/`);
      // The default limits.max_frame_bytes is 1 MiB for the whole packet, headers included.
      const payload = Buffer.alloc(1024 * 1024 - 512);
      for (let i = 0; i < payload.length; i += 1) payload[i] = (i * 31 + (i >> 11)) & 0xff;
      const { client: sub, inbox } = await connect();
      const { client: pub } = await connect();
      try {
        await sub.subscribeAsync(topic, { qos: 1 });
        await pub.publishAsync(topic, payload, { qos: 1 });
        const m = await inbox.next();
        assert.equal(m.topic, topic);
        assert.equal(m.payload.length, payload.length);
        assert.ok(Buffer.from(m.payload).equals(payload), 'payload bytes differ');
      } finally {
        await closeAll(sub, pub);
      }
    });

    test('a burst of 1000 QoS 1 messages arrives complete and in publish order', async () => {
      const topic = unique(`mqttjs/full/v${protocolVersion}/burst/`);
      const n = 1000;
      const { client: sub, inbox } = await connect();
      const { client: pub } = await connect();
      try {
        await sub.subscribeAsync(topic, { qos: 1 });
        // All published without waiting for each PUBACK: MQTT.js pipelines them.
        const acks = [];
        for (let i = 0; i < n; i += 1) acks.push(pub.publishAsync(topic, `b${i}`, { qos: 1 }));
        await Promise.all(acks);
        const got = await take(inbox, n);
        const bad = got.findIndex((m, i) => m.payload.toString() !== `b${i}`);
        assert.equal(bad, -1, `message ${bad} is ${got[bad]?.payload}`);
        await nextIsMarker(sub, inbox, 'no duplicates after the burst');
      } finally {
        await closeAll(sub, pub);
      }
    });

    test('shared subscription $share/g/<filter>: 40 messages split between two members, none twice', async () => {
      const base = unique(`mqttjs/full/v${protocolVersion}/shared/`);
      const group = unique('g');
      const { client: m1, inbox: in1 } = await connect();
      const { client: m2, inbox: in2 } = await connect();
      const { client: pub } = await connect();
      try {
        await m1.subscribeAsync(`$share/${group}/${base}/+`, { qos: 1 });
        await m2.subscribeAsync(`$share/${group}/${base}/+`, { qos: 1 });
        // Each member also subscribes (unshared) to its own marker topic, published after the
        // 40: once both markers are in, anything still queued for a member has arrived.
        const markers = { m1: unique(`${base}-marker1-`), m2: unique(`${base}-marker2-`) };
        await m1.subscribeAsync(markers.m1, { qos: 1 });
        await m2.subscribeAsync(markers.m2, { qos: 1 });
        const got = { m1: [], m2: [] };
        const markerSeen = { m1: false, m2: false };
        const collect = (name) => (m) => {
          if (m.topic === markers[name]) markerSeen[name] = true;
          else got[name].push(m);
        };
        in1.push = collect('m1');
        in2.push = collect('m2');
        for (let i = 0; i < 40; i += 1) await pub.publishAsync(`${base}/t`, `s${i}`, { qos: 1 });
        await pub.publishAsync(markers.m1, 'marker', { qos: 1 });
        await pub.publishAsync(markers.m2, 'marker', { qos: 1 });
        const all = () => [...got.m1, ...got.m2].map((m) => m.payload.toString());
        await eventually('all 40 shared messages and both markers', (res) => {
          const timer = setInterval(() => {
            if (all().length >= 40 && markerSeen.m1 && markerSeen.m2) {
              clearInterval(timer);
              res();
            }
          }, 10);
        });
        assert.ok(got.m1.length > 0, `member 1 got none: ${got.m2.length} for member 2`);
        assert.ok(got.m2.length > 0, `member 2 got none: ${got.m1.length} for member 1`);
        assert.equal(new Set(all()).size, 40, 'together all 40');
        assert.equal(all().length, 40, `none twice: ${all().length} deliveries`);
        // Each member sees its share in publish order.
        for (const [name, list] of Object.entries(got)) {
          const n = list.map((m) => Number(m.payload.toString().slice(1)));
          assert.deepEqual(n, [...n].sort((a, b) => a - b), `${name} out of order: ${n}`);
          for (const m of list) assert.equal(m.topic, `${base}/t`, 'delivered with the real topic');
        }
      } finally {
        await closeAll(m1, m2, pub);
      }
    });
  });
}

describe('MQTT.js MQTT 5 properties and features over WebSocket', () => {
  const connect5 = (opts = {}) => mqttConnect(broker.wsUrl('/ws'), { protocolVersion: 5, ...opts });

  test('user properties, response topic and correlation data pass through (request/response)', async () => {
    const base = unique('mqttjs/full/v5/rpc/');
    const { client: requester, inbox: replies } = await connect5();
    const { client: responder, inbox: requests } = await connect5();
    try {
      await responder.subscribeAsync(`${base}/req`, { qos: 1 });
      await requester.subscribeAsync(`${base}/reply/+`, { qos: 1 });
      const correlationData = Buffer.from([0x00, 0xc3, 0x28, 0xff, 0x01]); // not UTF-8
      await requester.publishAsync(`${base}/req`, 'ping', {
        qos: 1,
        properties: {
          responseTopic: `${base}/reply/r1`,
          correlationData,
          contentType: 'text/plain',
          payloadFormatIndicator: true,
          userProperties: { trace: 'abc', multi: ['one', 'two'], 'ключ': 'значение' },
        },
      });
      const req = await requests.next();
      const p = req.packet.properties ?? {};
      assert.equal(p.responseTopic, `${base}/reply/r1`);
      assert.ok(Buffer.from(p.correlationData).equals(correlationData), 'correlation data bytes');
      assert.equal(p.contentType, 'text/plain');
      assert.equal(p.payloadFormatIndicator, true);
      assert.equal(p.userProperties?.trace, 'abc');
      assert.deepEqual(p.userProperties?.multi, ['one', 'two'], 'repeated user property keys keep order');
      assert.equal(p.userProperties?.['ключ'], 'значение');

      await responder.publishAsync(p.responseTopic, 'pong', {
        qos: 1,
        properties: { correlationData: p.correlationData, userProperties: { status: 'ok' } },
      });
      const rep = await replies.next();
      assert.equal(rep.topic, `${base}/reply/r1`);
      assert.equal(rep.payload.toString(), 'pong');
      assert.ok(Buffer.from(rep.packet.properties?.correlationData).equals(correlationData));
      assert.equal(rep.packet.properties?.userProperties?.status, 'ok');
    } finally {
      await closeAll(requester, responder);
    }
  });

  test('subscription identifiers are returned on matching deliveries', async () => {
    const base = unique('mqttjs/full/v5/subid/');
    const { client, inbox } = await connect5();
    try {
      await client.subscribeAsync(`${base}/a/+`, { qos: 1, properties: { subscriptionIdentifier: 7 } });
      await client.subscribeAsync(`${base}/b/#`, { qos: 1, properties: { subscriptionIdentifier: 300 } });
      await client.subscribeAsync(`${base}/c`, { qos: 1 });
      await client.publishAsync(`${base}/a/x`, 'a', { qos: 1 });
      await client.publishAsync(`${base}/b/x/y`, 'b', { qos: 1 });
      await client.publishAsync(`${base}/c`, 'c', { qos: 1 });
      const [a, b, c] = await take(inbox, 3);
      const ids = (m) => [m.packet.properties?.subscriptionIdentifier].flat().filter((x) => x !== undefined);
      assert.deepEqual(ids(a), [7]);
      assert.deepEqual(ids(b), [300]);
      assert.deepEqual(ids(c), [], 'no identifier for a subscription that had none');
    } finally {
      await closeAll(client);
    }
  });

  test('topic aliases both ways: MQTT.js assigns them outbound, the broker may use them inbound', async () => {
    const topic = unique('mqttjs/full/v5/alias/');
    const { client: sub, inbox } = await connect5({ properties: { topicAliasMaximum: 10 } });
    const { client: pub, connack } = await connectWithConnack(broker.wsUrl('/ws'), {
      protocolVersion: 5,
      autoAssignTopicAlias: true,
    });
    try {
      const max = connack.properties?.topicAliasMaximum ?? 0;
      assert.ok(max > 0, `CONNACK Topic Alias Maximum ${max}`);
      await sub.subscribeAsync(topic, { qos: 1 });
      const sent = [];
      pub.on('packetsend', (p) => p.cmd === 'publish' && sent.push([p.topic, p.properties?.topicAlias]));
      // With autoAssignTopicAlias the second and third PUBLISH carry only the alias.
      for (const body of ['one', 'two', 'three']) await pub.publishAsync(topic, body, { qos: 1 });
      const got = await take(inbox, 3);
      assert.deepEqual(
        got.map((m) => [m.topic, m.payload.toString()]),
        [
          [topic, 'one'],
          [topic, 'two'],
          [topic, 'three'],
        ],
      );
      assert.ok(
        sent.some(([t, a]) => t === '' && a > 0),
        `MQTT.js sent an alias-only PUBLISH: ${JSON.stringify(sent)}`,
      );
      // An alias the broker uses must be within our maximum.
      for (const m of got) {
        const alias = m.packet.properties?.topicAlias;
        if (alias !== undefined) assert.ok(alias >= 1 && alias <= 10, `alias ${alias}`);
      }
    } finally {
      await closeAll(sub, pub);
    }
  });

  test('message expiry: the remaining interval is forwarded; an expired retained message is gone', async () => {
    const base = unique('mqttjs/full/v5/expiry/');
    const { client: pub } = await connect5();
    try {
      await pub.publishAsync(`${base}/long`, 'keeps', {
        qos: 1,
        retain: true,
        properties: { messageExpiryInterval: 3600 },
      });
      await pub.publishAsync(`${base}/short`, 'expires', {
        qos: 1,
        retain: true,
        properties: { messageExpiryInterval: 1 },
      });
      // Wait well past the short interval (an "at least" wait, not a timing assertion).
      await new Promise((res) => setTimeout(res, 2500));
      const { client: sub, inbox } = await connect5();
      try {
        await sub.subscribeAsync(`${base}/+`, { qos: 1 });
        const m = await inbox.next();
        assert.equal(m.topic, `${base}/long`);
        const left = m.packet.properties?.messageExpiryInterval;
        assert.ok(left !== undefined && left > 0 && left <= 3600, `Message Expiry Interval ${left}`);
        await nextIsMarker(sub, inbox, 'the expired retained message is not delivered');
      } finally {
        await closeAll(sub);
      }
    } finally {
      await pub.publishAsync(`${base}/long`, '', { qos: 1, retain: true }).catch(() => {});
      await closeAll(pub);
    }
  });

  test('request response information is answered in CONNACK', async () => {
    const { client, connack } = await connectWithConnack(broker.wsUrl('/ws'), {
      protocolVersion: 5,
      properties: { requestResponseInformation: true },
    });
    try {
      const info = connack.properties?.responseInformation;
      assert.equal(typeof info, 'string');
      assert.ok(info.length > 0, 'a non-empty Response Information');
      // It is a topic prefix the client may publish responses under.
      const { client: sub, inbox } = await connect5();
      try {
        const topic = `${info.replace(/\/$/, '')}/r1`;
        await sub.subscribeAsync(topic, { qos: 1 });
        await client.publishAsync(topic, 'resp', { qos: 1 });
        const m = await inbox.next();
        assert.equal(m.payload.toString(), 'resp');
      } finally {
        await closeAll(sub);
      }
    } finally {
      await closeAll(client);
    }
  });

  test('will delay interval: the will is published after the delay on an abrupt close', async () => {
    const base = unique('mqttjs/full/v5/willdelay/');
    const { client: watcher, inbox } = await connect5();
    try {
      await watcher.subscribeAsync(`${base}/#`, { qos: 1 });
      const { client: rude } = await connect5({
        clean: false,
        properties: { sessionExpiryInterval: 30 },
        will: {
          topic: `${base}/status`,
          payload: Buffer.from('offline'),
          qos: 1,
          retain: false,
          properties: { willDelayInterval: 1, contentType: 'text/plain', userProperties: { who: 'rude' } },
        },
      });
      await dropAbruptly(rude);
      const w = await inbox.next('the delayed will');
      assert.equal(w.topic, `${base}/status`);
      assert.equal(w.payload.toString(), 'offline');
      assert.equal(w.packet.properties?.contentType, 'text/plain', 'will properties are kept');
      assert.equal(w.packet.properties?.userProperties?.who, 'rude');
    } finally {
      await closeAll(watcher);
    }
  });

  test('session expiry interval: a session is kept for its interval and gone after it', async () => {
    const clientId = unique('mqttjs-expiry-');
    const opts = (sei) => ({ clientId, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: sei } });
    const first = await connectWithConnack(broker.wsUrl('/ws'), opts(300));
    assert.equal(first.connack.sessionPresent, false);
    await first.client.subscribeAsync(unique('mqttjs/full/v5/sei/'), { qos: 1 });
    // DISCONNECT may lower the interval [MQTT-3.14.2-2 allows changing a non-zero one]: 1 s.
    await new Promise((res) => first.client.end(false, { properties: { sessionExpiryInterval: 1 } }, res));
    const kept = await connectWithConnack(broker.wsUrl('/ws'), opts(1));
    try {
      assert.equal(kept.connack.sessionPresent, true, 'the session is there right after');
    } finally {
      await closeAll(kept.client);
    }
    await new Promise((res) => setTimeout(res, 2500)); // well past the 1 s interval
    const gone = await connectWithConnack(broker.wsUrl('/ws'), opts(0));
    try {
      assert.equal(gone.connack.sessionPresent, false, 'the session expired');
    } finally {
      await closeAll(gone.client);
    }
  });

  test('$queue/<name> consumers compete: each message to exactly one', async () => {
    const name = unique('mqttjs-q-');
    const { client: c1, inbox: in1 } = await connect5();
    const { client: c2, inbox: in2 } = await connect5();
    const { client: pub } = await connect5();
    try {
      await c1.subscribeAsync(`$queue/${name}`, { qos: 1 });
      await c2.subscribeAsync(`$queue/${name}`, { qos: 1 });
      const got = { c1: [], c2: [] };
      in1.push = (m) => got.c1.push(m.payload.toString());
      in2.push = (m) => got.c2.push(m.payload.toString());
      for (let i = 0; i < 10; i += 1) await pub.publishAsync(`$queue/${name}`, `j${i}`, { qos: 1 });
      await eventually('all 10 queue messages', (res) => {
        const timer = setInterval(() => {
          if (got.c1.length + got.c2.length >= 10) {
            clearInterval(timer);
            res();
          }
        }, 10);
      });
      const all = [...got.c1, ...got.c2];
      assert.equal(all.length, 10, JSON.stringify(got));
      assert.equal(new Set(all).size, 10, JSON.stringify(got));
      assert.ok(got.c1.length > 0 && got.c2.length > 0, `both consumers served: ${JSON.stringify(got)}`);
    } finally {
      await closeAll(c1, c2, pub);
    }
  });
});
