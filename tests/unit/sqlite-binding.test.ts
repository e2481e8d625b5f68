// The job database's driver, per runtime (engine/store/database.ts): under Node the engine
// loads better-sqlite3's own build from node_modules; under Electron the build
// `npm run rebuild:electron` made in electron-native/, and node_modules' own only where
// there is none (a package, rebuilt by electron-builder). A build for another runtime
// is a plain MetadataError that names the command to run — never a crash.
//
// The build for another runtime is real: a .node that registers itself for
// NODE_MODULE_VERSION 150, the number Electron 45's headers give every module built
// against them (NODE_EMBEDDER_MODULE_VERSION), compiled here against Node's own headers.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  bindingProblem,
  ELECTRON_SQLITE_BUILD,
  MetadataError,
  sqliteBinding,
  sqliteBindingPath,
} from '../../engine/store/database';
import { Metadata } from '../../engine/store/metadata';
import { addonForAbi } from '../helpers/native-build';

const ROOT = path.join(__dirname, '..', '..', '..');
const OWN_BUILD = path.join(
  path.dirname(require.resolve('better-sqlite3/package.json')),
  'build',
  'Release',
  'better_sqlite3.node',
);
const NODE = process.versions;
const ELECTRON = { ...process.versions, electron: '45.4.1' };

// Not tempDir (/dev/shm): a .node must come from where dlopen may map code.
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-binding-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** An app folder holding `binding` where `npm run rebuild:electron` puts it. */
function appWithElectronBuild(name: string, binding: string | null): string {
  const root = path.join(work, name);
  fs.mkdirSync(path.join(root, path.dirname(ELECTRON_SQLITE_BUILD)), { recursive: true });
  if (binding) fs.copyFileSync(binding, path.join(root, ELECTRON_SQLITE_BUILD));
  return root;
}

describe('which better-sqlite3 binding each runtime loads', () => {
  test("under Node: node_modules' own build, even where an Electron build is there", () => {
    const app = appWithElectronBuild('node', OWN_BUILD);
    assert.equal(sqliteBindingPath(NODE, app), OWN_BUILD);
    assert.equal(sqliteBindingPath(), OWN_BUILD, 'the checkout, by default');
  });

  test('under Electron: the build in electron-native/, never the one in node_modules', () => {
    const app = appWithElectronBuild('electron', OWN_BUILD);
    assert.equal(sqliteBindingPath(ELECTRON, app), path.join(app, ELECTRON_SQLITE_BUILD));
    // This checkout: its electron-native/ beside dist/, once `npm run rebuild:electron` ran.
    const checkoutBuild = path.join(ROOT, ELECTRON_SQLITE_BUILD);
    assert.equal(
      sqliteBindingPath(ELECTRON),
      fs.existsSync(checkoutBuild) ? checkoutBuild : OWN_BUILD,
    );
  });

  test("under Electron in a package (no electron-native/): the package's own build, which electron-builder rebuilt", () => {
    const app = appWithElectronBuild('packaged', null);
    assert.equal(sqliteBindingPath(ELECTRON, app), OWN_BUILD);
  });
});

describe('a binding built for another runtime', () => {
  const abi150 = addonForAbi(fs.mkdtempSync(path.join(work, 'abi150-')), 150);

  test('is refused by Node itself: the build is really for NODE_MODULE_VERSION 150', () => {
    assert.throws(
      () => process.dlopen({ exports: {} }, abi150),
      /NODE_MODULE_VERSION 150\..*\n?.*requires\s+NODE_MODULE_VERSION 115/,
    );
  });

  test('gives a plain MetadataError naming the command, under Electron: npm run rebuild:electron', () => {
    let error: unknown;
    try {
      sqliteBinding(abi150, ELECTRON);
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof MetadataError, String(error));
    assert.equal(
      error.message,
      `the job database's driver (better-sqlite3, ${abi150}) was built for another runtime ` +
        `(NODE_MODULE_VERSION 150; Electron 45.4.1 needs ${NODE.modules}): run npm run rebuild:electron`,
    );
    assert.doesNotMatch(error.message, /\n/, 'one line');
  });

  test('and under Node: npm rebuild better-sqlite3', () => {
    assert.throws(
      () => sqliteBinding(abi150, NODE),
      (e: Error) =>
        e instanceof MetadataError &&
        e.message.endsWith(
          `(NODE_MODULE_VERSION 150; Node ${NODE.node} needs ${NODE.modules}): run npm rebuild better-sqlite3`,
        ),
    );
  });

  test('a missing build is said as such', () => {
    const missing = path.join(work, 'nowhere', 'better_sqlite3.node');
    assert.equal(
      bindingProblem(missing, new Error('Cannot find module'), ELECTRON),
      `the job database's driver is not built (${missing} is missing): run npm run rebuild:electron`,
    );
  });

  test("opening the job database with this runtime's binding works, and is loaded once", () => {
    assert.equal(sqliteBinding(), OWN_BUILD);
    const meta = Metadata.open(path.join(work, 'jobs.db'));
    try {
      assert.deepEqual(meta.listJobs(), []);
    } finally {
      meta.close();
    }
    assert.equal(sqliteBinding(), OWN_BUILD);
  });
});
