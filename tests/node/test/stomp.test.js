// @stomp/stompjs against Diglot over WebSocket (ws://ADDR/ws; stompjs offers v12.stomp,
// v11.stomp, v10.stomp).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Versions } from '@stomp/stompjs';

import { eventually, unique, useBroker } from '../broker.js';
import { closeAll, stompConnect, stompPublishWithReceipt, stompSubscribe } from '../clients.js';

const broker = useBroker();

test('stompjs connects with STOMP 1.2 over the v12.stomp subprotocol', async () => {
  const { client, connected } = await stompConnect(broker.wsUrl('/ws'));
  try {
    assert.equal(connected.command, 'CONNECTED');
    assert.equal(connected.headers.version, '1.2');
    assert.equal(client.connectedVersion, '1.2');
    assert.equal(client.webSocket.protocol, 'v12.stomp');
  } finally {
    await closeAll(client);
  }
});

for (const version of ['1.1', '1.0']) {
  test(`stompjs limited to STOMP ${version} negotiates it (subprotocol and CONNECTED)`, async () => {
    const { client, connected } = await stompConnect(broker.wsUrl('/ws'), {
      stompVersions: new Versions([version]),
    });
    try {
      assert.equal(client.webSocket.protocol, `v${version.replace('.', '')}.stomp`);
      // STOMP 1.0 servers need not send a version header; 1.1+ must.
      assert.equal(connected.headers.version ?? '1.0', version);
      const destination = `/topic/${unique(`stompjs/v${version}/`)}`;
      const { inbox, id } = await stompSubscribe(client, destination);
      client.publish({ destination, body: `over ${version}` });
      const m = await inbox.next();
      assert.equal(m.body, `over ${version}`);
      assert.equal(m.headers.destination, destination);
      if (version !== '1.0') assert.equal(m.headers.subscription, id);
    } finally {
      await closeAll(client);
    }
  });
}

test('subscribe /topic/..., publish, receive body and headers', async () => {
  const destination = `/topic/${unique('stompjs/news/')}`;
  const { client: sub } = await stompConnect(broker.wsUrl('/ws'));
  const { client: pub } = await stompConnect(broker.wsUrl('/ws'));
  try {
    const { inbox, id } = await stompSubscribe(sub, destination);
    pub.publish({
      destination,
      body: 'hello from stompjs: ü €',
      headers: { 'content-type': 'text/plain;charset=utf-8' },
    });
    const m = await inbox.next();
    assert.equal(m.command, 'MESSAGE');
    assert.equal(m.body, 'hello from stompjs: ü €');
    assert.equal(m.headers.destination, destination);
    assert.equal(m.headers.subscription, id);
    assert.ok(m.headers['message-id'], 'MESSAGE carries a message-id');
    assert.equal(m.headers['content-type'], 'text/plain;charset=utf-8');
    // content-length counts bytes, not characters.
    if (m.headers['content-length'] !== undefined) {
      assert.equal(Number(m.headers['content-length']), Buffer.byteLength('hello from stompjs: ü €'));
    }

    // A second message gets a different message-id.
    pub.publish({ destination, body: 'second' });
    const m2 = await inbox.next();
    assert.equal(m2.body, 'second');
    assert.notEqual(m2.headers['message-id'], m.headers['message-id']);
  } finally {
    await closeAll(sub, pub);
  }
});

test('a SEND with a receipt header is answered with RECEIPT, and the message is delivered', async () => {
  const destination = `/topic/${unique('stompjs/receipt/')}`;
  const { client } = await stompConnect(broker.wsUrl('/ws'));
  try {
    const { inbox, id } = await stompSubscribe(client, destination);
    const { receipt, frame } = await stompPublishWithReceipt(client, { destination, body: 'with receipt' });
    assert.equal(frame.command, 'RECEIPT');
    assert.equal(frame.headers['receipt-id'], receipt);
    const m = await inbox.next();
    assert.equal(m.body, 'with receipt');
    assert.equal(m.headers.subscription, id);
    assert.equal(m.headers.destination, destination);
  } finally {
    await closeAll(client);
  }
});

test('a binary body with NUL bytes survives (content-length framing)', async () => {
  const destination = `/topic/${unique('stompjs/binary/')}`;
  const { client } = await stompConnect(broker.wsUrl('/ws'));
  try {
    const { inbox } = await stompSubscribe(client, destination);
    const bytes = new Uint8Array([0x00, 0x0a, 0x00, 0xff, 0x3a, 0x00]);
    client.publish({
      destination,
      binaryBody: bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
    const m = await inbox.next();
    assert.deepEqual(Buffer.from(m.binaryBody), Buffer.from(bytes));
    assert.equal(m.headers['content-type'], 'application/octet-stream');
  } finally {
    await closeAll(client);
  }
});

test('STOMP subscriptions may use MQTT wildcards; overlapping ones each get a MESSAGE', async () => {
  const base = unique('stompjs/wild/');
  const { client } = await stompConnect(broker.wsUrl('/ws'));
  try {
    const plus = await stompSubscribe(client, `/topic/${base}/+/c`);
    const hash = await stompSubscribe(client, `/topic/${base}/#`);
    client.publish({ destination: `/topic/${base}/b/c`, body: 'both' });
    const a = await plus.inbox.next();
    const b = await hash.inbox.next();
    assert.equal(a.body, 'both');
    assert.equal(b.body, 'both');
    assert.equal(a.headers.subscription, plus.id);
    assert.equal(b.headers.subscription, hash.id);
    assert.equal(a.headers.destination, `/topic/${base}/b/c`);
    assert.equal(b.headers.destination, `/topic/${base}/b/c`);
  } finally {
    await closeAll(client);
  }
});

test('a header value with a colon is escaped and unescaped (STOMP 1.2 \\c)', async () => {
  const destination = `/topic/${unique('stompjs/colon/')}/a:b`;
  const { client } = await stompConnect(broker.wsUrl('/ws'));
  try {
    const { inbox } = await stompSubscribe(client, destination);
    client.publish({ destination, body: 'colon', headers: { 'content-type': 'text/plain' } });
    const m = await inbox.next();
    assert.equal(m.body, 'colon');
    assert.equal(m.headers.destination, destination);
  } finally {
    await closeAll(client);
  }
});

test("SUBSCRIBE to another session's private reply destination is refused with an ERROR", async () => {
  const { client } = await stompConnect(broker.wsUrl('/ws'));
  try {
    const error = await eventually('ERROR for SUBSCRIBE /topic/$temp/...', (res) => {
      client.onStompError = res;
      client.subscribe(`/topic/$temp/${unique('someone-')}/replies`, () => {});
    });
    assert.equal(error.command, 'ERROR');
    assert.ok(error.headers.message, 'ERROR has a message header');
  } finally {
    await closeAll(client);
  }
});

test('SEND to a wildcard destination is refused with ERROR', async () => {
  const { client } = await stompConnect(broker.wsUrl('/ws'));
  try {
    const error = await eventually('ERROR for SEND to /topic/a/+', (res) => {
      client.onStompError = res;
      client.publish({ destination: `/topic/${unique('stompjs/bad/')}/+`, body: 'x' });
    });
    assert.equal(error.command, 'ERROR');
    assert.ok(error.headers.message, 'ERROR has a message header');
  } finally {
    await closeAll(client);
  }
});
