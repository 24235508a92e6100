// Starts the real `diglot` daemon for a test file, serving examples/ as static files.
//
// Unlike tests/node/broker.js, the WebSocket listener gets a fixed port (a free one picked
// first), because a browser page must reconnect to the same URL after a restart; the raw TCP
// listeners use port 0 and their addresses are read from the daemon's "listening" log lines.
// stdout and stderr are drained for the daemon's whole life, and the last lines are kept for
// error messages. Everything started here is stopped by stop(), or killed when Node exits.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const DIGLOT_BIN = process.env.DIGLOT_BIN || join(REPO, 'target', 'debug', 'diglot');
export const ARTIFACTS = join(REPO, 'target', 'browser-artifacts');

/** "Eventually" bound for anything we wait on; never a timing assertion. */
export const EVENTUALLY_MS = 20_000;

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const LISTENING = /listener=listeners\.(ws|mqtt|stomp)\b.*\baddr=(\S+)/;

const running = new Set();
process.on('exit', () => {
  for (const b of running) {
    try {
      b.child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/** A TCP port that was free a moment ago. */
export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function config(dir, wsPort) {
  return `[listeners.ws]
addr = "127.0.0.1:${wsPort}"
[listeners.mqtt]
addr = "127.0.0.1:0"
[listeners.stomp]
addr = "127.0.0.1:0"
[log]
level = "info,fjall=warn,lsm_tree=warn"
[http]
static_dir = ${JSON.stringify(join(REPO, 'examples'))}
[store]
path = ${JSON.stringify(join(dir, 'data'))}
`;
}

/**
 * Starts a daemon in a new temp dir (or `dir`, to reuse its store) with the WebSocket listener
 * on `wsPort` (default: a free port). Resolves to { ws, mqtt, stomp, http, wsUrl, dir, wsPort,
 * stop(), restart(), log() }.
 */
export async function startBroker({ dir, wsPort } = {}) {
  dir ??= mkdtempSync(join(tmpdir(), 'diglot-browser-'));
  wsPort ??= await freePort();
  const file = join(dir, 'broker.toml');
  writeFileSync(file, config(dir, wsPort));
  const env = { ...process.env, NO_COLOR: '1' };
  delete env.RUST_LOG;
  const child = spawn(DIGLOT_BIN, ['--config', file], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const remember = (line) => {
    lines.push(line);
    if (lines.length > 300) lines.shift();
  };
  const addrs = {};
  let onAddr = () => {};
  createInterface({ input: child.stdout }).on('line', (raw) => {
    const line = raw.replace(ANSI, '');
    remember(line);
    const m = LISTENING.exec(line);
    if (m) {
      addrs[m[1]] = m[2];
      onAddr();
    }
  });
  createInterface({ input: child.stderr }).on('line', (raw) => remember(`[stderr] ${raw.replace(ANSI, '')}`));
  const exited = new Promise((res) => {
    child.once('exit', (code, signal) => res({ code, signal }));
    child.once('error', (error) => res({ code: null, signal: null, error }));
  });
  const broker = { child, exited, dir, wsPort, log: () => lines.join('\n') };
  running.add(broker);
  try {
    await new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`diglot did not log its listeners within ${EVENTUALLY_MS} ms`)), EVENTUALLY_MS);
      onAddr = () => {
        if (addrs.ws && addrs.mqtt && addrs.stomp) {
          clearTimeout(timer);
          res();
        }
      };
      exited.then(({ code, signal, error }) => {
        clearTimeout(timer);
        rej(new Error(error ? `cannot start ${DIGLOT_BIN}: ${error.message} (build it or set DIGLOT_BIN)` : `diglot exited early (code ${code}, signal ${signal})`));
      });
    });
  } catch (e) {
    await stop(broker, { keepDir: true });
    e.message += `\n--- diglot output ---\n${broker.log()}`;
    throw e;
  }
  Object.assign(broker, {
    ws: addrs.ws,
    mqtt: addrs.mqtt,
    stomp: addrs.stomp,
    http: `http://${addrs.ws}`,
    wsUrl: (path = '/ws') => `ws://${addrs.ws}${path}`,
    stop: (opts) => stop(broker, opts),
    restart: () => restart(broker),
  });
  return broker;
}

/** SIGTERM, then wait for the exit; the daemon must exit 0. Removes the temp dir unless keepDir. */
async function stop(broker, { keepDir = false } = {}) {
  const { child } = broker;
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  let timer;
  const result = await Promise.race([broker.exited, new Promise((res) => (timer = setTimeout(() => res(null), EVENTUALLY_MS)))]);
  clearTimeout(timer);
  running.delete(broker);
  if (!keepDir) rmSync(broker.dir, { recursive: true, force: true });
  if (result === null) {
    child.kill('SIGKILL');
    await broker.exited;
    throw new Error(`diglot did not exit after SIGTERM\n--- diglot output ---\n${broker.log()}`);
  }
  if (result.code !== 0 && !result.error) {
    throw new Error(`diglot exited with code ${result.code} signal ${result.signal} after SIGTERM\n--- diglot output ---\n${broker.log()}`);
  }
  return result;
}

/** Stops `broker` with SIGTERM and starts a new daemon on the same data dir and the same WebSocket port. */
async function restart(broker) {
  await stop(broker, { keepDir: true });
  return startBroker({ dir: broker.dir, wsPort: broker.wsPort });
}

/** Resolves once `check()` returns a truthy value (polled), or rejects after EVENTUALLY_MS naming `what`. */
export async function eventually(what, check, ms = EVENTUALLY_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
