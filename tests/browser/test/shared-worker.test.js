// examples/shared-worker in Chromium: two tabs share one MQTT.js connection held by a
// SharedWorker, and both get a message published to a topic they subscribed to.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { eventually, startBroker } from '../lib/broker.js';
import { launch, openPage, screenshot } from '../lib/browser.js';

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

const logTexts = (page) => page.$$eval('#log li .text', (els) => els.map((e) => e.textContent));

test('shared worker: two tabs, one connection, both get the message', async () => {
  const base = `sw/${process.pid}`;
  const context = await browser.newContext();
  const url = `${broker.http}/shared-worker/?subscribe=${encodeURIComponent(`${base}/#`)}`;
  const a = await openPage(context);
  await a.goto(url);
  const b = await openPage(context);
  await b.goto(url);
  for (const page of [a, b]) {
    await page.waitForSelector('#state[data-state="connected"]');
    await eventually('both tabs to be counted', async () => (await page.textContent('#tabs')) === '2');
  }
  const id = await a.textContent('#client-id');
  assert.equal(await b.textContent('#client-id'), id, 'one worker, one client id');
  const r = await fetch(`${broker.http}/api/v1/connections`);
  const { items } = await r.json();
  assert.equal(items.filter((c) => String(c.client_id).startsWith('shared-worker-')).length, 1, JSON.stringify(items));

  // A backend message reaches both tabs (the worker has subscribed once, the filter is routed twice).
  const text = 'hello, tabs <b>not bold</b>';
  const p = await fetch(`${broker.http}/api/v1/publish`, {
    method: 'POST',
    body: JSON.stringify({ topic: `${base}/news`, payload: text }),
  });
  assert.equal(p.status, 200);
  for (const page of [a, b]) await eventually('the message in each tab', async () => (await logTexts(page)).includes(text));
  assert.equal(await a.$$eval('#log b', (els) => els.length), 0);

  // One tab publishes through the shared connection; the other gets it.
  await a.fill('#pub [name=topic]', `${base}/from-a`);
  await a.fill('#pub [name=text]', 'from tab A');
  await a.click('#pub button');
  await eventually('tab B to get tab A’s message', async () => (await logTexts(b)).includes('from tab A'));

  await screenshot(a, 'shared-worker.png');

  // A tab that closes is forgotten.
  await b.close({ runBeforeUnload: true });
  await eventually('one tab left', async () => (await a.textContent('#tabs')) === '1');
  assert.deepEqual(a.problems, []);
  await context.close();
});
