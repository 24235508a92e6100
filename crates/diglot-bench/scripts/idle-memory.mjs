// Resident memory per idle MQTT-over-WebSocket connection, plain and with permessage-deflate.
//   cargo build --release -p diglot --bin diglot
//   (cd tests/node && npm ci) && node crates/diglot-bench/scripts/idle-memory.mjs [N]
// Starts a fresh release daemon for each mode (a warm process under-reports: allocators keep
// freed memory), opens N connections that each send CONNECT (keep-alive 60) and wait for the
// CONNACK, then reads VmRSS from /proc before and after. Prints a Markdown table row per mode.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repo = resolve(new URL('../../..', import.meta.url).pathname);
const WebSocket = createRequire(join(repo, 'tests/node/package.json'))('ws');
const N = Number(process.argv[2] ?? 2000);

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;

function connectPacket(id) {
  const b = Buffer.from(id);
  const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, b.length >> 8, b.length & 255]), b]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

async function measure(deflate) {
  const dir = mkdtempSync(join(tmpdir(), 'diglot-mem-'));
  writeFileSync(join(dir, 'b.toml'), `[listeners.ws]\naddr = "127.0.0.1:0"\n[listeners.mqtt]\nenabled = false\n[listeners.stomp]\nenabled = false\n[limits]\nmax_connections_per_ip = ${N + 10}\nmax_connections = ${N + 10}\n`);
  const d = spawn(join(repo, 'target/release/diglot'), ['--config', join(dir, 'b.toml')], { cwd: dir, env: { ...process.env, NO_COLOR: '1' } });
  const addr = await new Promise((res) => d.stdout.on('data', (c) => { const m = /addr=(\S+)/.exec(c.toString()); if (m) res(m[1]); }));
  await new Promise((r) => setTimeout(r, 300));
  const before = rss(d.pid);
  const sockets = [];
  for (let i = 0; i < N; i++) {
    const ws = new WebSocket(`ws://${addr}/mqtt`, { perMessageDeflate: deflate });
    await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
    ws.send(connectPacket(`idle-${i}`));
    await new Promise((res) => ws.once('message', res));
    sockets.push(ws);
  }
  await new Promise((r) => setTimeout(r, 500));
  const after = rss(d.pid);
  const negotiated = sockets[0].extensions || 'none';
  for (const s of sockets) s.terminate();
  d.kill('SIGTERM');
  await new Promise((r) => d.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
  return { deflate, negotiated, per: (after - before) / N, before, after };
}

for (const deflate of [false, true]) {
  const r = await measure(deflate);
  console.log(`| ${r.deflate ? 'permessage-deflate' : 'plain'} | ${N} | ${(r.before / 1048576).toFixed(1)} MiB | ${(r.after / 1048576).toFixed(1)} MiB | ${(r.per / 1024).toFixed(1)} KiB | ${r.negotiated} |`);
}
