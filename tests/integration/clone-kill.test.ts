// Killing the engine at any moment and resuming gives a byte-identical copy, and
// re-copies no more than what was in flight plus one commit period (invariant 2);
// a signal stops it cleanly (exit 130, resumable); a changed device is refused on
// resume (invariant 3).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli, spawnCli, type CliEvent, explain, only } from '../helpers/cli';
import { sha256, writeRandomFile } from '../helpers/files';
import { requireRoot, type LoopDevice } from '../helpers/loop';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
/** What was reported this long before a kill must be committed (1 s commit period + slack). */
const COMMITTED_AFTER_MS = 1500;

function devSha(dev: string): string {
  execFileSync('blockdev', ['--flushbufs', dev]);
  return sha256(dev);
}

/** Empties a loop device's backing file (its size stays). */
function zero(dev: LoopDevice): void {
  const size = fs.statSync(dev.file).size;
  fs.truncateSync(dev.file, 0);
  fs.truncateSync(dev.file, size);
  execFileSync('blockdev', ['--flushbufs', dev.path]);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** spawnCli, plus the time each JSON event arrived. */

async function mapOf(db: string, job: number): Promise<CliEvent> {
  const r = await runCli(['map', String(job), '--format', 'json'], { db });
  assert.equal(r.code, 0, explain(r));
  return only(r, 'map');
}

async function jobOf(db: string, job: number): Promise<CliEvent> {
  const r = await runCli(['jobs', '--json'], { db });
  assert.equal(r.code, 0, explain(r));
  const found = r.events.find((e) => e.job === job);
  assert.ok(found, `job ${job} listed: ${r.stdout}`);
  return found;
}

test('10 rounds: kill -9 at a random moment, resume, byte-identical', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'kill');
  const size = 256 * MIB;
  const rate = 128 * MIB;
  const src = env.loop('src', size, { seed: 50 });
  const dst = env.loop('dst', size);
  const want = devSha(src.path);
  const cloneArgs = ['clone', src.path, dst.path, '--max-rate', '128M', '--yes', '--json'];
  const expectedMs = (size / rate) * 1000;
  let killed = 0;

  for (let round = 0; round < 10; round++) {
    await t.test(`round ${round + 1}`, async (st) => {
      zero(dst);
      const run = spawnCli(cloneArgs, { db: env.db });
      const start = await run.waitEvent((e) => e.type === 'start');
      const job = start.job as number;
      // Each round is a fresh clone: cloning again after a finished job would bring it up to date.
      st.after(() => runCli(['forget', String(job)], { db: env.db }));
      assert.equal(start.resumed, false);
      const regionsTotal = start.regionsTotal as number;
      const delay = Math.round(Math.random() * expectedMs * 0.95);
      await sleep(delay);
      const killAt = Date.now();
      run.child.kill('SIGKILL');
      const r = await run.done;
      if (r.code === 0) {
        // It finished before the kill landed: nothing to resume.
        assert.equal(devSha(dst.path), want);
        st.diagnostic(`finished before the kill at ${delay} ms`);
        return;
      }
      assert.equal(r.signal, 'SIGKILL', explain(r));
      killed += 1;

      const map = await mapOf(env.db, job);
      const hydratedAtKill = map.regionsHydrated as number;
      assert.equal(map.regionsTotal, regionsTotal);
      assert.ok(hydratedAtKill < regionsTotal, 'killed before the end');
      // Everything reported well before the kill was committed.
      for (const { at, event } of run.arrivals) {
        if (event.type !== 'progress' || at > killAt - COMMITTED_AFTER_MS) continue;
        assert.ok(
          (event.regionsHydrated as number) <= hydratedAtKill,
          `progress ${killAt - at} ms before the kill said ${String(event.regionsHydrated)} hydrated; the map after the kill says ${hydratedAtKill}`,
        );
      }
      const record = await jobOf(env.db, job);
      assert.equal(record.state, 'interrupted');

      const viaResume = round % 2 === 0;
      const resumed = await runCli(
        viaResume ? ['resume', String(job), '--yes', '--json'] : cloneArgs,
        {
          db: env.db,
        },
      );
      assert.equal(resumed.code, 0, `${viaResume ? 'resume' : 'clone again'}: ${explain(resumed)}`);
      const rs = only(resumed, 'start');
      assert.equal(rs.job, job, 'the same job resumes');
      assert.equal(rs.resumed, true);
      assert.equal(rs.regionsHydrated, hydratedAtKill, 'the resume starts from the committed map');
      const done = only(resumed, 'done');
      assert.equal(done.state, 'done');
      assert.equal(
        hydratedAtKill + (done.regionsCopied as number),
        regionsTotal,
        'the resume copies exactly the regions not committed before the kill',
      );
      assert.equal((await jobOf(env.db, job)).state, 'done');
      st.diagnostic(
        `killed ${delay} ms after start with ${hydratedAtKill}/${regionsTotal} committed; ` +
          `${viaResume ? 'resume' : 'clone again'} copied ${String(done.regionsCopied)}`,
      );
      assert.equal(
        devSha(dst.path),
        want,
        `round ${round + 1}: destination differs from the source`,
      );
    });
  }
  assert.ok(killed >= 8, `only ${killed} of 10 rounds were killed mid-copy`);
  assert.equal(devSha(src.path), want, 'the source is never written');
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal} during a clone: exit 130, resumable, then identical`, async (t) => {
    if (!requireRoot(t)) return;
    const env = workspace(t, `sig-${signal}`);
    const size = 256 * MIB; // ~4 s at 64 MiB/s: the signal lands mid-copy
    const src = env.loop('src', size, { seed: 60 });
    const dst = env.loop('dst', size);
    const want = devSha(src.path);
    const run = spawnCli(['clone', src.path, dst.path, '--max-rate', '64M', '--yes', '--json'], {
      db: env.db,
    });
    const start = await run.waitEvent((e) => e.type === 'start');
    const job = start.job as number;
    await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 0);
    await sleep(200);
    run.child.kill(signal);
    const r = await run.done;
    assert.equal(r.code, 130, explain(r));
    const done = only(r, 'done');
    assert.equal(done.state, 'interrupted');
    const record = await jobOf(env.db, job);
    assert.equal(record.state, 'interrupted');
    const map = await mapOf(env.db, job);
    const hydrated = map.regionsHydrated as number;
    assert.ok(hydrated > 0 && hydrated < (map.regionsTotal as number), `hydrated ${hydrated}`);
    assert.equal(done.regionsCopied, hydrated, 'a graceful stop commits everything it copied');

    const resumed = await runCli(['resume', String(job), '--yes', '--json'], { db: env.db });
    assert.equal(resumed.code, 0, explain(resumed));
    assert.equal(only(resumed, 'start').regionsHydrated, hydrated);
    assert.equal(hydrated + (only(resumed, 'done').regionsCopied as number), map.regionsTotal);
    assert.equal(devSha(dst.path), want);
  });
}

/** Starts a loop → loop clone and kills it -9 once some regions are committed. */
async function killedJob(env: Workspace, src: LoopDevice, dst: LoopDevice): Promise<number> {
  const run = spawnCli(['clone', src.path, dst.path, '--max-rate', '32M', '--yes', '--json'], {
    db: env.db,
  });
  const start = await run.waitEvent((e) => e.type === 'start');
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 0);
  await sleep(300);
  run.child.kill('SIGKILL');
  const r = await run.done;
  assert.equal(r.signal, 'SIGKILL', explain(r));
  const map = await mapOf(env.db, start.job as number);
  assert.ok(
    (map.regionsHydrated as number) > 0 &&
      (map.regionsHydrated as number) < (map.regionsTotal as number),
  );
  return start.job as number;
}

function resize(dev: LoopDevice, size: number): void {
  fs.truncateSync(dev.file, size);
  execFileSync('losetup', ['--set-capacity', dev.path]);
  execFileSync('blockdev', ['--flushbufs', dev.path]);
}

test('resume refuses a resized source or destination, writing nothing', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'kill-resize');
  const size = 128 * MIB; // ~4 s at 32 MiB/s: killed mid-copy
  const src = env.loop('src', size, { seed: 70 });
  const dst = env.loop('dst', size);
  const want = devSha(src.path);
  const job = await killedJob(env, src, dst);
  const cloneArgs = ['clone', src.path, dst.path, '--yes', '--json'];

  await t.test('the source grew', async () => {
    resize(src, size + MIB);
    const before = devSha(dst.path);
    for (const args of [['resume', String(job), '--yes', '--json'], cloneArgs]) {
      const r = await runCli(args, { db: env.db });
      assert.equal(r.code, 2, `${args[0]}: ${explain(r)}`);
      assert.match(r.stderr, /size/i, explain(r));
      assert.equal(devSha(dst.path), before, `${args[0]} wrote to the destination`);
    }
    assert.equal((await jobOf(env.db, job)).state, 'interrupted');
    resize(src, size);
  });

  await t.test('the destination grew', async () => {
    resize(dst, size + MIB);
    const before = devSha(dst.path);
    const r = await runCli(['resume', String(job), '--yes', '--json'], { db: env.db });
    assert.equal(r.code, 2, explain(r));
    assert.match(r.stderr, /size/i, explain(r));
    assert.equal(devSha(dst.path), before);
    resize(dst, size);
  });

  await t.test('the destination path now names another drive of another size', async (tt) => {
    const otherFile = env.file('other');
    writeRandomFile(otherFile, size + 2 * MIB, 71);
    dst.detach();
    let reattached = false;
    const putBack = (): void => {
      if (reattached) return;
      reattached = true;
      execFileSync('losetup', ['--detach', dst.path]);
      execFileSync('losetup', [dst.path, dst.file]);
    };
    try {
      execFileSync('losetup', [dst.path, otherFile]);
    } catch (e) {
      // Someone took the free number in between: put ours back where we can.
      tt.diagnostic(`could not rebind ${dst.path}: ${(e as Error).message}`);
      execFileSync('losetup', [dst.path, dst.file]);
      return;
    }
    try {
      const before = devSha(dst.path);
      const r = await runCli(['resume', String(job), '--yes', '--json'], { db: env.db });
      assert.equal(r.code, 2, explain(r));
      assert.equal(devSha(dst.path), before, 'the other drive was written to');
    } finally {
      putBack();
    }
  });
  t.after(() => {
    // dst was rebound by hand above: the helper no longer detaches it.
    try {
      const backing = fs
        .readFileSync(`/sys/block/${path.basename(dst.path)}/loop/backing_file`, 'utf8')
        .trim();
      if (backing === dst.file || backing.startsWith(`${dst.file} (deleted)`))
        execFileSync('losetup', ['--detach', dst.path]);
    } catch {
      // not bound any more
    }
  });

  const r = await runCli(['resume', String(job), '--yes', '--json'], { db: env.db });
  assert.equal(r.code, 0, `the same devices again: ${explain(r)}`);
  assert.equal(devSha(dst.path), want, 'after the devices came back the job finished identical');
});
