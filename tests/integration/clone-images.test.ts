// Image file → image file clones through the real CLI: byte-identical results,
// several destinations, sparse output, --json events, and the job commands.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { runCli, spawnCli, type CliEvent, expectExit, only } from '../helpers/cli';
import {
  allocatedBytes,
  readRange,
  sha256,
  tempDir,
  writeMixedFile,
  writeRandomFile,
} from '../helpers/files';

const KIB = 1024;
const MIB = 1024 * 1024;

function setUp(
  t: TestContext,
  prefix: string,
): { dir: string; db: string; file(name: string): string } {
  const tmp = tempDir(`drivetwin-${prefix}-`);
  t.after(() => tmp.cleanup());
  return {
    dir: tmp.dir,
    db: path.join(tmp.dir, 'jobs.db'),
    file: (name) => path.join(tmp.dir, name),
  };
}

async function jobsJson(db: string): Promise<CliEvent[]> {
  const r = await runCli(['jobs', '--json'], { db });
  expectExit(r, 0);
  return r.events;
}

async function mapJson(db: string, job: number): Promise<CliEvent> {
  const r = await runCli(['map', String(job), '--format', 'json'], { db });
  expectExit(r, 0);
  return only(r, 'map');
}

function isZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

test('image → image is byte-identical when the size is not a multiple of the region', async (t) => {
  const env = setUp(t, 'img-odd');
  const size = 37 * MIB + 1234;
  const src = env.file('src.img');
  writeRandomFile(src, size, 1);
  const want = sha256(src);
  for (const region of ['1M', '64K']) {
    await t.test(`--region-size ${region}`, async () => {
      const dst = env.file(`dst-${region}.img`);
      const r = await runCli(['clone', src, dst, '--region-size', region, '--json'], {
        db: env.db,
      });
      expectExit(r, 0);
      const regionSize = region === '1M' ? MIB : 64 * KIB;
      const start = only(r, 'start');
      assert.equal(start.regionSize, regionSize);
      assert.equal(start.regionsTotal, Math.ceil(size / regionSize));
      const done = only(r, 'done');
      assert.equal(done.state, 'done');
      assert.equal(done.regionsCopied, Math.ceil(size / regionSize));
      assert.equal(fs.statSync(dst).size, size);
      assert.equal(sha256(dst), want);
      assert.equal(sha256(src), want, 'the source is unchanged');
    });
  }
});

test('one source onto three image files at once: all identical', async (t) => {
  const env = setUp(t, 'img-multi');
  const size = 21 * MIB + 777;
  const src = env.file('src.img');
  writeRandomFile(src, size, 2);
  const want = sha256(src);
  const dsts = [1, 2, 3].map((i) => env.file(`dst${i}.img`));
  // One of them already exists and is larger, full of other data.
  writeRandomFile(dsts[1], size + 5 * MIB, 99);
  const r = await runCli(['clone', src, ...dsts, '--region-size', '256K', '--json'], {
    db: env.db,
  });
  expectExit(r, 0);
  const start = only(r, 'start');
  assert.deepEqual(
    start.destinations,
    dsts.map((d) => fs.realpathSync(d)),
  );
  const done = only(r, 'done');
  assert.deepEqual(done.failedDestinations, []);
  assert.equal(
    done.bytesRead,
    size,
    'the source is read once, whatever the number of destinations',
  );
  for (const d of dsts) {
    assert.equal(fs.statSync(d).size, size, d);
    assert.equal(sha256(d), want, d);
  }
});

