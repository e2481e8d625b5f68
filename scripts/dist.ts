// `npm run dist`: the installers, packed from a staged copy of the app so that the
// checkout's node_modules is only ever read.
//
// electron-builder rebuilds the native modules of the app it packs for Electron and for
// each target's arch (npmRebuild). Run in the checkout, that app is the checkout: its
// node_modules would be rebuilt in place, and the command line, the tests and
// `npm run web` would then meet better-sqlite3 built for Electron. So the app is staged
// in release/app — package.json (without the development parts), dist/, build/ and the
// production dependencies copied from node_modules — and electron-builder runs there,
// with that folder as its project: @electron/rebuild looks no further up than it.
// scripts/stage-guard.js, electron-builder's beforeBuild, refuses any other folder.
//
//   node dist/scripts/dist.js [electron-builder arguments]    e.g. --dir, --linux deb

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
/** Written into a staged app; scripts/stage-guard.js looks for it. */
export const STAGE_MARK = '.drivetwin-stage';

interface PackageJson {
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [field: string]: unknown;
}

function readPackage(dir: string): PackageJson {
  return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
}

/**
 * The production dependency closure of the app at `root`, as Node resolves it: each
 * package's folder relative to `root` (node_modules/…), nested ones included.
 */
export function productionPackages(root = ROOT): Map<string, string> {
  const found = new Map<string, string>(); // folder → name
  const visit = (name: string, fromDir: string): void => {
    for (let dir = fromDir; ; dir = path.dirname(dir)) {
      const candidate = path.join(dir, 'node_modules', name);
      if (fs.existsSync(path.join(candidate, 'package.json'))) {
        const rel = path.relative(root, candidate);
        if (found.has(rel)) return;
        found.set(rel, name);
        const pkg = readPackage(candidate);
        for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
          visit(dep, candidate);
        }
        return;
      }
      if (path.resolve(dir) === path.resolve(root) || dir === path.dirname(dir)) return; // optional, absent
    }
  };
  for (const name of Object.keys(readPackage(root).dependencies ?? {})) visit(name, root);
  return found;
}

/** The app's package.json as packed: what the app and the installers read, no development parts. */
function stagedPackage(pkg: PackageJson): PackageJson {
  const keep = [
    'name',
    'version',
    'description',
    'license',
    'private',
    'main',
    'engines',
    'dependencies',
    'homepage',
    'author',
  ];
  return Object.fromEntries(keep.filter((k) => k in pkg).map((k) => [k, pkg[k]])) as PackageJson;
}

/** Stages the app at `root` in `stage` (emptied first). */
export function stageApp(stage: string, root = ROOT): void {
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(stage, { recursive: true });
  fs.writeFileSync(
    path.join(stage, 'package.json'),
    JSON.stringify(stagedPackage(readPackage(root)), null, 2) + '\n',
  );
  const outOfApp = new Set(['tests', 'scripts'].map((d) => path.join(root, 'dist', d)));
  fs.cpSync(path.join(root, 'dist'), path.join(stage, 'dist'), {
    recursive: true,
    filter: (src) => !outOfApp.has(src),
  });
  fs.cpSync(path.join(root, 'build'), path.join(stage, 'build'), { recursive: true });
  fs.mkdirSync(path.join(stage, 'scripts'));
  fs.copyFileSync(
    path.join(root, 'scripts', 'stage-guard.js'),
    path.join(stage, 'scripts', 'stage-guard.js'),
  );
  for (const rel of productionPackages(root).keys()) {
    const from = path.join(root, rel);
    // A package's own node_modules holds its nested dependencies: each is copied on its
    // own, when the closure reaches it.
    const nested = path.join(from, 'node_modules');
    fs.cpSync(from, path.join(stage, rel), {
      recursive: true,
      verbatimSymlinks: true,
      filter: (src) => src !== nested,
    });
  }
  fs.writeFileSync(path.join(stage, STAGE_MARK), 'staged by scripts/dist.ts\n');
}

function main(args: string[]): number {
  const stage = path.join(ROOT, 'release', 'app');
  process.stderr.write(`staging the app in ${path.relative(ROOT, stage)}/…\n`);
  stageApp(stage);
  const electron = readPackage(path.join(ROOT, 'node_modules', 'electron')).version;
  // Its CLI run by this Node, so that no shell is needed to find it on any system.
  const builder = require.resolve('electron-builder/cli.js', { paths: [ROOT] });
  const run = spawnSync(
    process.execPath,
    [
      builder,
      '--projectDir',
      stage,
      '--config',
      path.join(ROOT, 'electron-builder.yml'),
      `-c.electronVersion=${electron}`,
      `-c.directories.output=${path.join(ROOT, 'release')}`,
      ...args,
    ],
    { cwd: stage, stdio: 'inherit' },
  );
  if (run.error) throw run.error;
  return run.status ?? 1;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
