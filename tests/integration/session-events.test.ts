// The events are the truth, over real runs through the engine host: in every progress
// event the region counts add up, a paused job has no ETA, the rate follows a throttle
// change within about a second, and `done` says verified only when every destination
// compared equal.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { listDrives } from '../../engine/drives/list';
import { type Harness, sleep, startBackend } from '../helpers/backend';
import { spawnCli } from '../helpers/cli';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { faultyDrive } from '../helpers/nbd';
import type { JobDone, JobProgress } from '../../preload/events';

const MIB = 1024 * 1024;

function setUp(t: TestContext, prefix: string) {
  const tmp = tempDir(`drivetwin-events-${prefix}-`);
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  const harness = startBackend(t, { dbPath: file('jobs.db'), progressMs: 100, listDrives });
  return { file, dir: tmp.dir, ...harness };
}

/** The invariants every progress event and every done event must keep. */
function checkEvents(h: Harness): { progress: number; done: JobDone[] } {
  const progress = h.of('progress').map((r) => r.payload as JobProgress);
  for (const p of progress) {
    const counts = [p.regionsHydrated, p.regionsWritten, p.hydrating];
    const where = JSON.stringify(p);
    assert.ok(
      counts.every((n) => Number.isInteger(n) && n >= 0),
      where,
    );
    assert.ok(
      counts.reduce((a, b) => a + b) <= p.regionsTotal,
      `counts exceed the total: ${where}`,
    );
    assert.ok(p.bytesDone <= p.bytesTotal, where);
    if (p.paused) assert.equal(p.eta, null, `an ETA while paused: ${where}`);
    if (p.eta !== null) assert.ok(p.eta > 0 || p.bytesDone === p.bytesTotal, where);
  }
  const done = h.of('done').map((r) => r.payload as JobDone);
  for (const d of done) {
    const dests = d.destinations ?? [];
    if (d.verified === true) {
      assert.equal(d.state, 'done', JSON.stringify(d));
      assert.ok(dests.length > 0 && dests.every((x) => x.verified === true), JSON.stringify(d));
    }
    if (dests.some((x) => x.state === 'failed')) {
      assert.notEqual(d.verified, true, JSON.stringify(d));
      assert.notEqual(d.state, 'done', JSON.stringify(d));
    }
  }
  return { progress: progress.length, done };
}

test('pause, throttle changes, a killed engine and resume: every event adds up, verified means equal', async (t) => {
  const h = setUp(t, 'props');
  writeRandomFile(h.file('src.img'), 96 * MIB, 21);
  const targets = [{ path: h.file('a.img') }, { path: h.file('b.img') }];
  const { job } = await h.call('startClone', {
    source: h.file('src.img'),
    targets,
    options: { maxRate: 32 * MIB, verify: true },
  });
  await h.waitFor('progress', (p) => p.job === job && p.regionsHydrated > 2);
  await h.call('pause', job);
  await sleep(600);
  await h.call('setThrottle', job, { maxRate: 48 * MIB });
  await h.call('resume', job);
  await sleep(400);
  await h.call('setThrottle', job, { percent: 50 });
  await h.waitFor('progress', (p) => p.job === job && p.regionsHydrated > 30);
  process.kill(h.engine.jobPid(job)!, 'SIGKILL');
  await h.waitFor('done', (d) => d.job === job && d.state === 'interrupted');
  await h.call('resumeJob', job, { options: { maxRate: 0 } });
  const done = await h.waitFor('done', (d) => d.job === job && d.state === 'done');
  assert.equal(done.verified, true);
  for (const target of targets) assert.equal(sha256(target.path), sha256(h.file('src.img')));
  const seen = checkEvents(h);
  t.diagnostic(`${seen.progress} progress events checked`);
  assert.ok(seen.progress > 20);
});

test('ignore-errors on a faulty drive, and a destination that fails: the counts add up, nothing is called verified', async (t) => {
  if (!requireRoot(t)) return;
  const h = setUp(t, 'faults');
  writeRandomFile(h.file('image.img'), 48 * MIB, 22);
  const drive = await faultyDrive(h.file('image.img'), [
    { offset: 5 * MIB + 512, length: 4096 },
    { offset: 30 * MIB, length: 65536 },
  ]);
  t.after(() => drive.stop());
  const { dir: small, cleanup } = tempDir('drivetwin-tmpfs-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16M', 'tmpfs', small]);
  t.after(() => {
    execFileSync('umount', ['-l', small]);
    cleanup();
  });
  const { job } = await h.call('startClone', {
    source: drive.loop!.path,
    targets: [{ path: h.file('ok.img') }, { path: path.join(small, 'full.img') }],
    options: { ignoreErrors: true, verify: true },
  });
  const done = await h.waitFor('done', (d) => d.job === job);
  assert.equal(done.state, 'failed');
  assert.ok(done.unreadableBytes >= 4096 + 65536, JSON.stringify(done));
  const failed = done.destinations!.find((d) => d.state === 'failed');
  assert.match(failed?.error ?? '', /ENOSPC/);
  checkEvents(h);
});

