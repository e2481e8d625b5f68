// The engine as the app starts it: through Electron's utilityProcess, played by Node
// children that have process.versions.electron and get no execArgv (as Electron's utility
// process applies none). The engine loads the database driver built for Electron, says
// plainly when that build is for another runtime, sets its own memory flags, and a fatal
// V8 error in it ends its jobs' link cleanly.
//
// Each engine runs from an app folder of its own (dist/engine, node_modules, and
// electron-native/ as `npm run rebuild:electron` leaves it), where Node's own build of
// better-sqlite3 stands in for Electron's — the one these children can load — unless a
// test puts a build for another runtime there.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ELECTRON_SQLITE_BUILD } from '../../engine/store/database';
import { EngineSupervisor } from '../../main/engine-host';
import { startBackend } from '../helpers/backend';
import { fakeUtilityProcess, ROOT } from '../helpers/electron-glue';
import { tempDir, writeRandomFile } from '../helpers/files';
import { addonForAbi } from '../helpers/native-build';

const MIB = 1024 * 1024;
const OWN_BUILD = path.join(
  path.dirname(require.resolve('better-sqlite3/package.json')),
  'build',
  'Release',
  'better_sqlite3.node',
);

/**
 * An app folder as a checkout has it — dist/engine, node_modules — with `binding` where
 * `npm run rebuild:electron` puts the Electron build. In os.tmpdir(): a .node is mapped
 * from there.
 */
function appWith(t: TestContext, binding: (dir: string) => string = () => OWN_BUILD): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-electron-app-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.cpSync(path.join(ROOT, 'dist', 'engine'), path.join(root, 'dist', 'engine'), {
    recursive: true,
  });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
  const native = path.join(root, path.dirname(ELECTRON_SQLITE_BUILD));
  fs.mkdirSync(native);
  fs.copyFileSync(binding(native), path.join(root, ELECTRON_SQLITE_BUILD));
  return root;
}

function engineIn(t: TestContext, root: string, dbPath: string, probes: string[] = []) {
  const utility = fakeUtilityProcess('45.4.1', probes);
  const engine = new EngineSupervisor({
    dbPath,
    hostScript: path.join(root, 'dist', 'engine', 'host', 'host.js'),
    utilityProcess: utility,
  });
  t.after(() => engine.close());
  return { engine, utility };
}

/** The .node files a process has mapped (Linux). */
function mappedAddons(pid: number): string[] {
  const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
  return [...new Set(maps.match(/\S+\.node$/gm) ?? [])];
}

test('under Electron the engine loads the Electron build of better-sqlite3, not node_modules', async (t) => {
  const tmp = tempDir('drivetwin-electron-engine-');
  t.after(() => tmp.cleanup());
  const root = appWith(t);
  const { engine, utility } = engineIn(t, root, path.join(tmp.dir, 'jobs.db'));
  const { jobs } = (await engine.request({ type: 'list-jobs' })) as { jobs: unknown[] };
  assert.deepEqual(jobs, []);
  const pid = utility.children[0].pid!;
  const sqlite = mappedAddons(pid).filter((f) => f.endsWith('better_sqlite3.node'));
  assert.deepEqual(sqlite, [path.join(root, ELECTRON_SQLITE_BUILD)]);
});

test('a build for another runtime: a plain refusal naming npm run rebuild:electron, and the engine lives on', async (t) => {
  const tmp = tempDir('drivetwin-electron-engine-');
  t.after(() => tmp.cleanup());
  const root = appWith(t, (dir) => addonForAbi(dir, 150));
  const { engine, utility } = engineIn(t, root, path.join(tmp.dir, 'jobs.db'));
  for (let i = 0; i < 2; i++) {
    await assert.rejects(engine.request({ type: 'list-jobs' }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'refused');
      assert.match(
        e.message,
        /^the job database's driver \(better-sqlite3, .*electron-native\/better_sqlite3\.node\) was built for another runtime \(NODE_MODULE_VERSION 150; Electron 45\.4\.1 needs \d+\): run npm run rebuild:electron$/,
      );
      return true;
    });
  }
  assert.equal(utility.children.length, 1, 'the same engine answered both');
  assert.equal(await engine.pid(), utility.children[0].pid);
  assert.equal(fs.existsSync(path.join(tmp.dir, 'jobs.db')), false, 'nothing was written');
});

