// Helpers for driving examples/chat/ in a page.

import { EVENTUALLY_MS } from './broker.js';

/** Waits until `pane` ("mqtt" or "stomp") shows connection state `state`. */
export function waitState(page, pane, state) {
  return page.waitForSelector(`#${pane} .state[data-state="${state}"]`, { timeout: EVENTUALLY_MS });
}

/** The texts of the messages `pane` shows, in order. */
export function texts(page, pane) {
  return page.$$eval(`#${pane} .log li .text`, (els) => els.map((e) => e.textContent));
}

/** Waits until `pane` shows a message whose text is exactly `text`. */
export function waitText(page, pane, text) {
  return page.waitForFunction(
    ([p, t]) => [...document.querySelectorAll(`#${p} .log li .text`)].some((e) => e.textContent === t),
    [pane, text],
    { timeout: EVENTUALLY_MS },
  );
}

/** Types `text` into `pane`'s box and sends it. */
export async function send(page, pane, text) {
  await page.fill(`#${pane} input`, text);
  await page.click(`#${pane} button[type=submit]`);
}

/** A counter of `pane`: received, redelivered or reconnects. */
export async function counter(page, pane, name) {
  return Number(await page.textContent(`#${pane} .${name}`));
}
