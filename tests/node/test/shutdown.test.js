// What real clients see when the daemon gets SIGTERM (README: WebSocket close 1001, STOMP
// ERROR "server shutting down", exit code 0). This file runs its own daemon and stops it.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import WebSocket from 'ws';

import { eventually, startBroker } from '../broker.js';
import { mqttConnect, stompConnect } from '../clients.js';

let broker;
after(async () => {
  if (broker) await broker.stop().catch(() => {});
});

test('SIGTERM: stompjs gets ERROR "server shutting down", MQTT.js sees close 1001, exit 0', async () => {
  broker = await startBroker();
  const { client: stomp } = await stompConnect(broker.wsUrl('/ws'));
  // Hand MQTT.js its `ws` socket ourselves, to see the close code it gets.
  let wsSocket;
  const { client: mq } = await mqttConnect(broker.wsUrl('/ws'), {
    protocolVersion: 4,
    createWebsocket: (url, protocols) => {
      wsSocket = new WebSocket(url, protocols);
      return wsSocket;
    },
  });
  const stompError = eventually('STOMP ERROR on shutdown', (res) => {
    stomp.onStompError = res;
  });
  const stompClosed = eventually('stompjs WebSocket close on shutdown', (res) => {
    stomp.onWebSocketClose = res;
  });
  const mqttClosed = eventually('MQTT.js WebSocket close on shutdown', (res) => {
    wsSocket.once('close', (code) => res(code));
  });
  try {
    const exit = broker.stop();
    const error = await stompError;
    assert.equal(error.command, 'ERROR');
    assert.equal(error.headers.message, 'server shutting down');
    await stompClosed;
    const code = await mqttClosed;
    assert.equal(code, 1001, 'WebSocket close 1001 going away');
    const { code: exitCode, signal } = await exit;
    assert.equal(exitCode, 0, `exit code ${exitCode} signal ${signal}\n${broker.log()}`);
    broker = undefined;
  } finally {
    mq.end(true);
    await stomp.deactivate({ force: true }).catch(() => {});
  }
});
