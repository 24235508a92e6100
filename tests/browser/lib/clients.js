// Node clients for making traffic: MQTT.js over TCP or WebSocket, stompjs over WebSocket.

import { Client } from '@stomp/stompjs';
import mqtt from 'mqtt';
import WebSocket from 'ws';

import { EVENTUALLY_MS } from './broker.js';

export function mqttClient(url, opts = {}) {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: EVENTUALLY_MS, ...opts });
}

/** A connected stompjs client over `url` (Node 20 has no global WebSocket; `ws` stands in). */
export function stompClient(url, connectHeaders = {}) {
  const client = new Client({
    webSocketFactory: () => new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
    connectHeaders,
    reconnectDelay: 0,
  });
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error('stomp connect timed out')), EVENTUALLY_MS);
    client.onConnect = () => {
      clearTimeout(timer);
      res(client);
    };
    client.onStompError = (f) => rej(new Error(`STOMP ERROR ${f.headers.message}`));
    client.activate();
  });
}
