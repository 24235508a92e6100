// Starts the real `diglot` daemon for a test file and stops it afterwards.
//
// The daemon gets a temp config that puts all three listeners on 127.0.0.1:0; their addresses
// are read from its "listening" log lines on stdout, e.g.
//   INFO diglot_net::server: listening listener=listeners.ws kind="ws" addr=127.0.0.1:41234
// stdout and stderr are drained for the daemon's whole life (a full pipe would stall it) and
// the last lines are kept for error messages.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DIGLOT_BIN = process.env.DIGLOT_BIN || join(REPO, 'target', 'debug', 'diglot');

/** "Eventually" bound for anything we wait on; never a timing assertion. */
export const EVENTUALLY_MS = 15_000;

const CONFIG = `[listeners.ws]
addr = "127.0.0.1:0"
[listeners.mqtt]
addr = "127.0.0.1:0"
[listeners.stomp]
addr = "127.0.0.1:0"
[log]
level = "info"
`;

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const LISTENING = /listener=listeners\.(ws|mqtt|stomp)\b.*\baddr=(\S+)/;

const running = new Set();
let exitHooked = false;

function hookProcessExit() {
  if (exitHooked) return;
  exitHooked = true;
  const killAll = () => {
    for (const b of running) {
      try {
        b.child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
      b.cleanupDir();
    }
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      killAll();
      process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 })[sig]);
    });
  }
}

/**
 * Starts a daemon. Resolves to { ws, mqtt, stomp } ("host:port" strings), plus wsUrl,
 * stop(), restart() and log(). With `dir`, the daemon runs in that existing directory (and
 * so finds the store an earlier daemon left under its `data/`) instead of a new temp dir.
 * `extraConfig` is TOML appended to the config file (e.g. `[server]` and `[auth]` sections);
 * a restart keeps it.
 */
export async function startBroker({ dir: reuseDir, extraConfig = '' } = {}) {
  hookProcessExit();
  const dir = reuseDir ?? mkdtempSync(join(tmpdir(), 'diglot-node-'));
  const config = join(dir, 'broker.toml');
  writeFileSync(config, `${CONFIG}${extraConfig ? `\n${extraConfig}\n` : ''}`);

  const env = { ...process.env, NO_COLOR: '1' };
  delete env.RUST_LOG;
  // The daemon's data directory (the store's default `data`) lands in the temp dir too.
  const child = spawn(DIGLOT_BIN, ['--config', config], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  const lines = [];
  const remember = (line) => {
    lines.push(line);
    if (lines.length > 200) lines.shift();
  };
  const addrs = {};
  let onAddr = () => {};
  createInterface({ input: child.stdout }).on('line', (raw) => {
    const line = raw.replace(ANSI, '');
    remember(line);
    if (line.includes('listening')) {
      const m = LISTENING.exec(line);
      if (m) {
        addrs[m[1]] = m[2];
        onAddr();
      }
    }
  });
  createInterface({ input: child.stderr }).on('line', (raw) => remember(`[stderr] ${raw.replace(ANSI, '')}`));

  let spawnError = null;
  const exited = new Promise((res) => {
    child.once('exit', (code, signal) => res({ code, signal }));
    // A binary that cannot be spawned emits 'error' and never 'exit'.
    child.once('error', (e) => {
      spawnError = e;
      onAddr();
      if (child.pid === undefined) res({ code: null, signal: null, error: e });
    });
  });

  const broker = {
    child,
    exited,
    log: () => lines.join('\n'),
    cleanupDir: () => rmSync(dir, { recursive: true, force: true }),
  };
  running.add(broker);

  try {
    await new Promise((res, rej) => {
      const timer = setTimeout(
        () => rej(new Error(`diglot did not log its three listeners within ${EVENTUALLY_MS} ms`)),
        EVENTUALLY_MS,
      );
      onAddr = () => {
        if (spawnError) {
          clearTimeout(timer);
          rej(new Error(`cannot start ${DIGLOT_BIN}: ${spawnError.message} (build it or set DIGLOT_BIN)`));
        } else if (addrs.ws && addrs.mqtt && addrs.stomp) {
          clearTimeout(timer);
          res();
        }
      };
      exited.then(({ code, signal, error }) => {
        clearTimeout(timer);
        if (!error) rej(new Error(`diglot exited early (code ${code}, signal ${signal})`));
      });
    });
  } catch (e) {
    await stop(broker);
    e.message += `\n--- diglot output ---\n${broker.log()}`;
    throw e;
  }

  broker.ws = addrs.ws;
  broker.mqtt = addrs.mqtt;
  broker.stomp = addrs.stomp;
  broker.wsUrl = (path = '/ws') => `ws://${addrs.ws}${path}`;
  broker.stop = () => stop(broker);
  broker.restart = () => restart(broker, dir, extraConfig);
  return broker;
}

/**
 * SIGTERM, then wait for the exit (SIGKILL if it does not come). Returns { code, signal }.
 * The temp dir is removed unless `keepDir`.
 */
async function stop(broker, { keepDir = false } = {}) {
  const { child } = broker;
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
  }
  let timer;
  const result = await Promise.race([
    broker.exited,
    new Promise((res) => {
      timer = setTimeout(() => res(null), EVENTUALLY_MS);
    }),
  ]);
  clearTimeout(timer);
  running.delete(broker);
  if (!keepDir) broker.cleanupDir();
  if (result === null) {
    child.kill('SIGKILL');
    await broker.exited;
    throw new Error(`diglot did not exit after SIGTERM\n--- diglot output ---\n${broker.log()}`);
  }
  return result;
}

