// The handlers drive a real engine in a child process, on image files: a clone with
// its progress and region map, pause and resume, a live throttle change, cancel and
// resume, and an engine killed mid-copy resumed to a byte-identical end.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { regionsInRuns, sleep, startBackend } from '../helpers/backend';

const MIB = 1024 * 1024;

function setUp(t: TestContext, prefix: string) {
  const tmp = tempDir(`drivetwin-backend-${prefix}-`);
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  const harness = startBackend(t, { dbPath: file('jobs.db'), progressMs: 100 });
  return { file, ...harness };
}

test('a clone started through the handlers reports progress and its region map, and ends byte-identical', async (t) => {
  const h = setUp(t, 'clone');
  writeRandomFile(h.file('src.img'), 40 * MIB + 4096, 1);
  const { job } = await h.call('startClone', {
    source: h.file('src.img'),
    targets: [{ path: h.file('dst.img') }],
    options: { regionSize: MIB, maxRate: 40 * MIB },
  });
  const done = await h.waitFor('done', (d) => d.job === job);
  assert.equal(done.state, 'done');
  assert.equal(sha256(h.file('dst.img')), sha256(h.file('src.img')));

  const started = h.of('job-started', job);
  assert.equal(started.length, 1);
  assert.equal(started[0].payload.regionsTotal, 41);
  const progress = h.of('progress', job);
  assert.ok(progress.length >= 3, `only ${progress.length} progress events`);
  assert.ok(progress.some((p) => p.payload.bytesDone > 0 && p.payload.bytesDone < 40 * MIB));
  assert.deepEqual(progress.at(-1)!.payload.throttle, { percent: 100, maxRate: 40 * MIB });

  // The map: a reset first, then deltas whose hydrated runs add up to every region once.
  const maps = h.of('region-map', job).map((r) => r.payload);
  assert.equal(maps[0].reset, true);
  const hydrated = maps.flatMap((m) => regionsInRuns(m.hydrated)).sort((a, b) => a - b);
  assert.deepEqual(
    hydrated,
    Array.from({ length: 41 }, (_, i) => i),
  );
  assert.ok(
    maps.some((m) => m.hydrating.length > 0),
    'regions in flight were shown as hydrating',
  );
  assert.deepEqual(maps.at(-1)!.hydrating, []);

  const [summary] = await h.call('listJobs');
  assert.equal(summary.job, job);
  assert.equal(summary.state, 'done');
  assert.equal(summary.resumable, false);
  assert.equal(summary.regionsHydrated, 41);

  const full = await h.call('regionMap', job);
  assert.deepEqual(full.hydrated, [0, 41]);
  const verified = await h.call('verify', job);
  assert.equal(verified.verified, true);
  assert.ok(h.of('verify-progress', job).length > 0);
  const exported = await h.call('exportMap', job, 'ddrescue');
  assert.match(exported.text, /0x00000000 {2}0x02801000 {2}\+/);
  assert.equal(exported.fileName, `drivetwin-job-${job}.map`);
});

test('pause stops progress, resume continues, cancel leaves the job resumable, and it resumes to the end', async (t) => {
  const h = setUp(t, 'pause');
  writeRandomFile(h.file('src.img'), 96 * MIB, 2);
  const { job } = await h.call('startClone', {
    source: h.file('src.img'),
    targets: [{ path: h.file('dst.img') }],
    options: { maxRate: 24 * MIB, threshold: 4, batch: 1 },
  });
  await h.waitFor('progress', (p) => p.job === job && p.bytesDone >= 8 * MIB);
  await h.call('pause', job);
  await sleep(500); // what was in flight lands
  const pausedAt = performance.now();
  await sleep(1500);
  const during = h.of('progress', job).filter((p) => p.at >= pausedAt);
  assert.ok(during.length >= 5, `${during.length} progress events while paused`);
  assert.ok(during.every((p) => p.payload.paused));
  const moved = new Set(during.map((p) => p.payload.bytesDone));
  assert.equal(moved.size, 1, `bytes moved while paused: ${[...moved].join(', ')}`);
  assert.equal((await h.call('listJobs'))[0].state, 'paused');

  const before = during.at(-1)!.payload.bytesDone;
  await h.call('resume', job);
  await h.waitFor('progress', (p) => p.job === job && !p.paused && p.bytesDone >= before + 4 * MIB);

  await h.call('cancel', job);
  const stopped = await h.waitFor('done', (d) => d.job === job);
  assert.equal(stopped.state, 'interrupted');
  const [summary] = await h.call('listJobs');
  assert.equal(summary.state, 'interrupted');
  assert.equal(summary.resumable, true);
  assert.ok(summary.regionsHydrated > 0 && summary.regionsHydrated < 96);

  const resumed = await h.call('resumeJob', job, { options: { maxRate: 0 } });
  assert.equal(resumed.job, job);
  const started = await h.waitFor('job-started', (s) => s.job === job && s.resumed);
  assert.equal(started.regionsHydrated, summary.regionsHydrated);
  const done = await h.waitFor('done', (d) => d.job === job && d.state !== 'interrupted');
  assert.equal(done.state, 'done');
  assert.equal(sha256(h.file('dst.img')), sha256(h.file('src.img')));
});

