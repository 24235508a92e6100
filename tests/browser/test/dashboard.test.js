// GET /dashboard in Chromium with traffic flowing: connection counts by protocol, message
// rates, busiest topics, queue depth and recent closes appear and change; client-supplied
// text (a client id full of markup) shows as text; the page stays within its CSP.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { eventually, startBroker } from '../lib/broker.js';
import { launch, openPage, screenshot } from '../lib/browser.js';
import { mqttClient, stompClient } from '../lib/clients.js';

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

const number = (text) => Number(String(text).replace(/,/g, ''));

test('dashboard: live numbers from /api/v1/stats, as text, within the CSP', async () => {
  const tcp = await mqttClient(`mqtt://${broker.mqtt}`, { clientId: 'dash-tcp' });
  const ws = await mqttClient(broker.wsUrl(), { clientId: 'dash-ws' });
  await ws.subscribeAsync('dash/#');
  const stomp = await stompClient(broker.wsUrl());
  stomp.subscribe('/topic/dash/#', () => {});
  // A persistent session that goes away: its queue fills up with the QoS 1 traffic.
  const away = await mqttClient(`mqtt://${broker.mqtt}`, { clientId: 'dash-away', clean: false });
  await away.subscribeAsync('dash/sensors/#', { qos: 1 });
  await away.endAsync();
  // A client whose id is markup, closed: it shows up in the recent closes.
  const evil = '<img src=x onerror="window.pwned=1">';
  const shady = await mqttClient(broker.wsUrl(), { clientId: evil });
  await shady.endAsync();

  let n = 0;
  const traffic = setInterval(() => {
    n += 1;
    tcp.publish('dash/sensors/kitchen', `t=${n}`, { qos: 1 });
    stomp.publish({ destination: '/topic/dash/chat', body: `hello ${n}` });
  }, 100);
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
    const page = await openPage(context);
    const csp = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
    });
    await page.goto(`${broker.http}/dashboard`);

    await eventually('the connection count', async () => number(await page.textContent('#conn-total')) >= 3);
    await page.waitForSelector('#by-protocol .bar[data-protocol="mqtt"]');
    await page.waitForSelector('#by-protocol .bar[data-protocol="stomp"]');
    await eventually('a message rate in', async () => number(await page.textContent('#rate-in')) > 0);
    await eventually('a message rate out', async () => number(await page.textContent('#rate-out')) > 0);
    const first = number(await page.textContent('#msg-received'));
    await eventually('the received count to grow', async () => number(await page.textContent('#msg-received')) > first);

    const cells = (sel) => page.$$eval(sel, (tds) => tds.map((td) => td.textContent));
    await eventually('the busiest topics', async () => (await cells('#topics td.name')).includes('dash/sensors/kitchen'));
    const depth = async () => {
      const rows = await page.$$eval('#queues tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
      const row = rows.find((r) => r[0] === '$session/dash-away');
      return row ? number(row[1]) : 0;
    };
    const d1 = await eventually('the away session queue', depth);
    await eventually('the queue depth to grow', async () => (await depth()) > d1);
    await eventually('the recent close with a markup client id', async () => (await cells('#closes td.name')).includes(evil));
    assert.equal(await page.$$eval('main img', (els) => els.length), 0);
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    // Enough samples for the charts to have lines.
    await eventually('the charts to fill', () => page.evaluate(() => document.querySelector('#status').dataset.ok === 'true'));
    await new Promise((r) => setTimeout(r, 4000));
    assert.ok(number(await page.textContent('#rate-peak')) > 0);

    await screenshot(page, 'dashboard.png');
    assert.deepEqual(csp, [], 'no CSP violations');
    assert.deepEqual(page.problems, []);
    await context.close();
  } finally {
    clearInterval(traffic);
    await tcp.endAsync();
    await ws.endAsync();
    await stomp.deactivate();
  }
});
