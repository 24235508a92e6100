// permessage-deflate (RFC 7692) as browsers and Node clients use it: negotiated when offered,
// compressed round trips with MQTT.js and a raw `ws` client, and a decompression bomb refused.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { eventually, useBroker, unique } from '../broker.js';
import { closeAll, mqttConnect } from '../clients.js';

const broker = useBroker();

/** Opens a raw WebSocket with the given permessage-deflate client options. */
function openDeflate(url, protocols, perMessageDeflate) {
  const ws = new WebSocket(url, protocols, { perMessageDeflate });
  return eventually(`compressed WebSocket to ${url}`, (res, rej) => {
    ws.on('open', () => res(ws));
    ws.on('error', rej);
  });
}

/** MQTT 3.1.1 CONNECT, clean session, keep-alive 30 s. */
function connectPacket(clientId) {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([
    Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 30]),
    Buffer.from([id.length >> 8, id.length & 0xff]),
    id,
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

function remainingLength(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function publishPacket(topic, payload) {
  const t = Buffer.from(topic);
  const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, payload]);
  return Buffer.concat([Buffer.from([0x30]), remainingLength(body.length), body]);
}

test('the extension is agreed with the header exactly as Chromium sends it', async () => {
  const ws = await openDeflate(broker.wsUrl('/ws'), ['mqtt'], { clientMaxWindowBits: true });
  assert.match(ws.extensions, /permessage-deflate/);
  ws.close();
});

test('MQTT.js with perMessageDeflate: a large compressible payload round-trips', async () => {
  const topic = unique('deflate/');
  const { client: sub, inbox } = await mqttConnect(broker.wsUrl('/ws'), { wsOptions: { perMessageDeflate: { threshold: 0 } } });
  const { client: pub } = await mqttConnect(broker.wsUrl('/ws'), { wsOptions: { perMessageDeflate: { threshold: 0 } } });
  try {
    await sub.subscribeAsync(topic, { qos: 1 });
    const payload = Buffer.alloc(200 * 1024, 'compressible ');
    await pub.publishAsync(topic, payload, { qos: 1 });
    const got = await inbox.next();
    assert.equal(got.topic, topic);
    assert.deepEqual(got.payload, payload);
  } finally {
    await closeAll(sub, pub);
  }
});

test('a raw client with no context takeover works too', async () => {
  const ws = await openDeflate(broker.wsUrl('/mqtt'), [], { threshold: 0, clientNoContextTakeover: true, serverNoContextTakeover: true });
  try {
    assert.match(ws.extensions, /permessage-deflate/);
    const connack = eventually('CONNACK', (res) => ws.once('message', (m) => res(Buffer.from(m))));
    ws.send(connectPacket(unique('raw-')));
    assert.deepEqual(await connack, Buffer.from([0x20, 2, 0, 0]));
  } finally {
    ws.close();
  }
});

test('a decompression bomb is refused at the message limit, not inflated', async () => {
  const ws = await openDeflate(broker.wsUrl('/mqtt'), [], { threshold: 0 });
  const closed = eventually('close after the bomb', (res) => ws.once('close', (code) => res(code)));
  ws.send(connectPacket(unique('bomb-')));
  // 8 MiB of zeros deflate to a few KiB; the broker's limit (limits.max_ws_message_bytes) is
  // 2 MiB per message after inflating.
  ws.send(publishPacket('bomb', Buffer.alloc(8 * 1024 * 1024)));
  assert.equal(await closed, 1009, 'closed with 1009 Message Too Big');
  // The broker still serves a new client.
  const { client: ok } = await mqttConnect(broker.wsUrl('/ws'));
  await closeAll(ok);
});