test('the rate follows a throttle change within about a second; no ETA while paused, and none until the new pace is known', async (t) => {
  const h = setUp(t, 'rate');
  writeRandomFile(h.file('src.img'), 512 * MIB, 23);
  const { job } = await h.call('startClone', {
    source: h.file('src.img'),
    targets: [{ path: h.file('dst.img') }],
    options: { maxRate: 160 * MIB },
  });
  await h.waitFor('progress', (p) => p.job === job && p.rate > 0);
  await sleep(1000);
  const changedAt = performance.now();
  await h.call('setThrottle', job, { maxRate: 20 * MIB });
  await sleep(2200);
  const after = h.of('progress', job).filter((r) => r.at > changedAt);
  const late = after.filter((r) => r.at >= changedAt + 1200);
  const rates = late.map((r) => r.payload.rate / MIB);
  t.diagnostic(
    `rate after the change (MiB/s, every 100 ms): ${after.map((r) => (r.payload.rate / MIB).toFixed(1)).join(' ')}`,
  );
  assert.ok(rates.length > 5);
  for (const rate of rates)
    assert.ok(rate > 14 && rate < 26, `rate ${rate.toFixed(1)} MiB/s at a 20 MiB/s cap`);
  const early = after.filter((r) => r.at < changedAt + 900);
  assert.ok(
    early.some((r) => r.payload.eta === null),
    'no ETA until the new pace is measured',
  );

  await h.call('pause', job);
  const pausedAt = performance.now();
  await sleep(800);
  const paused = h.of('progress', job).filter((r) => r.at > pausedAt + 150);
  assert.ok(paused.length > 3);
  for (const r of paused) {
    assert.equal(r.payload.paused, true);
    assert.equal(r.payload.eta, null);
    assert.equal(r.payload.rate, 0);
  }
  await h.call('cancel', job);
  await h.waitFor('done', (d) => d.job === job);
  checkEvents(h);
});

test('progress at least every 500 ms from an .xz source while both cores are busy elsewhere', async (t) => {
  const tmp = tempDir('drivetwin-events-busy-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  // A 4 KiB pattern over and over: xz makes it quickly, and it decodes at full speed.
  const pattern = Buffer.alloc(4096);
  for (let i = 0; i < pattern.length; i += 4) pattern.writeUInt32LE((i * 2654435761) >>> 0, i);
  fs.writeFileSync(file('src.img'), Buffer.concat(Array.from({ length: 64 * 256 }, () => pattern)));
  for (let i = 0; i < 4; i++)
    fs.appendFileSync(file('src.img'), fs.readFileSync(file('src.img')).subarray(0, 64 * MIB));
  execFileSync('sh', ['-c', `xz -T2 -0 -c ${file('src.img')} > ${file('src.img.xz')}`]);
  await expectSteadyProgress(t, file('src.img.xz'), file('src.img'));
});

test('progress at least every 500 ms from a .bz2 source decoded on threads while both cores are busy elsewhere', async (t) => {
  const tmp = tempDir('drivetwin-events-bz2-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  // Random data (blocks to find and decode), then blocks of zeros that decode at full speed.
  writeRandomFile(file('src.img'), 16 * MIB, 26);
  fs.appendFileSync(file('src.img'), Buffer.alloc(192 * MIB));
  execFileSync('sh', ['-c', `bzip2 -c ${file('src.img')} > ${file('src.img.bz2')}`]);
  await expectSteadyProgress(t, file('src.img.bz2'), file('src.img'));
});

/**
 * Clones `source` while two busy loops take both cores: events come at least every 500 ms
 * (plus scheduling of this process and the child), and the copy equals `image`.
 */
async function expectSteadyProgress(t: TestContext, source: string, image: string): Promise<void> {
  const burners = [0, 1].map(() =>
    spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }),
  );
  t.after(() => burners.forEach((b) => b.kill('SIGKILL')));
  const dest = path.join(path.dirname(source), 'dst.img');
  const run = spawnCli(['clone', source, dest, '--json'], {
    db: path.join(path.dirname(source), 'jobs.db'),
  });
  const r = await run.done;
  assert.equal(r.code, 0, r.stderr);
  const timeline = run.arrivals.filter((a) => a.event.type !== 'error');
  let worst = 0;
  for (let i = 1; i < timeline.length; i++)
    worst = Math.max(worst, timeline[i].at - timeline[i - 1].at);
  t.diagnostic(`${timeline.length} events, the longest gap ${worst} ms`);
  assert.ok(worst <= 650, `${worst} ms without an event`);
  assert.equal(sha256(dest), sha256(image));
}

test('start says the real size of a compressed source, or that it is an estimate', async (t) => {
  const tmp = tempDir('drivetwin-events-size-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('src.img'), 6 * MIB, 25);
  fs.appendFileSync(file('src.img'), Buffer.alloc(4 * MIB));
  execFileSync('sh', ['-c', `xz -T2 -k -c ${file('src.img')} > ${file('src.img.xz')}`]);
  execFileSync('sh', ['-c', `bzip2 -k -c ${file('src.img')} > ${file('src.img.bz2')}`]);
  const startOf = async (source: string) => {
    const run = spawnCli(['clone', source, file(`${path.basename(source)}.out`), '--json'], {
      db: file('jobs.db'),
    });
    const r = await run.done;
    assert.equal(r.code, 0, r.stderr);
    return r.events.find((e) => e.type === 'start')!;
  };
  const xz = await startOf(file('src.img.xz'));
  assert.equal(xz.sizeKnown, true);
  assert.equal(xz.bytesTotal, 10 * MIB, 'the size the xz index states, not the file size');
  const bz2 = await startOf(file('src.img.bz2'));
  assert.equal(bz2.sizeKnown, false);
  assert.ok((bz2.bytesTotal as number) > 0, `an estimate, not nothing: ${bz2.bytesTotal}`);
});