test('sparse output: zero regions of a new image become holes', async (t) => {
  const env = setUp(t, 'img-sparse');
  const size = 48 * MIB + 4321; // every third MiB of the source is written zeros
  const src = env.file('src.img');
  writeMixedFile(src, size, 3);
  assert.equal(
    allocatedBytes(src),
    Math.ceil(size / 4096) * 4096,
    'the source holds its zeros as data',
  );
  const dst = env.file('dst.img');
  const r = await runCli(['clone', src, dst, '--json'], { db: env.db });
  expectExit(r, 0);
  assert.equal(sha256(dst), sha256(src));
  const allocated = allocatedBytes(dst);
  const zeroMiB = 16; // MiB indexes 2, 5, ..., 47
  assert.ok(
    allocated <= size - zeroMiB * MIB + 64 * KIB,
    `allocated ${allocated} of ${size}: the ${zeroMiB} zero MiB should be holes`,
  );
  const done = only(r, 'done');
  assert.ok(
    (done.bytesWritten as number) <= size - zeroMiB * MIB,
    `bytesWritten ${String(done.bytesWritten)} counts the zeros that were not written`,
  );
  assert.equal(done.bytesRead, size);
});

test('sparse onto an existing image full of data still reads back identical', async (t) => {
  const env = setUp(t, 'img-sparse-over');
  const size = 24 * MIB + 100;
  const src = env.file('src.img');
  writeMixedFile(src, size, 4);
  const want = sha256(src);
  for (const [name, dstSize] of [
    ['same size', size],
    ['larger', size + 7 * MIB + 3],
  ] as const) {
    await t.test(name, async () => {
      const dst = env.file(`dst-${dstSize}.img`);
      writeRandomFile(dst, dstSize, 40);
      const r = await runCli(['clone', src, dst, '--sparse', '--json'], { db: env.db });
      expectExit(r, 0);
      assert.equal(fs.statSync(dst).size, size, 'an image clone has the size of its source');
      assert.equal(sha256(dst), want);
      for (let mib = 2; mib * MIB < size; mib += 3) {
        assert.ok(isZero(readRange(dst, mib * MIB, MIB)), `MiB ${mib} reads as zeros`);
      }
    });
  }

  await t.test('--no-sparse gives a fully allocated file', async () => {
    const dst = env.file('dst-nosparse.img');
    writeRandomFile(dst, size + MIB, 41);
    const r = await runCli(['clone', src, dst, '--no-sparse', '--json'], { db: env.db });
    expectExit(r, 0);
    assert.equal(sha256(dst), want);
    const allocated = allocatedBytes(dst);
    assert.ok(allocated >= Math.floor(size / 4096) * 4096, `allocated ${allocated} of ${size}`);
    assert.equal(only(r, 'done').bytesWritten, size);
  });
});

