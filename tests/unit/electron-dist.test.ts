// `npm run dist` packs a staged copy of the app (scripts/dist.ts), so that electron-builder's
// rebuild of the native modules for Electron lands in that copy and never in the
// checkout's node_modules; electron-builder run anywhere else stops at the guard
// (scripts/stage-guard.js) before it rebuilds anything.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { productionPackages, STAGE_MARK, stageApp } from '../../scripts/dist';
import { tempDir } from '../helpers/files';

const ROOT = path.join(__dirname, '..', '..', '..');
const SQLITE_BUILD = path.join(
  ROOT,
  'node_modules',
  'better-sqlite3',
  'build',
  'Release',
  'better_sqlite3.node',
);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const guard = require(path.join(ROOT, 'scripts', 'stage-guard.js')) as (context: {
  appDir: string;
}) => Promise<boolean>;

const sha256 = (file: string): string =>
  createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Files under `dir`, relative to it. */
function listing(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe('the staged app', () => {
  const tmp = tempDir('drivetwin-stage-');
  const stage = path.join(tmp.dir, 'app');
  const before = sha256(SQLITE_BUILD);
  stageApp(stage);

  test('package.json: what the app and the installers read, no development parts', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    const staged = JSON.parse(fs.readFileSync(path.join(stage, 'package.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    for (const key of ['name', 'version', 'main', 'dependencies', 'homepage', 'author']) {
      assert.deepEqual(staged[key], pkg[key], key);
    }
    for (const key of ['devDependencies', 'scripts', 'allowScripts']) {
      assert.equal(staged[key], undefined, `${key} stays out`);
    }
  });

  test('dist/ as built, without tests and scripts; build/ for the icons and entitlements', () => {
    assert.ok(fs.existsSync(path.join(stage, 'dist', 'main', 'index.js')));
    assert.ok(fs.existsSync(path.join(stage, 'dist', 'engine', 'host', 'host.js')));
    assert.ok(fs.existsSync(path.join(stage, 'dist', 'renderer', 'index.html')));
    assert.equal(fs.existsSync(path.join(stage, 'dist', 'tests')), false);
    assert.equal(fs.existsSync(path.join(stage, 'dist', 'scripts')), false);
    assert.deepEqual(listing(path.join(stage, 'build')), listing(path.join(ROOT, 'build')));
  });

  test('node_modules: exactly the production closure, each package whole', () => {
    const closure = [...productionPackages(ROOT).keys()].sort();
    assert.deepEqual([...productionPackages(stage).keys()].sort(), closure);
    const top = fs
      .readdirSync(path.join(stage, 'node_modules'))
      .flatMap((name) =>
        name.startsWith('@')
          ? fs.readdirSync(path.join(stage, 'node_modules', name)).map((n) => `${name}/${n}`)
          : [name],
      )
      .map((name) => path.join('node_modules', name))
      .sort();
    assert.deepEqual(
      top,
      closure.filter((rel) => rel.split(path.sep).filter((p) => p === 'node_modules').length === 1),
      'nothing else: no electron, no typescript, no .bin',
    );
    for (const rel of ['node_modules/better-sqlite3', 'node_modules/drivelist']) {
      assert.deepEqual(listing(path.join(stage, rel)), listing(path.join(ROOT, rel)), rel);
    }
  });

  test("the checkout's node_modules was only read", () => {
    assert.equal(sha256(SQLITE_BUILD), before);
    assert.ok(fs.existsSync(path.join(stage, STAGE_MARK)));
    tmp.cleanup();
  });
});

describe("electron-builder's beforeBuild guard", () => {
  test('refuses the checkout, accepts a staged app', async () => {
    await assert.rejects(guard({ appDir: ROOT }), /is not a staged app: .*npm run dist/);
    const tmp = tempDir('drivetwin-stage-guard-');
    try {
      fs.writeFileSync(path.join(tmp.dir, STAGE_MARK), '');
      assert.equal(await guard({ appDir: tmp.dir }), true);
    } finally {
      tmp.cleanup();
    }
  });

  test('electron-builder run on an unstaged app stops there, before rebuilding anything', () => {
    // A copy of the checkout's project files, without node_modules: were the guard not
    // there, electron-builder would go on to install and rebuild dependencies here.
    const tmp = tempDir('drivetwin-unstaged-');
    try {
      for (const f of ['package.json', 'electron-builder.yml', 'scripts/stage-guard.js']) {
        fs.mkdirSync(path.dirname(path.join(tmp.dir, f)), { recursive: true });
        fs.copyFileSync(path.join(ROOT, f), path.join(tmp.dir, f));
      }
      const run = spawnSync(
        path.join(ROOT, 'node_modules', '.bin', 'electron-builder'),
        ['--dir', '--linux', '--x64', '--projectDir', tmp.dir, '-c.electronVersion=45.4.1'],
        { cwd: tmp.dir, encoding: 'utf8', timeout: 120_000 },
      );
      const output = run.stdout + run.stderr;
      assert.notEqual(run.status, 0, output);
      assert.match(output, /is not a staged app/);
      assert.equal(fs.existsSync(path.join(tmp.dir, 'node_modules')), false, 'nothing installed');
    } finally {
      tmp.cleanup();
    }
  });
});
