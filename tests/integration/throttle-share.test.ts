// A throttle percent is that share of the same pair's full speed, on each kind of storage:
// an image file written to a disk, a loop device copied to another, both over files on the
// disk with direct I/O (in memory, the 1.5 GiB that fit beside other tests copy in under a
// second, before anything can be measured after the first), and a drive limited to
// 57 MiB/s (nbdkit's rate filter through nbdfuse and a loop device). Each setting runs as
// `drivetwin clone --throttle P`, its reads counted by the kernel (/proc/PID/io), measured
// after the first second, each throttled run between two at full speed; the median share
// of 3 rounds must be within 15 % of P (see `Of` for what it is a share of). No half
// second of a throttled copy passes without bytes read. Other tests may be running beside
// these: the copies run at a higher priority than they, and each test prints its figures
// and the load.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { spawnCli } from '../helpers/cli';
import { writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { rateDrive } from '../helpers/nbd';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const ROUNDS = 3;
const SHARES = [25, 50, 75];
/** Also run, for the half-second check: the lowest setting promised to move evenly. */
const LOWEST = 5;
/** A run is stopped this long after it started (unless it ended first)… */
const RUN_SECONDS = 2.5;
/** …and measured from this long after it started to its end: after its first second. */
const FROM_MS = 1000;
/** A run that ended sooner after its first second than this says too little. */
const MIN_WINDOW_MS = 250;
/** Reads of less than this (the job database, the partition tables) are not the copy moving. */
const MOVED_BYTES = 64 * 1024;

interface Sample {
  at: number;
  read: number;
}

interface Run {
  percent: number;
  /** Bytes per second read after the copy's first second. */
  rate: number;
  /** The longest time no bytes were read, from the copy's first read to its end. */
  stillMs: number;
  /** The full speed the engine measured, as its last progress event said. */
  measured: number | null;
}

/** Bytes the process read so far (every read call, O_DIRECT included), or null once it is gone. */
function bytesRead(pid: number): number | null {
  try {
    const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
    return Number(/^rchar: (\d+)$/m.exec(io)![1]);
  } catch {
    return null;
  }
}

function readAt(samples: Sample[], at: number): number {
  let read = samples[0].read;
  for (const s of samples) if (s.at <= at) read = s.read;
  return read;
}

/**
 * `drivetwin clone SOURCE DEST --throttle PERCENT`, stopped (SIGTERM) after RUN_SECONDS
 * unless it ends first, its reads sampled every 20 ms. The rate is measured after the first
 * second, at full speed too (the copy's first second is the pipeline filling and the
 * processors warming up, and a throttled one measuring the full speed). "The engine
 * measured": the full speed its last progress event said.
 */
async function cloneAt(ws: Workspace, source: string, dest: string, percent: number): Promise<Run> {
  const args = ['clone', source, dest, '--throttle', String(percent), '--fresh', '--yes', '--json'];
  const cli = spawnCli(args, { db: ws.db });
  const pid = cli.child.pid!;
  // Ahead of whatever else the machine runs (other tests, builds): on a pair whose speed is
  // the processors' (memory to memory), their load would decide the figures, not the throttle.
  os.setPriority(pid, -15);
  const samples: Sample[] = [];
  const sampler = setInterval(() => {
    const read = bytesRead(pid);
    if (read !== null) samples.push({ at: performance.now(), read });
  }, 20);
  let stoppedAt = Infinity;
  let stopper: NodeJS.Timeout | undefined;
  try {
    await cli.waitEvent((e) => e.type === 'start');
    const start = performance.now();
    stopper = setTimeout(() => {
      stoppedAt = performance.now();
      cli.child.kill('SIGTERM');
    }, RUN_SECONDS * 1000);
    const result = await cli.done;
    assert.ok(result.code === 0 || result.code === 130, `exit ${result.code}: ${result.stderr}`);
    const copying = samples.filter((s) => s.at >= start && s.at <= stoppedAt);
    const first = copying.findIndex((s) => s.read - copying[0].read >= MOVED_BYTES);
    assert.ok(first >= 0, `nothing was read at ${percent} %`);
    // The end: the last read (a copy that finished), or the stop.
    const last = copying.reduce((end, s) => (s.read > end.read ? s : end), copying[0]);
    const end = stoppedAt === Infinity ? last.at : stoppedAt;
    const from = start + FROM_MS;
    assert.ok(
      end - from >= MIN_WINDOW_MS,
      `${percent} % ended ${(end - start).toFixed(0)} ms after it started: too soon to measure`,
    );
    const rate = ((readAt(copying, end) - readAt(copying, from)) * 1000) / (end - from);
    let stillMs = 0;
    let movedAt = copying[first];
    for (const s of copying.slice(first)) {
      if (s.at > end) break;
      if (s.read - movedAt.read >= MOVED_BYTES) movedAt = s;
      stillMs = Math.max(stillMs, s.at - movedAt.at);
    }
    const progress = result.events.filter((e) => e.type === 'progress');
    const measured = (progress[progress.length - 1]?.fullSpeed as number | null) ?? null;
    return { percent, rate, stillMs, measured };
  } finally {
    clearInterval(sampler);
    clearTimeout(stopper);
    cli.child.kill('SIGKILL');
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * What a throttled run's rate is a share of: `pair`, the mean of the full-speed runs either
 * side of it (a pair whose speed holds still, as a rate-limited drive's); `measured`, the
 * full speed the engine measured in that run — for a pair whose speed is the machine's
 * (a disk shared with other processes), which drifts ±30 % between runs seconds apart, so
 * a share of its neighbours can't be told within 15 %; there the engine's measure itself
 * must be, over all runs, within 25 % of its neighbours.
 */
type Of = 'pair' | 'measured';

/**
 * ROUNDS rounds of each share on `source` → `dest`, in an order that turns each round,
 * each run between two at full speed, then one at the lowest setting (for stillness).
 */
async function shares(
  t: TestContext,
  ws: Workspace,
  pair: { source: string; dest: string; of: Of },
): Promise<{ full: number }> {
  const at = (percent: number): Promise<Run> => cloneAt(ws, pair.source, pair.dest, percent);
  const fulls: Run[] = [await at(100)];
  const throttled: Array<Run & { share: number; full: number }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < SHARES.length; i++) {
      const run = await at(SHARES[(i + round) % SHARES.length]);
      fulls.push(await at(100));
      const full = (fulls[fulls.length - 2].rate + fulls[fulls.length - 1].rate) / 2;
      const of = pair.of === 'pair' ? full : (run.measured ?? NaN);
      throttled.push({ ...run, full, share: run.rate / of });
    }
  }
  const lowest = await at(LOWEST);
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const mib = (r: number | null): string => (r === null ? '?' : (r / MIB).toFixed(0));
  const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
  const lines = [`full speed: ${fulls.map((r) => mib(r.rate)).join(', ')} MiB/s`];
  const medians = new Map<number, number>();
  for (const p of SHARES) {
    const runs = throttled.filter((r) => r.percent === p);
    medians.set(p, median(runs.map((r) => r.share)));
    const each = runs.map(
      (r) => `${mib(r.rate)} (measured ${mib(r.measured)}, around it ${mib(r.full)})`,
    );
    const still = Math.max(...runs.map((r) => r.stillMs));
    lines.push(
      `${p} %: median ${pct(medians.get(p)!)} of the ${pair.of === 'pair' ? 'full speed around it' : 'full speed measured'}; ` +
        `MiB/s ${each.join(', ')}; longest still ${still.toFixed(0)} ms`,
    );
  }
  const measureShare = median(throttled.map((r) => (r.measured ?? NaN) / r.full));
  lines.push(`measured full speed: median ${pct(measureShare)} of the full speed around it`);
  lines.push(
    `${LOWEST} %: ${mib(lowest.rate)} MiB/s; longest still ${lowest.stillMs.toFixed(0)} ms`,
  );
  lines.push(`load average ${load}`);
  for (const line of lines) t.diagnostic(line);
  const report = lines.join('\n');
  for (const p of SHARES) {
    const share = medians.get(p)!;
    assert.ok(
      Math.abs(share - p / 100) <= 0.15 * (p / 100),
      `${p} % is not within 15 %:\n${report}`,
    );
  }
  if (pair.of === 'measured') {
    assert.ok(Math.abs(measureShare - 1) <= 0.25, `the measure is off:\n${report}`);
  }
  for (const r of [...throttled, lowest]) {
    assert.ok(
      r.stillMs <= 500,
      `${r.percent} %: ${r.stillMs.toFixed(0)} ms without a read\n${report}`,
    );
  }
  return { full: median(fulls.map((r) => r.rate)) };
}

/** Disk pairs are this big: at the disk's speed (0.5-2.6 GiB/s here) a copy outlasts RUN_SECONDS. */
const DISK_PAIR = 4 * 1024 * MIB;

/**
 * A source image of random bytes and a destination loop device with direct I/O, both over
 * files on the disk (not in memory), removed when the test ends.
 */
function diskPair(t: TestContext, name: string, seed: number) {
  const ws = workspace(t, name);
  const dir = fs.mkdtempSync(path.join('/var/tmp', `drivetwin-${name}-`));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const source = path.join(dir, 'source.img');
  const dest = path.join(dir, 'dest.img');
  writeRandomFile(source, DISK_PAIR, seed);
  fs.writeFileSync(dest, '');
  fs.truncateSync(dest, DISK_PAIR);
  return { ws, source, dest: ws.attach(dest, { directIo: true }).path };
}

test('an image file to a disk: 25, 50 and 75 % give that share of the full speed, no half second still', async (t) => {
  if (!requireRoot(t)) return;
  const { ws, source, dest } = diskPair(t, 'throttle-image', 21);
  await shares(t, ws, { source, dest, of: 'measured' });
});

test('loop devices on a disk: 25, 50 and 75 % give that share of the full speed, no half second still', async (t) => {
  if (!requireRoot(t)) return;
  const { ws, source, dest } = diskPair(t, 'throttle-loops', 22);
  const loop = ws.attach(source, { directIo: true });
  await shares(t, ws, { source: loop.path, dest, of: 'measured' });
});

test('a drive limited to 57 MiB/s: 25, 50 and 75 % give that share of its limit, no half second still', async (t) => {
  if (!requireRoot(t)) return;
  const ws = workspace(t, 'throttle-rate');
  writeRandomFile(ws.file('source.img'), 768 * MIB, 23);
  // Its burst, saved up resting, is a fifth of a second's worth: the limit is its full speed.
  const drive = await rateDrive(ws.file('source.img'), { bitsPerSecond: '480M', burstiness: 0.2 });
  t.after(() => drive.stop());
  const { full } = await shares(t, ws, {
    source: drive.loop.path,
    dest: ws.file('copy.img'),
    of: 'pair',
  });
  const limit = 480e6 / 8;
  assert.ok(Math.abs(full - limit) <= 0.15 * limit, `full speed ${full} B/s, the limit ${limit}`);
});