test('--json: start, progress at least every 500 ms, done with its totals', async (t) => {
  const env = setUp(t, 'img-json');
  const size = 48 * MIB;
  const src = env.file('src.img');
  writeRandomFile(src, size, 5);
  const dst = env.file('dst.img');
  const run = spawnCli(
    ['clone', src, dst, '--max-rate', '16M', '--region-size', '256K', '--json'],
    { db: env.db },
  );
  const r = await run.done;
  expectExit(r, 0);
  assert.ok(r.events.every((e) => typeof e.type === 'string'));
  const types = r.events.map((e) => e.type);
  assert.equal(types[0], 'start');
  assert.equal(types[types.length - 1], 'done');
  assert.deepEqual([...new Set(types)].sort(), ['done', 'progress', 'start']);

  const start = r.events[0];
  assert.equal(typeof start.job, 'number');
  const job = start.job as number;
  const progress = r.events.filter((e) => e.type === 'progress');
  assert.ok(progress.length >= 4, `${progress.length} progress events in a ~3 s copy`);
  for (const p of progress) {
    assert.equal(p.job, job);
    for (const key of [
      'bytesDone',
      'bytesTotal',
      'regionsHydrated',
      'regionsTotal',
      'hydrating',
      'rate',
    ]) {
      assert.equal(typeof p[key], 'number', `progress.${key}: ${JSON.stringify(p)}`);
    }
    assert.ok(p.eta === null || typeof p.eta === 'number', `progress.eta: ${JSON.stringify(p)}`);
    assert.equal(p.bytesTotal, size);
    assert.equal(p.regionsTotal, size / (256 * KIB));
  }
  for (let i = 1; i < progress.length; i++) {
    assert.ok(
      (progress[i].bytesDone as number) >= (progress[i - 1].bytesDone as number),
      'bytesDone never goes back',
    );
  }
  // Arrival times: from start to done, no gap without a progress event over 500 ms
  // (plus 150 ms for scheduling of this process and the child).
  const timeline = run.arrivals.filter((a) => a.event.type !== 'error');
  assert.equal(timeline.length, r.events.length);
  for (let i = 1; i < timeline.length; i++) {
    const gap = timeline[i].at - timeline[i - 1].at;
    assert.ok(
      gap <= 650,
      `${gap} ms between ${timeline[i - 1].event.type} and ${timeline[i].event.type}`,
    );
  }
  const midway = progress.filter(
    (p) => (p.bytesDone as number) > 0 && (p.bytesDone as number) < size,
  );
  assert.ok(midway.length >= 3, 'progress is reported while the copy runs');

  const done = r.events[r.events.length - 1];
  assert.equal(done.job, job);
  assert.equal(done.state, 'done');
  assert.equal(done.bytesRead, size);
  assert.equal(done.bytesWritten, size);
  assert.equal(done.regionsCopied, size / (256 * KIB));
  assert.equal(done.unreadableBytes, 0);
  assert.equal(typeof done.seconds, 'number');
  assert.ok(
    (done.seconds as number) >= 2 && (done.seconds as number) < 10,
    `seconds ${String(done.seconds)} at 16 MiB/s on 48 MiB`,
  );
  assert.equal(sha256(dst), sha256(src));
});

test('a delta re-clone of a finished job copies exactly the regions that changed', async (t) => {
  const env = setUp(t, 'img-delta');
  const src = env.file('src.img');
  writeRandomFile(src, 16 * MIB + 4096, 11);
  const dst = env.file('dst.img');
  const args = ['clone', src, dst, '--region-size', '1M', '--json'];
  const first = await runCli(args, { db: env.db });
  expectExit(first, 0);
  const job = only(first, 'start').job as number;

  // Change 3 regions of the source, one of them the short last region.
  const fd = fs.openSync(src, 'r+');
  for (const at of [2 * MIB + 17, 9 * MIB, 16 * MIB + 100])
    fs.writeSync(fd, Buffer.from('changed'), 0, 7, at);
  fs.closeSync(fd);

  const again = await runCli(args, { db: env.db });
  expectExit(again, 0);
  assert.equal(only(again, 'start').job, job, 'the finished job itself is brought up to date');
  assert.equal(only(again, 'start').delta, 3);
  assert.equal(only(again, 'done').regionsCopied, 3);
  assert.equal(only(again, 'done').bytesWritten, 2 * MIB + 4096);
  assert.equal(sha256(dst), sha256(src));

  const unchanged = await runCli(args, { db: env.db });
  expectExit(unchanged, 0);
  assert.equal(only(unchanged, 'done').regionsCopied, 0);
});