test('the engine sets its own memory flags: gc is defined and the young generation stays small', async (t) => {
  const tmp = tempDir('drivetwin-electron-engine-');
  t.after(() => tmp.cleanup());
  const probe = path.join(tmp.dir, 'probe.js');
  // Answers a probe message from inside the engine, after its start-up ran.
  fs.writeFileSync(
    probe,
    `process.on('message', (m) => {
       if (m !== 'probe') return;
       const v8 = require('node:v8');
       const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
       let biggest = newSpace();
       const kept = [];
       for (let i = 0; i < 400000; i++) {
         kept.push({ i, text: 'region ' + i });
         if (kept.length > 5000) kept.splice(0, 2500);
         if (i % 1000 === 0) biggest = Math.max(biggest, newSpace());
       }
       process.send({ probe: { gc: typeof globalThis.gc, biggest } });
     });\n`,
  );
  const { engine, utility } = engineIn(t, appWith(t), path.join(tmp.dir, 'jobs.db'), [probe]);
  await engine.request({ type: 'list-jobs' });
  assert.equal((utility.options[0] as { execArgv?: string[] }).execArgv, undefined, 'no execArgv');
  const child = utility.children[0].child;
  const answer = new Promise<{ gc: string; biggest: number }>((resolve) =>
    child.on(
      'message',
      (m: { probe?: { gc: string; biggest: number } }) => m.probe && resolve(m.probe),
    ),
  );
  child.send('probe');
  const { gc, biggest } = await answer;
  assert.equal(gc, 'function');
  // What --max-semi-space-size=2 allowed under Node (two 2 MiB semi-spaces); V8's own
  // default lets it grow to 32 MiB for the same churn.
  assert.ok(biggest <= 4 * MIB, `the new space grew to ${(biggest / MIB).toFixed(1)} MiB`);
});

test("a fatal V8 error in the utility process ends its job's link cleanly: interrupted, resumable, a new engine next", async (t) => {
  const tmp = tempDir('drivetwin-electron-engine-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('src.img'), 16 * MIB, 5);
  const utility = fakeUtilityProcess();
  const h = startBackend(t, {
    dbPath: file('jobs.db'),
    progressMs: 100,
    hostScript: path.join(appWith(t), 'dist', 'engine', 'host', 'host.js'),
    utilityProcess: utility,
  });
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => void uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  t.after(() => process.off('uncaughtException', onUncaught));

  const { job } = await h.call('startClone', {
    source: file('src.img'),
    targets: [{ path: file('dst.img') }],
    options: { maxRate: 2 * MIB },
  });
  await h.waitFor('progress', (p) => p.job === job && p.bytesDone > 0);
  const [first] = utility.children;
  first.fatal(
    'v8::internal::Heap::FatalProcessOutOfMemory',
    'Allocation failed - JavaScript heap out of memory',
  );

  const error = await h.waitFor('error', (e) => e.job === job && e.fatal);
  assert.equal(
    error.message,
    'the engine stopped on a fatal error (Allocation failed - JavaScript heap out of memory, ' +
      `at v8::internal::Heap::FatalProcessOutOfMemory). Job ${job} is interrupted; what was ` +
      'committed is kept and it can be resumed.',
  );
  assert.equal((await h.waitFor('done', (d) => d.job === job)).state, 'interrupted');
  assert.equal(h.engine.running(job), false);
  assert.deepEqual(uncaught, [], 'nothing thrown in the main process');

  // The next call starts a new engine, which sees the job resumable.
  const [summary] = await h.call('listJobs');
  assert.equal(utility.children.length, 2);
  assert.equal(summary.job, job);
  assert.equal(summary.resumable, true);
  assert.equal(h.of('done', job).length, 1, 'one done, not one per event');
});

test('the utility process is forked with stdout inherited, not piped, and stderr read', async (t) => {
  const tmp = tempDir('drivetwin-electron-engine-');
  t.after(() => tmp.cleanup());
  const { engine, utility } = engineIn(t, appWith(t), path.join(tmp.dir, 'jobs.db'));
  await engine.request({ type: 'list-jobs' });
  assert.deepEqual(utility.options[0]?.stdio, ['ignore', 'inherit', 'pipe']);
  assert.equal(utility.options[0]?.serviceName, 'DriveTwin engine');
});
