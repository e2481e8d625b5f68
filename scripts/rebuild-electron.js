#!/usr/bin/env node
// `npm run rebuild:electron`: better-sqlite3 built for this checkout's Electron, into
// electron-native/better_sqlite3.node, beside node_modules and never in it — the command
// line, `npm run web` and the tests keep Node's build there. The engine chooses between
// the two by the runtime it runs on (engine/store/database.ts, sqliteBindingPath).
//
// The build is @electron/rebuild's (the one electron-builder uses), run on a copy of
// better-sqlite3's sources in a temporary folder outside the checkout, so nothing it
// walks or rebuilds can be the checkout's. It needs Electron's headers: downloaded from
// https://www.electronjs.org/headers into ~/.electron-gyp once (ELECTRON_REBUILD_DIST_URL
// names a mirror, as for @electron/rebuild's own command).
//
//   node scripts/rebuild-electron.js              build it
//   node scripts/rebuild-electron.js --if-stale   only when missing or made for another
//                                                 Electron, better-sqlite3 or arch (npm start)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createRequire } = require('node:module');
const { pathToFileURL } = require('node:url');

const root = path.join(__dirname, '..');
const fromRoot = createRequire(path.join(root, 'package.json'));
// Keep in step with ELECTRON_SQLITE_BUILD in engine/store/database.ts.
const outDir = path.join(root, 'electron-native');
const target = path.join(outDir, 'better_sqlite3.node');
const stampFile = path.join(outDir, 'built-for.json');

function wanted() {
  const sqlite = path.dirname(fromRoot.resolve('better-sqlite3/package.json'));
  return {
    sqliteDir: sqlite,
    stamp: {
      electron: fromRoot('electron/package.json').version,
      'better-sqlite3': JSON.parse(fs.readFileSync(path.join(sqlite, 'package.json'), 'utf8'))
        .version,
      platform: process.platform,
      arch: process.arch,
    },
  };
}

function current(stamp) {
  try {
    const built = JSON.parse(fs.readFileSync(stampFile, 'utf8'));
    return fs.existsSync(target) && JSON.stringify(built) === JSON.stringify(stamp);
  } catch {
    return false;
  }
}

/** electron-builder's own @electron/rebuild (an ES module). */
async function electronRebuild() {
  const fromBuilder = createRequire(fromRoot.resolve('app-builder-lib/package.json'));
  const main = fromBuilder.resolve('@electron/rebuild');
  return (await import(pathToFileURL(main).href)).rebuild;
}

async function main() {
  const { sqliteDir, stamp } = wanted();
  if (process.argv.includes('--if-stale') && current(stamp)) return;
  const what = `better-sqlite3 ${stamp['better-sqlite3']} for Electron ${stamp.electron} (${stamp.platform}-${stamp.arch})`;
  process.stderr.write(`building ${what}…\n`);
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-electron-native-'));
  try {
    const copy = path.join(stage, 'node_modules', 'better-sqlite3');
    // The sources only: Node's build/ stays where it is.
    fs.cpSync(sqliteDir, copy, {
      recursive: true,
      filter: (src) => path.relative(sqliteDir, src).split(path.sep)[0] !== 'build',
    });
    fs.writeFileSync(
      path.join(stage, 'package.json'),
      JSON.stringify({
        name: 'drivetwin-electron-native',
        private: true,
        dependencies: { 'better-sqlite3': stamp['better-sqlite3'] },
      }),
    );
    const rebuild = await electronRebuild();
    await rebuild({
      buildPath: stage,
      projectRootPath: stage,
      electronVersion: stamp.electron,
      arch: stamp.arch,
      onlyModules: ['better-sqlite3'],
      force: true,
      buildFromSource: true,
      mode: 'sequential',
      headerURL: process.env.ELECTRON_REBUILD_DIST_URL || undefined,
    });
    fs.mkdirSync(outDir, { recursive: true });
    fs.copyFileSync(path.join(copy, 'build', 'Release', 'better_sqlite3.node'), target);
    fs.writeFileSync(stampFile, JSON.stringify(stamp, null, 2) + '\n');
    process.stderr.write(`${path.relative(root, target)}: ${what} (node_modules untouched)\n`);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(
    `can't build better-sqlite3 for Electron: ${e && e.message ? e.message : e}\n` +
      "(it needs Electron's headers: https://www.electronjs.org/headers, or " +
      'ELECTRON_REBUILD_DIST_URL for a mirror; and a C++ toolchain)\n',
  );
  process.exit(1);
});
