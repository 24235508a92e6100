// MQTT.js and @stomp/stompjs on one Diglot WebSocket port, talking to each other.
//   (cd tests/node && npm ci) && node examples/node/cross-protocol.mjs [ws://127.0.0.1:8080/ws]
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/node/package.json', import.meta.url));
const mqtt = require('mqtt');
const { Client } = require('@stomp/stompjs');
Object.assign(globalThis, { WebSocket: require('ws') });

const url = process.argv[2] ?? 'ws://127.0.0.1:8080/ws';

const m = await mqtt.connectAsync(url); // offers the "mqtt" subprotocol
await m.subscribeAsync('chat/#');
m.on('message', (topic, payload) => console.log(`MQTT  got ${topic}: ${payload}`));

const stomp = new Client({ brokerURL: url, reconnectDelay: 0 }); // offers v12/v11/v10.stomp
await new Promise((resolve) => {
  stomp.onConnect = resolve;
  stomp.activate();
});
stomp.subscribe('/topic/chat/#', (msg) => console.log(`STOMP got ${msg.headers.destination}: ${msg.body}`));

await new Promise((r) => setTimeout(r, 200));
await m.publishAsync('chat/room.1', 'hello from MQTT');
stomp.publish({ destination: '/topic/chat/room.1', body: 'hello from STOMP' });
await new Promise((r) => setTimeout(r, 500));
await m.endAsync();
await stomp.deactivate();
