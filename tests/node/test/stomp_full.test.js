// @stomp/stompjs 7 (on `ws`) against Diglot over WebSocket (ws://ADDR/ws, STOMP 1.2): the
// feature list of issue 5's "Tests" section that stomp.test.js and durable.test.js do not
// cover yet: heart-beat negotiation, /topic fan-out, `client` and `client-individual` acks with
// NACK and redelivery, receipts, transactions, header escaping, /temp-queue request/reply and
// the `expires` header.
//
// Covered elsewhere and not repeated: /queue competing consumers, unacked /queue messages
// redelivered after the consumer disconnects (durable.test.js); binary bodies with NUL bytes
// (stomp.test.js).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Inbox, eventually, unique, useBroker } from '../broker.js';
import { closeAll, mqttConnect, stompConnect, stompPublishWithReceipt, stompSubscribe } from '../clients.js';

import { Versions } from '@stomp/stompjs';

const broker = useBroker();
const url = () => broker.wsUrl('/ws');

/** Reads `n` messages from `inbox`. */
async function take(inbox, n) {
  const got = [];
  for (let i = 0; i < n; i += 1) got.push(await inbox.next(`message ${i + 1} of ${n}`));
  return got;
}

/** Sends `frame` (ACK/NACK/UNSUBSCRIBE/…) through `send(headers)` with a receipt; waits for it. */
async function withReceipt(client, what, send) {
  const receipt = unique(`${what}-receipt-`);
  const frame = await eventually(`RECEIPT for ${what}`, (res) => {
    client.watchForReceipt(receipt, res);
    send({ receipt });
  });
  assert.equal(frame.command, 'RECEIPT');
  assert.equal(frame.headers['receipt-id'], receipt);
  return frame;
}

/**
 * Proves nothing else is pending on a /topic subscription: SENDs a marker to `destination`
 * and asserts it is the next MESSAGE (one session's deliveries keep publish order).
 */
async function nextIsMarker(client, destination, inbox, what) {
  const body = unique('marker-');
  client.publish({ destination, body });
  const m = await inbox.next(`the marker (${what})`);
  assert.equal(m.body, body, `${what}: got ${JSON.stringify(m.body)} before the marker`);
}

describe('@stomp/stompjs: heart-beats', () => {
  test('heart-beat negotiation: CONNECTED answers with intervals compatible with the request', async () => {
    const { client, connected } = await stompConnect(url(), {
      heartbeatIncoming: 2000, // cy: we want to hear from the server every 2 s
      heartbeatOutgoing: 3000, // cx: we can send every 3 s
    });
    try {
      const hb = connected.headers['heart-beat'];
      assert.match(hb ?? '', /^\d+,\d+$/, `CONNECTED heart-beat ${hb}`);
      const [sx, sy] = hb.split(',').map(Number);
      // STOMP 1.2 "Heart-beating": the server sends every max(sx, cy) ms if both are non-zero;
      // it expects one every max(cx, sy) ms. Diglot heart-beats both ways by default and
      // announces the effective intervals, so they are at least what each side asked for.
      assert.ok(sx >= 2000, `server → client interval ${sx} covers the client's 2000`);
      assert.ok(sy >= 3000, `client → server interval ${sy} covers the client's 3000`);
      // The connection works with heart-beating on.
      const destination = `/topic/${unique('stompjs/full/hb/')}`;
      const { inbox } = await stompSubscribe(client, destination);
      client.publish({ destination, body: 'beat' });
      assert.equal((await inbox.next()).body, 'beat');
    } finally {
      await closeAll(client);
    }
  });

  test('heart-beat 0,0 from the client means none either way', async () => {
    const { client, connected } = await stompConnect(url(), { heartbeatIncoming: 0, heartbeatOutgoing: 0 });
    try {
      const [sx, sy] = (connected.headers['heart-beat'] ?? '0,0').split(',').map(Number);
      // cy = 0: the server must not send; cx = 0: the client will not send.
      assert.equal(sx, 0, `server → client ${sx}`);
      assert.equal(sy, 0, `client → server ${sy}`);
    } finally {
      await closeAll(client);
    }
  });

  test('STOMP 1.0 has no heart-beating: CONNECTED carries no heart-beat header', async () => {
    const { client, connected } = await stompConnect(url(), {
      stompVersions: new Versions(['1.0']),
      heartbeatIncoming: 1000,
      heartbeatOutgoing: 1000,
    });
    try {
      assert.equal(connected.headers['heart-beat'], undefined);
    } finally {
      await closeAll(client);
    }
  });
});

