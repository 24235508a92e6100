// examples/chat/ in Chromium: MQTT.js and stompjs panes in one room over one WebSocket port,
// text-only rendering, automatic reconnection across a broker restart on the same port, and
// persistent messages published while the panes are offline (before and after a restart)
// arriving in order once they are back.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import mqtt from 'mqtt';

import { eventually, startBroker } from '../lib/broker.js';
import { launch, openPage, screenshot } from '../lib/browser.js';
import { counter, send, texts, waitState, waitText } from '../lib/chat.js';

let broker;
let browser;

before(async () => {
  broker = await startBroker();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

/** A backend publisher over raw TCP MQTT: QoS 1, in the page's JSON format. */
async function publishMqtt(room, texts) {
  const c = await mqtt.connectAsync(`mqtt://${broker.mqtt}`, { clientId: `backend-${process.pid}`, reconnectPeriod: 0 });
  for (const text of texts) {
    await c.publishAsync(`chat/${room}`, JSON.stringify({ from: 'backend', via: 'MQTT/TCP', text, ts: Date.now() }), { qos: 1 });
  }
  await c.endAsync();
}

/** A backend publisher over the HTTP API: QoS 1 (stored for the persistent session and the durable subscription). */
async function publishHttp(room, texts) {
  for (const text of texts) {
    const payload = JSON.stringify({ from: 'backend', via: 'HTTP API', text, ts: Date.now() });
    const r = await fetch(`${broker.http}/api/v1/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ topic: `chat/${room}`, payload, qos: 1 }),
    });
    assert.equal(r.status, 200, await r.text());
  }
}

test('chat: two protocols, one room, persistent across going offline and a broker restart', async () => {
  const room = `room-${process.pid}`;
  const context = await browser.newContext({ viewport: { width: 1200, height: 1000 } });
  const page = await openPage(context);
  await page.goto(`${broker.http}/chat/?room=${room}&name=tester&mqttId=m-${room}&stompId=s-${room}`);
  await waitState(page, 'mqtt', 'connected');
  await waitState(page, 'stomp', 'connected');

  // Each way across the protocols; each pane sees its own message come back too.
  await send(page, 'mqtt', 'hello from the MQTT pane');
  await waitText(page, 'stomp', 'hello from the MQTT pane');
  await send(page, 'stomp', 'hello back from the STOMP pane');
  await waitText(page, 'mqtt', 'hello back from the STOMP pane');
  await waitText(page, 'mqtt', 'hello from the MQTT pane');
  await waitText(page, 'stomp', 'hello back from the STOMP pane');

  // Markup in a message stays text.
  const evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><b>bold</b>';
  await send(page, 'mqtt', evil);
  await waitText(page, 'stomp', evil);
  await waitText(page, 'mqtt', evil);
  assert.equal(await page.$$eval('.log script, .log img, .log b', (els) => els.length), 0);
  assert.equal(await page.evaluate(() => window.pwned), undefined);

  // The broker stops (SIGTERM): both panes notice and retry with backoff; it comes back on the
  // same port and data dir, and both reconnect by themselves.
  await broker.stop({ keepDir: true });
  await page.waitForSelector('#mqtt .state:not([data-state="connected"])', { timeout: 20_000 });
  await page.waitForSelector('#stomp .state:not([data-state="connected"])', { timeout: 20_000 });
  broker = await startBroker({ dir: broker.dir, wsPort: broker.wsPort });
  await waitState(page, 'mqtt', 'connected');
  await waitState(page, 'stomp', 'connected');
  assert.ok((await counter(page, 'mqtt', 'reconnects')) >= 1);
  assert.ok((await counter(page, 'stomp', 'reconnects')) >= 1);
  await send(page, 'stomp', 'still here after the restart');
  await waitText(page, 'mqtt', 'still here after the restart');

  // Both panes go offline; a backend publishes, the broker restarts, the backend publishes
  // more; both panes come back and get all of it, in order, marked as after a reconnect.
  await page.click('#mqtt .toggle');
  await page.click('#stomp .toggle');
  await waitState(page, 'mqtt', 'offline');
  await waitState(page, 'stomp', 'offline');
  const before = { mqtt: await counter(page, 'mqtt', 'redelivered'), stomp: await counter(page, 'stomp', 'redelivered') };
  await publishMqtt(room, ['persistent 1', 'persistent 2', 'persistent 3']);
  broker = await broker.restart();
  await publishHttp(room, ['persistent 4', 'persistent 5', 'persistent 6']);
  await page.click('#mqtt .toggle');
  await page.click('#stomp .toggle');
  const expected = ['persistent 1', 'persistent 2', 'persistent 3', 'persistent 4', 'persistent 5', 'persistent 6'];
  for (const pane of ['mqtt', 'stomp']) {
    const got = await eventually(`${pane} to show the six persistent messages`, async () => {
      const t = (await texts(page, pane)).filter((x) => x.startsWith('persistent '));
      return t.length >= expected.length && t;
    });
    assert.deepEqual(got, expected, `${pane} pane order`);
    assert.ok((await counter(page, pane, 'redelivered')) >= before[pane] + expected.length, `${pane} counts them`);
    const marked = await page.$$eval(`#${pane} .log li.late .text`, (els) => els.map((e) => e.textContent));
    for (const t of expected) assert.ok(marked.includes(t), `${pane} marks ${t}`);
  }
  await send(page, 'mqtt', 'and live again');
  await waitText(page, 'stomp', 'and live again');

  await screenshot(page, 'chat.png');
  assert.deepEqual(page.problems.filter((p) => p.startsWith('pageerror')), []);
  await context.close();
});