test('job commands: clone again, jobs, status, map json and ddrescue, forget', async (t) => {
  const env = setUp(t, 'img-jobs');
  const size = 9 * MIB + 512 * 3;
  const src = env.file('src.img');
  writeRandomFile(src, size, 6);
  const want = sha256(src);
  const dst = env.file('dst.img');
  const args = ['clone', src, dst, '--region-size', '1M', '--json'];

  const first = await runCli(args, { db: env.db });
  expectExit(first, 0);
  const job1 = only(first, 'start').job as number;
  assert.equal(sha256(dst), want);

  // The first job is done and its destination was replaced by something of another
  // size: the same command starts a new job with the same result.
  fs.writeFileSync(dst, 'scribbled over');
  const second = await runCli(args, { db: env.db });
  expectExit(second, 0);
  const job2 = only(second, 'start').job as number;
  assert.notEqual(job2, job1, 'a finished job is not resumed: a new one starts');
  assert.equal(only(second, 'start').resumed, false);
  assert.equal(only(second, 'done').regionsCopied, 10);
  assert.equal(sha256(dst), want);

  const jobs = await jobsJson(env.db);
  assert.deepEqual(
    jobs.map((j) => [j.type, j.job, j.state]),
    [
      ['job', job1, 'done'],
      ['job', job2, 'done'],
    ],
  );
  for (const j of jobs) {
    assert.equal(j.source, fs.realpathSync(src));
    assert.deepEqual(
      (j.destinations as Array<{ path: string }>).map((d) => d.path),
      [fs.realpathSync(dst)],
    );
    assert.equal(j.regionsHydrated, 10);
    assert.equal(j.regionsTotal, 10);
    assert.equal(j.bytesTotal, size);
  }

  const status = await runCli(['status', String(job1), '--json'], { db: env.db });
  expectExit(status, 0);
  const line = only(status, 'status');
  assert.equal(line.job, job1);
  assert.equal(line.state, 'done');
  assert.match(line.status as string, /\b10\/10\b/, 'dm-clone status line: hydrated/total');
  const statusText = await runCli(['status', String(job1)], { db: env.db });
  expectExit(statusText, 0);
  assert.match(statusText.stdout, /10\/10/);
  const statusAll = await runCli(['status', '--json'], { db: env.db });
  expectExit(statusAll, 0);
  assert.deepEqual(
    statusAll.events.map((e) => e.job),
    [job1, job2],
  );

  const map = await mapJson(env.db, job1);
  assert.deepEqual(map, {
    type: 'map',
    job: job1,
    size,
    regionSize: MIB,
    regionsTotal: 10,
    regionsHydrated: 10,
    hydrated: [{ first: 0, count: 10 }],
    unreadable: [],
  });

  const dd = await runCli(['map', String(job1), '--format', 'ddrescue'], { db: env.db });
  expectExit(dd, 0);
  const blocks = dd.stdout
    .split('\n')
    .filter((l) => /^0x[0-9A-Fa-f]+\s+0x[0-9A-Fa-f]+\s+[?*/\-+]\s*$/.test(l))
    .map((l) => l.trim().split(/\s+/))
    .map(([pos, length, state]) => [Number(pos), Number(length), state]);
  assert.deepEqual(blocks, [[0, size, '+']], dd.stdout);
  const hasDdrescuelog = spawnSync('ddrescuelog', ['--version'], { stdio: 'ignore' }).status === 0;
  if (hasDdrescuelog) {
    const mapfile = env.file('job.map');
    fs.writeFileSync(mapfile, dd.stdout);
    const check = spawnSync('ddrescuelog', ['-t', mapfile], { encoding: 'utf8' });
    assert.equal(
      check.status,
      0,
      `ddrescuelog -t rejects the mapfile:\n${check.stdout}${check.stderr}\n${dd.stdout}`,
    );
    assert.equal(
      spawnSync('ddrescuelog', ['-D', mapfile]).status,
      0,
      'ddrescuelog -D: every block finished',
    );
  } else {
    t.diagnostic('ddrescuelog not installed: the mapfile was only parsed here');
  }

  const forget = await runCli(['forget', String(job1)], { db: env.db });
  expectExit(forget, 0);
  assert.deepEqual(
    (await jobsJson(env.db)).map((j) => j.job),
    [job2],
  );
  const gone = await runCli(['map', String(job1), '--format', 'json'], { db: env.db });
  expectExit(gone, 2);
  const again = await runCli(['forget', String(job1)], { db: env.db });
  expectExit(again, 2);
  assert.equal(sha256(dst), want, 'forgetting a job leaves its destination alone');
});
