// The backend examples of examples/ run against the real daemon, and a test subscriber gets
// each one's message: Rust (rumqttc, a cargo example), Node (MQTT.js), Python (paho-mqtt and
// stomp.py), curl (POST /api/v1/publish); the embedded-broker example runs on its own.
// Also checks that examples/chat/vendor holds exactly the pinned npm bundles.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import { EVENTUALLY_MS, REPO, eventually, startBroker } from '../lib/broker.js';
import { mqttClient } from '../lib/clients.js';
import { stale } from '../vendor.mjs';

const run = promisify(execFile);
const PYTHON = process.env.EXAMPLES_PYTHON || join(REPO, 'tests', 'python', '.venv', 'bin', 'python');
const CARGO_EXAMPLES = join(REPO, 'target', 'debug', 'examples');

let broker;
let subscriber;
const received = [];

before(async () => {
  broker = await startBroker();
  subscriber = await mqttClient(`mqtt://${broker.mqtt}`, { clientId: 'examples-subscriber' });
  subscriber.on('message', (topic, payload) => received.push({ topic, text: payload.toString() }));
  await subscriber.subscribeAsync('sensors/#', { qos: 1 });
});

after(async () => {
  await subscriber?.endAsync();
  await broker?.stop();
});

/** Runs an example (bounded), then waits for its message, which names it in `from`. */
async function example(from, file, args) {
  const { stdout } = await run(file, args, { cwd: REPO, timeout: EVENTUALLY_MS * 2 });
  const got = await eventually(`the message of the ${from} example`, () =>
    received.find((m) => m.topic === 'sensors/kitchen/temp' && JSON.parse(m.text).from === from),
  );
  assert.deepEqual(JSON.parse(got.text), { celsius: 21.5, from });
  return stdout;
}

const hostPort = (addr) => [addr.slice(0, addr.lastIndexOf(':')), addr.slice(addr.lastIndexOf(':') + 1)];

test('rust (rumqttc) publisher', async () => {
  const out = await example('rust', join(CARGO_EXAMPLES, 'publish'), hostPort(broker.mqtt));
  assert.match(out, /acknowledged/);
});

test('node (MQTT.js) publisher', async () => {
  await example('node', process.execPath, [join(REPO, 'examples/node/publish.mjs'), `mqtt://${broker.mqtt}`]);
});

test('python (paho-mqtt) publisher', async () => {
  await example('paho', PYTHON, [join(REPO, 'examples/python/publish.py'), ...hostPort(broker.mqtt)]);
});

test('python (stomp.py) publisher', async () => {
  await example('stomp.py', PYTHON, [join(REPO, 'examples/python/stomp_publish.py'), ...hostPort(broker.stomp)]);
});

test('curl against POST /api/v1/publish', async () => {
  const out = await example('curl', 'sh', [join(REPO, 'examples/curl/publish.sh'), broker.http]);
  assert.match(out, /"durable":true/);
});

test('embedded broker example', async () => {
  const { stdout } = await run(join(CARGO_EXAMPLES, 'embedded'), [], { cwd: REPO, timeout: EVENTUALLY_MS * 2 });
  assert.match(stdout, /received orders\/42 "created"/);
});

test('examples/chat/vendor holds the pinned npm bundles', () => {
  assert.deepEqual(stale(), [], 'run (cd tests/browser && node vendor.mjs)');
});