test('a throttle change mid-copy shows in the measured rate', async (t) => {
  const h = setUp(t, 'throttle');
  writeRandomFile(h.file('src.img'), 384 * MIB, 3);
  const { job } = await h.call('startClone', {
    source: h.file('src.img'),
    targets: [{ path: h.file('dst.img') }],
    options: { maxRate: 200 * MIB },
  });
  /** Bytes per second between the progress events of the last `ms`. */
  const measure = async (ms: number): Promise<number> => {
    const from = performance.now();
    await sleep(ms);
    const window = h.of('progress', job).filter((p) => p.at >= from);
    const first = window[0];
    const last = window.at(-1)!;
    return ((last.payload.bytesDone - first.payload.bytesDone) * 1000) / (last.at - first.at);
  };
  await h.waitFor('progress', (p) => p.job === job && p.bytesDone > 0);
  const fast = await measure(1000);
  await h.call('setThrottle', job, { maxRate: 20 * MIB });
  await sleep(400); // batches admitted before the change finish
  const slow = await measure(2000);
  const last = h.of('progress', job).at(-1)!.payload;
  assert.deepEqual(last.throttle, { percent: 100, maxRate: 20 * MIB });
  t.diagnostic(
    `200M cap: ${(fast / MIB).toFixed(1)} MiB/s; 20M cap: ${(slow / MIB).toFixed(1)} MiB/s`,
  );
  assert.ok(slow <= 26 * MIB, `at a 20 MiB/s cap it ran at ${(slow / MIB).toFixed(1)} MiB/s`);
  assert.ok(slow >= 12 * MIB, `at a 20 MiB/s cap it crawled at ${(slow / MIB).toFixed(1)} MiB/s`);
  assert.ok(fast >= 3 * slow, `200M cap ${fast}, 20M cap ${slow}: the change did not show`);
  await h.call('cancel', job);
  await h.waitFor('done', (d) => d.job === job);
});

test('killing the engine process interrupts the job; resuming it gives a byte-identical copy', async (t) => {
  const h = setUp(t, 'kill');
  writeRandomFile(h.file('src.img'), 128 * MIB, 4);
  const { job } = await h.call('startClone', {
    source: h.file('src.img'),
    targets: [{ path: h.file('dst.img') }],
    options: { maxRate: 32 * MIB },
  });
  await h.waitFor('progress', (p) => p.job === job && p.regionsHydrated >= 24);
  const pid = h.engine.jobPid(job);
  assert.ok(pid && pid !== process.pid);
  process.kill(pid, 'SIGKILL');

  const error = await h.waitFor('error', (e) => e.job === job && e.fatal);
  assert.match(error.message, /killed \(SIGKILL\).*resumed/);
  const done = await h.waitFor('done', (d) => d.job === job);
  assert.equal(done.state, 'interrupted');
  const [summary] = await h.call('listJobs');
  assert.equal(summary.state, 'interrupted');
  assert.equal(summary.live, false);
  assert.equal(summary.resumable, true);
  assert.ok(summary.regionsHydrated >= 16, `${summary.regionsHydrated} regions committed`);

  await h.call('resumeJob', job, { options: { maxRate: 0 } });
  assert.notEqual(h.engine.jobPid(job), pid, 'a new engine process runs the job');
  const started = await h.waitFor('job-started', (s) => s.job === job && s.resumed);
  assert.equal(started.regionsHydrated, summary.regionsHydrated);
  const finished = await h.waitFor('done', (d) => d.job === job && d.state === 'done');
  assert.ok(finished.regionsCopied <= 128 - summary.regionsHydrated);
  assert.equal(sha256(h.file('dst.img')), sha256(h.file('src.img')));
  assert.equal((await h.call('listJobs'))[0].state, 'done');
});

test('job handlers answer for jobs that are not running, and forgetJob removes history', async (t) => {
  const h = setUp(t, 'forget');
  writeRandomFile(h.file('src.img'), 4 * MIB, 5);
  const { job } = await h.call('startClone', {
    source: h.file('src.img'),
    targets: [{ path: h.file('dst.img') }],
  });
  await h.waitFor('done', (d) => d.job === job);
  await assert.rejects(h.call('pause', job), { code: 'not-found', message: /not running/ });
  await assert.rejects(h.call('resumeJob', job), { code: 'refused', message: /already done/ });
  await assert.rejects(h.call('verify', 999), { code: 'not-found', message: /no job 999/ });
  await h.call('forgetJob', job);
  assert.deepEqual(await h.call('listJobs'), []);
  await assert.rejects(h.call('forgetJob', job), { code: 'not-found' });
});
