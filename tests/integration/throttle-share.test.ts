// A throttle percent is that share of the same pair's full speed, on each kind of storage:
// image files, loop devices, and a drive limited to 57 MiB/s (nbdkit's rate filter through
// nbdfuse and a loop device). Each setting runs as `drivetwin clone --throttle P`, its
// reads counted by the kernel (/proc/PID/io), measured after the first second; each run
// sits between two at full speed on the same pair and is a share of their mean; the
// median share of 3 rounds must be within 15 % of P. No half second of a throttled copy
// passes without bytes read. Other tests may be running on the two cores beside these: the
// copies run at a higher priority than they, and each test prints its figures and the load.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
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
/** A run is stopped this long after it started (unless it ended first). */
const RUN_SECONDS = 5;
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
 * second; a copy at full speed that ends within two is measured after its first quarter.
 * "The engine measured": the full speed its last progress event said.
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
    const from = start + (end - start >= 2000 ? 1000 : 250);
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
 * ROUNDS rounds of each share and the lowest setting on `source` → `dest`, in an order
 * that turns each round, each run between two at full speed: its share is of the mean of
 * those two, so the machine's load drifting between runs weighs as little as it can.
 */
async function shares(
  t: TestContext,
  ws: Workspace,
  source: string,
  dest: string,
): Promise<{ full: number }> {
  const settings = [...SHARES, LOWEST];
  const fulls: Run[] = [await cloneAt(ws, source, dest, 100)];
  const throttled: Array<Run & { share: number; full: number }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < settings.length; i++) {
      const run = await cloneAt(ws, source, dest, settings[(i + round) % settings.length]);
      fulls.push(await cloneAt(ws, source, dest, 100));
      const full = (fulls[fulls.length - 2].rate + fulls[fulls.length - 1].rate) / 2;
      throttled.push({ ...run, full, share: run.rate / full });
    }
  }
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const mib = (r: number | null): string => (r === null ? '?' : (r / MIB).toFixed(0));
  const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
  const lines = [`full speed: ${fulls.map((r) => mib(r.rate)).join(', ')} MiB/s`];
  const medians = new Map<number, number>();
  for (const p of settings) {
    const runs = throttled.filter((r) => r.percent === p);
    medians.set(p, median(runs.map((r) => r.share)));
    const each = runs.map(
      (r) => `${mib(r.rate)} of ${mib(r.full)} (${pct(r.share)}; measured ${mib(r.measured)})`,
    );
    const still = Math.max(...runs.map((r) => r.stillMs));
    lines.push(
      `${p} %: median ${pct(medians.get(p)!)} of full speed; MiB/s ${each.join(', ')}; ` +
        `longest still ${still.toFixed(0)} ms`,
    );
  }
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
  for (const r of throttled) {
    assert.ok(
      r.stillMs <= 500,
      `${r.percent} %: ${r.stillMs.toFixed(0)} ms without a read\n${report}`,
    );
  }
  return { full: median(fulls.map((r) => r.rate)) };
}

test('image files: 25, 50 and 75 % give that share of the full speed, no half second still', async (t) => {
  const ws = workspace(t, 'throttle-images');
  writeRandomFile(ws.file('source.img'), 1536 * MIB, 21);
  await shares(t, ws, ws.file('source.img'), ws.file('copy.img'));
});

test('loop devices: 25, 50 and 75 % give that share of the full speed, no half second still', async (t) => {
  if (!requireRoot(t)) return;
  const ws = workspace(t, 'throttle-loops');
  const source = ws.loop('source.img', 1536 * MIB, { seed: 22 });
  const dest = ws.loop('dest.img', 1536 * MIB);
  await shares(t, ws, source.path, dest.path);
});

test('a drive limited to 57 MiB/s: 25, 50 and 75 % give that share of its limit, no half second still', async (t) => {
  if (!requireRoot(t)) return;
  const ws = workspace(t, 'throttle-rate');
  writeRandomFile(ws.file('source.img'), 768 * MIB, 23);
  // Its burst, saved up resting, is a fifth of a second's worth: the limit is its full speed.
  const drive = await rateDrive(ws.file('source.img'), { bitsPerSecond: '480M', burstiness: 0.2 });
  t.after(() => drive.stop());
  const { full } = await shares(t, ws, drive.loop.path, ws.file('copy.img'));
  const limit = 480e6 / 8;
  assert.ok(Math.abs(full - limit) <= 0.15 * limit, `full speed ${full} B/s, the limit ${limit}`);
});
