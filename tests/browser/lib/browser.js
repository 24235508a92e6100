// Debian's Chromium driven by playwright-core, headless and without network chatter
// (PEERS.md): this machine has no network, and without these flags Chromium keeps reaching out.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { ARTIFACTS } from './broker.js';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * Launches Chromium with its home, config and cache in a temp dir (removed when the browser
 * closes), so that it writes nothing under the real home directory (crash reports, dconf).
 */
export async function launch() {
  const home = mkdtempSync(join(tmpdir(), 'diglot-chromium-'));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(home, '.cache') },
  });
  browser.on('disconnected', () => rmSync(home, { recursive: true, force: true }));
  return browser;
}

/** A page that records console errors and uncaught exceptions in `page.problems`. */
export async function openPage(context) {
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`console: ${m.text()}`);
  });
  return page;
}

/** Saves a screenshot under target/browser-artifacts/ (git-ignored) and returns its path. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = `${ARTIFACTS}/${name}`;
  await page.screenshot({ path, fullPage: true });
  return path;
}
