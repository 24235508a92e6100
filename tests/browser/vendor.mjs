// Copies the browser bundles of MQTT.js and @stomp/stompjs from this suite's node_modules
// (the pinned versions of package-lock.json) into examples/chat/vendor/, each behind a licence
// header, with the packages' LICENSE files beside them. The example pages load these local
// copies: no CDN, no build step.
//   (cd tests/browser && npm ci && node vendor.mjs)          # write
//   (cd tests/browser && node vendor.mjs --check)            # exit 1 if they differ
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const VENDOR = resolve(HERE, '..', '..', 'examples', 'chat', 'vendor');

const BUNDLES = [
  {
    pkg: 'mqtt',
    file: 'dist/mqtt.min.js',
    out: 'mqtt.min.js',
    license: 'LICENSE.md',
    licenseOut: 'LICENSE.mqtt.md',
    notice: 'MIT License, Copyright (c) 2015-2016 MQTT.js contributors',
  },
  {
    pkg: '@stomp/stompjs',
    file: 'bundles/stomp.umd.min.js',
    out: 'stomp.umd.min.js',
    license: 'LICENSE',
    licenseOut: 'LICENSE.stompjs.txt',
    notice: 'Apache License 2.0, Copyright (c) Deepak Kumar and the stomp-js contributors',
  },
];

/** The files vendor/ should hold: name -> contents. */
export function expected() {
  const files = new Map();
  for (const b of BUNDLES) {
    const dir = join(HERE, 'node_modules', b.pkg);
    const { version, repository } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const header =
      `/*! ${b.pkg} ${version} (${String(repository?.url ?? repository).replace(/^git\+|^git:/, 'https:')})\n` +
      ` * ${b.notice}; the full licence is ${b.licenseOut} beside this file.\n` +
      ` * Unmodified copy of ${b.pkg}/${b.file} from npm, written by tests/browser/vendor.mjs. */\n`;
    files.set(b.out, header + readFileSync(join(dir, b.file), 'utf8'));
    files.set(b.licenseOut, readFileSync(join(dir, b.license), 'utf8'));
  }
  return files;
}

/** Names of vendored files that are missing or differ from the installed packages. */
export function stale() {
  const bad = [];
  for (const [name, text] of expected()) {
    let have = null;
    try {
      have = readFileSync(join(VENDOR, name), 'utf8');
    } catch {
      /* missing */
    }
    if (have !== text) bad.push(name);
  }
  return bad;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const bad = stale();
    if (bad.length) {
      console.error(`examples/chat/vendor is stale: ${bad.join(', ')}; run (cd tests/browser && node vendor.mjs)`);
      process.exit(1);
    }
  } else {
    for (const [name, text] of expected()) writeFileSync(join(VENDOR, name), text);
    console.log(`wrote ${[...expected().keys()].join(', ')} to ${VENDOR}`);
  }
}