describe('@stomp/stompjs over WebSocket: full feature set', () => {
  test('/topic fan-out: two subscribers on two connections each get every message, in order', async () => {
    const destination = `/topic/${unique('stompjs/full/fanout/')}`;
    const { client: a } = await stompConnect(url());
    const { client: b } = await stompConnect(url());
    const { client: pub } = await stompConnect(url());
    try {
      const sa = await stompSubscribe(a, destination);
      const sb = await stompSubscribe(b, destination);
      for (let i = 0; i < 5; i += 1) pub.publish({ destination, body: `f${i}`, headers: { n: String(i) } });
      for (const [s, name] of [
        [sa, 'a'],
        [sb, 'b'],
      ]) {
        const got = await take(s.inbox, 5);
        assert.deepEqual(
          got.map((m) => m.body),
          ['f0', 'f1', 'f2', 'f3', 'f4'],
          name,
        );
        for (const [i, m] of got.entries()) {
          assert.equal(m.headers.subscription, s.id);
          assert.equal(m.headers.destination, destination);
          assert.equal(m.headers.n, String(i), 'user headers go to every subscriber');
        }
      }
    } finally {
      await closeAll(a, b, pub);
    }
  });

  test('ack:client is cumulative; NACK requeues; a redelivery is flagged; unacked ones come back on reconnect', async () => {
    const destination = `/queue/${unique('stompjs-client-ack-')}`;
    const { client: pub } = await stompConnect(url());
    try {
      for (let i = 0; i < 4; i += 1) await stompPublishWithReceipt(pub, { destination, body: `c${i}` });
    } finally {
      await closeAll(pub);
    }

    const { client: c } = await stompConnect(url());
    try {
      const { inbox } = await stompSubscribe(c, destination, { ack: 'client' });
      const first = await take(inbox, 4);
      assert.deepEqual(
        first.map((m) => m.body),
        ['c0', 'c1', 'c2', 'c3'],
      );
      for (const m of first) assert.ok(m.headers.ack, `ack header on ${m.body}`);
      // ACK of c1 acknowledges c0 and c1 (cumulative).
      await withReceipt(c, 'ack-c1', (h) => first[1].ack(h));
      // NACK of c2 (the oldest unacked) returns it to the queue; it comes back flagged.
      await withReceipt(c, 'nack-c2', (h) => first[2].nack(h));
      const again = await inbox.next('c2 redelivered after NACK');
      assert.equal(again.body, 'c2');
      assert.equal(again.headers.redelivered, 'true', JSON.stringify(again.headers));
      assert.equal(again.headers['redelivery-count'], '1', JSON.stringify(again.headers));
      // c2 (again) and c3 stay unacknowledged; the consumer leaves.
    } finally {
      await closeAll(c);
    }

    const { client: c2 } = await stompConnect(url());
    try {
      const { inbox } = await stompSubscribe(c2, destination, { ack: 'client' });
      const rest = await take(inbox, 2);
      assert.deepEqual(
        rest.map((m) => m.body),
        ['c2', 'c3'],
        'c0 and c1 were acknowledged by the cumulative ACK; the rest comes back in order',
      );
      assert.deepEqual(
        rest.map((m) => [m.headers.redelivered, m.headers['redelivery-count']]),
        [
          ['true', '2'],
          ['true', '1'],
        ],
      );
      await withReceipt(c2, 'ack-all', (h) => rest[1].ack(h));
    } finally {
      await closeAll(c2);
    }

    // Everything is acknowledged: a new consumer's first message is a new one.
    const { client: c3 } = await stompConnect(url());
    try {
      const { inbox } = await stompSubscribe(c3, destination, { ack: 'client' });
      await stompPublishWithReceipt(c3, { destination, body: 'new' });
      const m = await inbox.next();
      assert.equal(m.body, 'new');
      assert.equal(m.headers.redelivered, undefined);
      await withReceipt(c3, 'ack-new', (h) => m.ack(h));
    } finally {
      await closeAll(c3);
    }
  });

  test('ack:client-individual: NACK one message, it is redelivered alone; ACKs are per message', async () => {
    const destination = `/queue/${unique('stompjs-individual-')}`;
    const { client: c } = await stompConnect(url());
    try {
      const { inbox } = await stompSubscribe(c, destination, { ack: 'client-individual' });
      for (let i = 0; i < 3; i += 1) await stompPublishWithReceipt(c, { destination, body: `i${i}` });
      const first = await take(inbox, 3);
      assert.deepEqual(
        first.map((m) => m.body),
        ['i0', 'i1', 'i2'],
      );
      // ACK i2 first: in client-individual mode that does not acknowledge i0 or i1.
      await withReceipt(c, 'ack-i2', (h) => first[2].ack(h));
      await withReceipt(c, 'nack-i1', (h) => first[1].nack(h));
      const again = await inbox.next('i1 redelivered after NACK');
      assert.equal(again.body, 'i1');
      assert.equal(again.headers.redelivered, 'true');
      assert.equal(again.headers['redelivery-count'], '1');
      assert.notEqual(again.headers.ack, first[1].headers.ack, 'a new ack id for the new delivery');
      await withReceipt(c, 'ack-i1', (h) => again.ack(h));
      // i0 is still unacknowledged.
    } finally {
      await closeAll(c);
    }
    const { client: c2 } = await stompConnect(url());
    try {
      const { inbox } = await stompSubscribe(c2, destination, { ack: 'client-individual' });
      const m = await inbox.next('i0, the only unacknowledged message');
      assert.equal(m.body, 'i0');
      assert.equal(m.headers.redelivered, 'true');
      await withReceipt(c2, 'ack-i0', (h) => m.ack(h));
      await stompPublishWithReceipt(c2, { destination, body: 'after' });
      assert.equal((await inbox.next()).body, 'after', 'nothing else was left unacknowledged');
    } finally {
      await closeAll(c2);
    }
  });

  test('receipts: SUBSCRIBE, SEND, ACK, UNSUBSCRIBE and DISCONNECT are each answered', async () => {
    const destination = `/queue/${unique('stompjs-receipts-')}`;
    const { client } = await stompConnect(url());
    let disconnected = false;
    try {
      const { inbox, subscription } = await stompSubscribe(client, destination, { ack: 'client-individual' });
      const { frame } = await stompPublishWithReceipt(client, { destination, body: 'r' });
      assert.equal(frame.command, 'RECEIPT');
      const m = await inbox.next();
      await withReceipt(client, 'ack', (h) => m.ack(h));
      await withReceipt(client, 'unsubscribe', (h) => subscription.unsubscribe(h));
      // After the UNSUBSCRIBE's receipt, nothing more is delivered to it.
      await stompPublishWithReceipt(client, { destination, body: 'stays queued' });
      const other = `/topic/${unique('stompjs/full/receipts/')}`;
      const { inbox: otherIn } = await stompSubscribe(client, other);
      await nextIsMarker(client, other, otherIn, 'after UNSUBSCRIBE');
      assert.equal(inbox.items.length, 0, 'no MESSAGE on the unsubscribed subscription');

      // stompjs sends DISCONNECT with our receipt header and calls onDisconnect with the RECEIPT.
      const receipt = unique('disconnect-receipt-');
      let goodbye;
      client.disconnectHeaders = { receipt };
      client.onDisconnect = (f) => {
        goodbye = f;
      };
      await closeAll(client);
      disconnected = true;
      assert.equal(goodbye?.command, 'RECEIPT', 'DISCONNECT was answered with a RECEIPT');
      assert.equal(goodbye.headers['receipt-id'], receipt);
    } finally {
      if (!disconnected) await closeAll(client);
    }
    // The queued message is still there for the next consumer.
    const { client: c2 } = await stompConnect(url());
    try {
      const { inbox } = await stompSubscribe(c2, destination, { ack: 'client-individual' });
      const m = await inbox.next();
      assert.equal(m.body, 'stays queued');
      await withReceipt(c2, 'ack', (h) => m.ack(h));
    } finally {
      await closeAll(c2);
    }
  });

  test('transactions: COMMIT delivers the SENDs in order, ABORT and a disconnect discard them', async () => {
    const destination = `/topic/${unique('stompjs/full/tx/')}`;
    const { client: sub } = await stompConnect(url());
    const { client: pub } = await stompConnect(url());
    try {
      const { inbox } = await stompSubscribe(sub, destination);

      const tx = pub.begin(unique('tx-'));
      pub.publish({ destination, body: 'tx-1', headers: { transaction: tx.id } });
      pub.publish({ destination, body: 'tx-2', headers: { transaction: tx.id } });
      // Not delivered before COMMIT: a message outside the transaction overtakes them.
      await stompPublishWithReceipt(pub, { destination, body: 'outside' });
      assert.equal((await inbox.next()).body, 'outside');
      // stompjs's commit() takes no headers; its frame writer sends the COMMIT with a receipt.
      await withReceipt(pub, 'commit', (h) => pub._stompHandler._transmit({
        command: 'COMMIT',
        headers: { transaction: tx.id, ...h },
      }));
      const committed = await take(inbox, 2);
      assert.deepEqual(
        committed.map((m) => m.body),
        ['tx-1', 'tx-2'],
      );
      for (const m of committed) assert.equal(m.headers.transaction, undefined, 'no transaction header on MESSAGE');

      const aborted = pub.begin(unique('tx-'));
      pub.publish({ destination, body: 'never-1', headers: { transaction: aborted.id } });
      aborted.abort();
      await nextIsMarker(pub, destination, inbox, 'ABORT discards');

      // A transaction left open when the connection ends is aborted.
      const { client: gone } = await stompConnect(url());
      const open = gone.begin(unique('tx-'));
      gone.publish({ destination, body: 'never-2', headers: { transaction: open.id } });
      await closeAll(gone);
      await nextIsMarker(pub, destination, inbox, 'disconnect aborts');
    } finally {
      await closeAll(sub, pub);
    }
  });

  test('an ACK inside an aborted transaction does not acknowledge; inside a committed one it does', async () => {
    const destination = `/queue/${unique('stompjs-txack-')}`;
    const { client: c } = await stompConnect(url());
    try {
      const { inbox } = await stompSubscribe(c, destination, { ack: 'client-individual' });
      await stompPublishWithReceipt(c, { destination, body: 'a0' });
      await stompPublishWithReceipt(c, { destination, body: 'a1' });
      const [a0, a1] = await take(inbox, 2);
      const t1 = c.begin(unique('tx-'));
      a0.ack({ transaction: t1.id });
      t1.abort();
      const t2 = c.begin(unique('tx-'));
      a1.ack({ transaction: t2.id });
      t2.commit();
    } finally {
      await closeAll(c);
    }
    // a0's ACK was aborted, so it comes back; a1's was committed.
    const { client: c2 } = await stompConnect(url());
    try {
      const { inbox } = await stompSubscribe(c2, destination, { ack: 'client-individual' });
      const m = await inbox.next();
      assert.equal(m.body, 'a0');
      assert.equal(m.headers.redelivered, 'true');
      await withReceipt(c2, 'ack', (h) => m.ack(h));
      await stompPublishWithReceipt(c2, { destination, body: 'a2' });
      assert.equal((await inbox.next()).body, 'a2', 'a1 is not redelivered');
    } finally {
      await closeAll(c2);
    }
  });

  test('an unknown transaction id is an ERROR', async () => {
    const { client } = await stompConnect(url());
    try {
      const error = await eventually('ERROR for COMMIT of an unknown transaction', (res) => {
        client.onStompError = res;
        client.commit(unique('no-such-tx-'));
      });
      assert.equal(error.command, 'ERROR');
      assert.ok(error.headers.message, 'ERROR has a message header');
    } finally {
      await closeAll(client).catch(() => {});
    }
  });

  test('header values with ":", "\\", CR and LF survive STOMP 1.2 escaping, to STOMP and to MQTT 5', async () => {
    const topic = unique('stompjs/full/escape/');
    const destination = `/topic/${topic}`;
    const headers = {
      'x-colon': 'a:b::c',
      'x-newline': 'line 1\nline 2\n',
      'x-backslash': 'C:\\dir\\file',
      'x-cr': 'a\rb',
      'x-mixed': ':\\n\n\\c:',
      'x-spaces': '  leading and trailing  ',
    };
    // stompjs 7.x unescapes with chained String.replace calls (\\r, \\n, \\c, then \\\\), so it
    // turns an escaped backslash followed by "n" (wire `\\n`) into backslash + LF. The STOMP
    // subscriber therefore checks the raw wire text (logRawCommunication) for every header and
    // the values stompjs parses only where that bug cannot bite; the MQTT 5 subscriber sees the
    // broker's own decoding as user properties.
    // (It also trims header values, which STOMP 1.2 does not allow outside CONNECT/CONNECTED.)
    const stompjsSafe = (v) => !/\\[rnc]/.test(v) && v.trim() === v;
    const escape12 = (v) =>
      v.replace(/\\/g, '\\\\').replace(/\r/g, '\\r').replace(/\n/g, '\\n').replace(/:/g, '\\c');
    const raw = [];
    const { client: sub } = await stompConnect(url(), {
      logRawCommunication: true,
      debug: (line) => line.startsWith('<<< MESSAGE') && raw.push(line.slice(4)),
    });
    const { client: pub } = await stompConnect(url());
    const { client: mq, inbox: mqIn } = await mqttConnect(url(), { protocolVersion: 5 });
    try {
      const { inbox } = await stompSubscribe(sub, destination);
      await mq.subscribeAsync(topic, { qos: 0 });
      await stompPublishWithReceipt(pub, { destination, body: 'escaped', headers });
      const m = await inbox.next();
      assert.equal(m.body, 'escaped');
      assert.equal(raw.length, 1, 'one raw MESSAGE logged');
      const wire = raw[0].split('\n\n')[0].split('\n');
      for (const [k, v] of Object.entries(headers)) {
        assert.ok(wire.includes(`${k}:${escape12(v)}`), `wire header ${k}:${escape12(v)} in ${JSON.stringify(wire)}`);
        if (stompjsSafe(v)) assert.equal(m.headers[k], v, `STOMP header ${k} as stompjs parses it`);
      }
      const mm = await mqIn.next();
      const props = mm.packet.properties?.userProperties ?? {};
      for (const [k, v] of Object.entries(headers)) assert.equal(props[k], v, `MQTT user property ${k}`);
    } finally {
      await closeAll(sub, pub, mq);
    }
  });

  test('request/reply through /temp-queue: the reply arrives as /temp-queue/<x> (onUnhandledMessage)', async () => {
    const rpc = `/queue/${unique('stompjs-rpc-')}`;
    const { client: requester } = await stompConnect(url());
    const { client: replier } = await stompConnect(url());
    try {
      const replies = new Inbox('replies on /temp-queue/replies');
      requester.onUnhandledMessage = (m) => replies.push(m);
      const { inbox: requests } = await stompSubscribe(replier, rpc, { ack: 'client-individual' });

      await stompPublishWithReceipt(requester, {
        destination: rpc,
        body: 'what time is it?',
        headers: { 'reply-to': '/temp-queue/replies', 'correlation-id': 'req-1' },
      });
      const req = await requests.next();
      assert.equal(req.body, 'what time is it?');
      assert.equal(req.headers['correlation-id'], 'req-1');
      const replyTo = req.headers['reply-to'];
      assert.ok(replyTo && replyTo !== '/temp-queue/replies', `reply-to rewritten for the replier: ${replyTo}`);
      assert.match(replyTo, /^\/topic\/\$temp\//);
      req.ack();

      replier.publish({
        destination: replyTo,
        body: 'tea time',
        headers: { 'correlation-id': req.headers['correlation-id'] },
      });
      const rep = await replies.next('the reply on the temp queue');
      assert.equal(rep.body, 'tea time');
      assert.equal(rep.headers.destination, '/temp-queue/replies');
      assert.equal(rep.headers.subscription, '/temp-queue/replies');
      assert.equal(rep.headers['correlation-id'], 'req-1');

      // A second request reuses the same temp queue.
      await stompPublishWithReceipt(requester, {
        destination: rpc,
        body: 'again?',
        headers: { 'reply-to': '/temp-queue/replies', 'correlation-id': 'req-2' },
      });
      const req2 = await requests.next();
      assert.equal(req2.headers['reply-to'], replyTo, 'the same private destination');
      req2.ack();
      replier.publish({ destination: replyTo, body: 'still tea', headers: { 'correlation-id': 'req-2' } });
      const rep2 = await replies.next();
      assert.equal(rep2.body, 'still tea');
      assert.equal(rep2.headers['correlation-id'], 'req-2');
    } finally {
      await closeAll(requester, replier);
    }
  });

  test('request/reply: an explicit /temp-queue subscription and an MQTT 5 replier', async () => {
    const requestTopic = unique('stompjs/full/rpc/');
    const { client: requester } = await stompConnect(url());
    const { client: replier, inbox: requests } = await mqttConnect(url(), { protocolVersion: 5 });
    try {
      const { inbox: replies, id } = await stompSubscribe(requester, '/temp-queue/answers');
      await replier.subscribeAsync(requestTopic, { qos: 1 });
      await stompPublishWithReceipt(requester, {
        destination: `/topic/${requestTopic}`,
        body: 'ping',
        headers: { 'reply-to': '/temp-queue/answers', 'correlation-id': 'corr-9' },
      });
      const req = await requests.next();
      assert.equal(req.payload.toString(), 'ping');
      const responseTopic = req.packet.properties?.responseTopic;
      assert.ok(responseTopic, 'reply-to is the MQTT 5 Response Topic');
      assert.ok(responseTopic.startsWith('$temp/'), responseTopic);
      assert.equal(Buffer.from(req.packet.properties?.correlationData ?? []).toString(), 'corr-9');

      await replier.publishAsync(responseTopic, 'pong', {
        qos: 1,
        properties: { correlationData: req.packet.properties.correlationData },
      });
      const rep = await replies.next();
      assert.equal(rep.body, 'pong');
      assert.equal(rep.headers.destination, '/temp-queue/answers');
      assert.equal(rep.headers.subscription, id);
      assert.equal(rep.headers['correlation-id'], 'corr-9');
    } finally {
      await closeAll(requester, replier);
    }
  });

  test('expires: an already expired SEND is not delivered (topic and queue); a future one is', async () => {
    const topic = `/topic/${unique('stompjs/full/expires/')}`;
    const queue = `/queue/${unique('stompjs-expires-')}`;
    const { client } = await stompConnect(url());
    try {
      const past = String(Date.now() - 60_000);
      const future = String(Date.now() + 3_600_000);
      const { inbox } = await stompSubscribe(client, topic);
      await stompPublishWithReceipt(client, { destination: topic, body: 'stale', headers: { expires: past } });
      await stompPublishWithReceipt(client, { destination: topic, body: 'fresh', headers: { expires: future } });
      const m = await inbox.next();
      assert.equal(m.body, 'fresh', 'the expired message is not delivered');
      // MESSAGE carries expires = now + what remains (docs: session/expiry.rs), so it may
      // differ from the SEND's by the clock conversion; a generous bound, not a timing check.
      assert.ok(
        Math.abs(Number(m.headers.expires) - Number(future)) < 60_000,
        `expires ${m.headers.expires} vs ${future}`,
      );

      await stompPublishWithReceipt(client, { destination: queue, body: 'stale', headers: { expires: past } });
      await stompPublishWithReceipt(client, { destination: queue, body: 'fresh', headers: { expires: future } });
      await stompPublishWithReceipt(client, { destination: queue, body: 'forever', headers: { expires: '0' } });
      const { inbox: q } = await stompSubscribe(client, queue, { ack: 'client-individual' });
      const got = await take(q, 2);
      assert.deepEqual(
        got.map((x) => x.body),
        ['fresh', 'forever'],
        'expires:0 never expires',
      );
      for (const x of got) x.ack();
    } finally {
      await closeAll(client);
    }
  });
});
