#!/usr/bin/env node
// `npm run web` / `npm start` open at once when the build is current: each part (the
// TypeScript of engine/main/preload, the Electron glue, the renderer) is rebuilt only when
// one of its inputs is newer than what it built last time (a stamp in dist/, written after
// a build that succeeded). A full rebuild took 30–40 s; a current build is a stat walk.
//
//   node scripts/build-if-stale.js web|electron
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);

/** Newest mtime (ms) of the files under these paths (folders walked; node_modules skipped). */
function newest(paths) {
  let latest = 0;
  const visit = (p) => {
    let st;
    try {
      st = fs.statSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(p)) if (name !== 'node_modules') visit(path.join(p, name));
    } else latest = Math.max(latest, st.mtimeMs);
  };
  for (const p of paths) visit(path.join(root, p));
  return latest;
}

const COMMON = ['package.json', 'package-lock.json', 'tsconfig.json', 'preload'];
const PARTS = {
  tsc: {
    inputs: [...COMMON, 'engine', 'main', 'scripts', 'tests', 'renderer/bridge-client.ts'],
    build: () => execFileSync(bin('tsc'), ['-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' }),
  },
  electron: {
    inputs: [...COMMON, 'tsconfig.electron.json', 'main', 'engine/types'],
    build: () =>
      execFileSync(bin('tsc'), ['-p', 'tsconfig.electron.json'], { cwd: root, stdio: 'inherit' }),
  },
  renderer: {
    inputs: [...COMMON, 'renderer'],
    build: () =>
      execFileSync(bin('vite'), ['build', '--config', 'renderer/vite.config.ts'], {
        cwd: root,
        stdio: 'inherit',
      }),
  },
};

const wanted = { web: ['tsc', 'renderer'], electron: ['tsc', 'electron', 'renderer'] }[
  process.argv[2]
];
if (!wanted) {
  process.stderr.write('usage: node scripts/build-if-stale.js web|electron\n');
  process.exit(2);
}
fs.mkdirSync(path.join(root, 'dist'), { recursive: true });
for (const name of wanted) {
  const stamp = path.join(root, 'dist', `.built-${name}`);
  const built = fs.existsSync(stamp) ? fs.statSync(stamp).mtimeMs : 0;
  if (newest(PARTS[name].inputs) < built) continue;
  process.stderr.write(`building ${name} (changed since the last build)…\n`);
  const started = Date.now();
  PARTS[name].build();
  // The stamp's time is when the build started: a file saved during the build is newer.
  fs.writeFileSync(stamp, '');
  fs.utimesSync(stamp, started / 1000, started / 1000);
}