/**
 * Stops `broker` with SIGTERM (it must exit 0) and starts a new daemon in the same directory,
 * on the same data directory; its listeners get new ports. Resolves to the new broker.
 */
async function restart(broker, dir, extraConfig = '') {
  let result;
  try {
    result = await stop(broker, { keepDir: true });
  } catch (e) {
    broker.cleanupDir();
    throw e;
  }
  if (result.code !== 0) {
    broker.cleanupDir();
    throw new Error(
      `diglot exited with code ${result.code} signal ${result.signal} after SIGTERM\n--- diglot output ---\n${broker.log()}`,
    );
  }
  return startBroker({ dir, extraConfig });
}

/**
 * Registers before/after hooks that run one daemon for the calling test file. Returns an
 * object whose fields (ws, mqtt, stomp, wsUrl, ...) are filled in once `before` has run.
 * `extraConfig` (TOML text, or a function returning it, called in `before`) is appended to
 * the daemon's config.
 */
export function useBroker({ extraConfig = '' } = {}) {
  const handle = {};
  before(async () => {
    const extra = typeof extraConfig === 'function' ? extraConfig() : extraConfig;
    Object.assign(handle, await startBroker({ extraConfig: extra }));
  });
  after(async () => {
    if (!handle.stop) return;
    const { code, signal } = await handle.stop();
    // README: on SIGTERM the daemon says goodbye to its clients and exits 0.
    if (code !== 0) {
      throw new Error(
        `diglot exited with code ${code} signal ${signal} after SIGTERM\n--- diglot output ---\n${handle.log()}`,
      );
    }
  });
  return handle;
}

/**
 * An argon2id PHC string for `password` from `diglot hash-password`, for `[auth] users`.
 */
export function hashPassword(password) {
  return execFileSync(DIGLOT_BIN, ['hash-password'], { input: `${password}\n`, encoding: 'utf8' }).trim();
}

/** Resolves with the value `fn(resolve)` produces, or rejects after EVENTUALLY_MS with `what`. */
export function eventually(what, fn, ms = EVENTUALLY_MS) {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), ms);
    fn(
      (v) => {
        clearTimeout(timer);
        res(v);
      },
      (e) => {
        clearTimeout(timer);
        rej(e);
      },
    );
  });
}

/** A queue of received items; next() waits (eventually-bounded) for the next one. */
export class Inbox {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }
  push(item) {
    const w = this.waiters.shift();
    if (w) w(item);
    else this.items.push(item);
  }
  next(what = `a message on ${this.name}`) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    let waiter;
    return eventually(what, (res) => {
      waiter = res;
      this.waiters.push(res);
    }).catch((e) => {
      // Drop our waiter so a late item is kept for the next call, not swallowed.
      this.waiters = this.waiters.filter((w) => w !== waiter);
      throw e;
    });
  }
}

/** A per-run unique suffix, so topics of different tests never overlap. */
let seq = 0;
export function unique(prefix) {
  seq += 1;
  return `${prefix}${process.pid}-${seq}`;
}
