// A backend service publishing to Diglot over MQTT/TCP with MQTT.js, at QoS 1.
//   (cd tests/browser && npm ci) && node examples/node/publish.mjs [mqtt://127.0.0.1:1883]
// Browser clients subscribed to MQTT `sensors/#` or STOMP `/topic/sensors/#` receive it.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/browser/package.json', import.meta.url));
const mqtt = require('mqtt');

const client = await mqtt.connectAsync(process.argv[2] ?? 'mqtt://127.0.0.1:1883', { clientId: 'example-node-publisher' });
// Resolves on PUBACK: the broker has taken (and stored) the message.
await client.publishAsync('sensors/kitchen/temp', JSON.stringify({ celsius: 21.5, from: 'node' }), { qos: 1 });
console.log('published, acknowledged');
await client.endAsync();
