// WebSocket subprotocol negotiation as a browser-like client (the `ws` library) sees it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { eventually, useBroker } from '../broker.js';

const broker = useBroker();

/** Opens a WebSocket offering `protocols`; resolves to the open socket or the HTTP refusal. */
function open(url, protocols) {
  const ws = new WebSocket(url, protocols);
  return eventually(`WebSocket handshake to ${url} offering ${JSON.stringify(protocols)}`, (res, rej) => {
    ws.on('open', () => res({ ws }));
    ws.on('unexpected-response', (req, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => {
        body += chunk;
      });
      response.on('end', () => {
        req.destroy();
        res({ ws, response, body });
      });
      response.on('error', rej);
    });
    ws.on('error', (e) => {
      // After 'unexpected-response' the request is torn down by us; only earlier errors count.
      if (ws.readyState === WebSocket.CONNECTING) rej(e);
    });
  });
}

/**
 * Closes an open socket with 1000 and waits for the close handshake; resolves to the code the
 * server's close frame carried (RFC 6455 §5.5.1: it "typically" echoes ours, and 1005 means it
 * carried none; 1006 would mean the TCP connection dropped without a close frame).
 */
function close(ws) {
  return eventually('WebSocket close handshake', (res) => {
    ws.once('close', (code) => res(code));
    ws.close(1000);
  });
}

test('offering only ["chat"] gets HTTP 400 listing the supported subprotocols', async () => {
  const { ws, response, body } = await open(broker.wsUrl('/ws'), ['chat']);
  assert.equal(ws.readyState === WebSocket.OPEN, false);
  assert.equal(response?.statusCode, 400);
  assert.match(body, /\bmqtt\b/);
  assert.match(body, /\bv12\.stomp\b/);
  assert.match(body, /\bv11\.stomp\b/);
  assert.match(body, /\bv10\.stomp\b/);
});

test('offering nothing on /ws (no default protocol) gets HTTP 400', async () => {
  const { response, body } = await open(broker.wsUrl('/ws'), []);
  assert.equal(response?.statusCode, 400);
  assert.match(body, /\bmqtt\b/);
  assert.match(body, /\bv12\.stomp\b/);
});

test('offering ["chat", "v12.stomp"] picks v12.stomp', async () => {
  const { ws, response } = await open(broker.wsUrl('/ws'), ['chat', 'v12.stomp']);
  assert.equal(response, undefined, `unexpected HTTP ${response?.statusCode}`);
  assert.equal(ws.protocol, 'v12.stomp');
  assert.notEqual(await close(ws), 1006, 'a close frame, not a dropped connection');
});

test('offering ["v10.stomp", "v11.stomp", "v12.stomp"] picks the highest STOMP version', async () => {
  const { ws, response } = await open(broker.wsUrl('/ws'), ['v10.stomp', 'v11.stomp', 'v12.stomp']);
  assert.equal(response, undefined, `unexpected HTTP ${response?.statusCode}`);
  assert.equal(ws.protocol, 'v12.stomp');
  assert.notEqual(await close(ws), 1006, 'a close frame, not a dropped connection');
});

test('offering ["mqtt"] picks mqtt', async () => {
  const { ws, response } = await open(broker.wsUrl('/ws'), ['mqtt']);
  assert.equal(response, undefined, `unexpected HTTP ${response?.statusCode}`);
  assert.equal(ws.protocol, 'mqtt');
  assert.notEqual(await close(ws), 1006, 'a close frame, not a dropped connection');
});

test('/stomp and /mqtt accept a client that offers nothing, with no subprotocol echoed', async () => {
  for (const path of ['/stomp', '/mqtt']) {
    const { ws, response } = await open(broker.wsUrl(path), []);
    assert.equal(response, undefined, `${path}: unexpected HTTP ${response?.statusCode}`);
    assert.equal(ws.protocol, '', `${path}: no Sec-WebSocket-Protocol in the answer`);
    assert.notEqual(await close(ws), 1006, 'a close frame, not a dropped connection');
  }
});

test('GET /healthz answers 200', async () => {
  const res = await fetch(`http://${broker.ws}/healthz`);
  assert.equal(res.status, 200);
  await res.text();
});
