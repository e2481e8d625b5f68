// The bench's machinery (bench.ts runs it): preconditions, the work directory with its
// loop devices and FUSE mounts, timed runs with their peak RSS, and scenarios of
// alternating rounds whose medians and ratios make the table.

import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync, randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'bin', 'drivetwin.js');
export const MiB = 1024 * 1024;
export const CHUNK = 4 * MiB;

function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(text.trim());
  if (!m) throw new Error(`BENCH_SIZE: cannot read "${text}" (try 512M or 2G)`);
  const exp = ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
  const bytes = Number(m[1]) * 1024 ** exp;
  if (bytes < CHUNK || bytes % CHUNK) throw new Error('BENCH_SIZE must be a multiple of 4M');
  return bytes;
}

export const SIZE = parseSize(process.env.BENCH_SIZE ?? '2G');
export const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3) | 0);
export const VERIFY = process.env.BENCH_VERIFY !== '0';
/** BENCH_ONLY=download: the download case alone. */
const only = process.env.BENCH_ONLY;
/** BENCH_ONLY: one case alone (download, used), else every case. */
export const ONLY = only === 'download' || only === 'used' ? only : null;
export const TIME_BIN = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

// ---- preconditions and cleanup ---------------------------------------------------------
export function refuse(msg: string): never {
  console.error(`bench: ${msg}`);
  process.exit(2);
}
if (process.getuid?.() !== 0) refuse('must run as root (it attaches loop devices)');
if (spawnSync('losetup', ['--version']).status !== 0) refuse('losetup not found (util-linux)');
if (!fs.existsSync('/dev/shm')) refuse('/dev/shm is missing');
const SHM_NEEDED = (ONLY === 'download' ? 2.6 : 4.2) * SIZE;
if (fs.statfsSync('/dev/shm').bavail * fs.statfsSync('/dev/shm').bsize < SHM_NEEDED)
  refuse(`/dev/shm needs about ${Math.ceil(SHM_NEEDED / MiB)} MiB free`);
if (!fs.existsSync(path.join(ROOT, 'dist', 'engine', 'cli', 'cli.js'))) refuse('build first');

export const work = fs.mkdtempSync('/dev/shm/drivetwin-bench-');
export const loops: string[] = [];
/** nbdfuse mount points (each serves one nbdkit): unmounted at the end. */
export const mounts: string[] = [];
export function cleanup(): void {
  for (const dev of loops.splice(0)) spawnSync('losetup', ['-d', dev]);
  for (const dir of mounts.splice(0)) spawnSync('umount', [dir]);
  fs.rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    cleanup();
    console.error(`\nbench: interrupted (${sig}), loop devices detached`);
    process.exit(130);
  });

// ---- helpers --------------------------------------------------------------------------
export function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

/** Writes `size` bytes: random, or (mixed) about half zero in 4–64 MiB runs. */
export function makeSource(file: string, mixed: boolean, size = SIZE): void {
  const fd = fs.openSync(file, 'w');
  const data = Buffer.alloc(CHUNK);
  const zero = Buffer.alloc(CHUNK);
  let zeroRun = false;
  for (let off = 0; off < size;) {
    const run = mixed ? randomInt(1, 17) * CHUNK : size; // 4..64 MiB
    for (const end = Math.min(size, off + run); off < end; off += CHUNK)
      fs.writeSync(fd, zeroRun ? zero : randomFillSync(data), 0, CHUNK, off);
    zeroRun = mixed && !zeroRun;
  }
  fs.closeSync(fd);
}

interface Run {
  seconds: number;
  rssKiB: number;
  stdout: string;
}

/**
 * The environment every contender runs in. NODE_EXTRA_CA_CERTS goes: this machine sets it
 * for its proxy, and Node parses that certificate bundle at every start (about 65 ms here),
 * before any of the engine's code runs; DriveTwin makes no TLS connection and a user's
 * machine doesn't set it. Only Node reads it: the other contenders don't change.
 */
const ENV = { ...process.env };
delete ENV.NODE_EXTRA_CA_CERTS;
export const ENV_NOTE = process.env.NODE_EXTRA_CA_CERTS
  ? 'NODE_EXTRA_CA_CERTS (set on this machine) is unset for every run: Node would parse it at each start'
  : null;

/** Runs a command, timing it wall-clock and measuring its peak RSS. */
export function run(cmd: string, args: string[]): Promise<Run> {
  const timeOut = path.join(work, 'time.out');
  const [bin, argv] = TIME_BIN
    ? [TIME_BIN, ['-f', '%M', '-o', timeOut, cmd, ...args]]
    : [cmd, args];
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: ENV });
    let stdout = '';
    let stderr = '';
    let polledKiB = 0;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const poll = TIME_BIN
      ? undefined
      : setInterval(() => {
          try {
            const m = /VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
            if (m) polledKiB = Math.max(polledKiB, Number(m[1]));
          } catch {
            /* exited */
          }
        }, 20);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      clearInterval(poll);
      if (code !== 0) {
        const errors = stdout.split('\n').filter((l) => l.includes('"type":"error"'));
        const why = [...stderr.trim().split('\n').slice(0, 8), ...errors].join('\n  ');
        return reject(new Error(`${cmd} ${args.join(' ')}\n  exit ${code ?? signal}: ${why}`));
      }
      const rssKiB = TIME_BIN
        ? Number(fs.readFileSync(timeOut, 'utf8').trim().split('\n').pop())
        : polledKiB;
      resolve({ seconds, rssKiB, stdout });
    });
  });
}

export function sameBytes(a: string, b: string): void {
  if (VERIFY && spawnSync('cmp', ['-s', a, b]).status !== 0)
    throw new Error(`${b} differs from ${a}`);
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((p, q) => p - q);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export interface Contender {
  name: string;
  cmd: () => [string, string[]];
  reset: () => void; // untimed: make the destination ready for a round
  check: () => void; // untimed: destination equals source
  seconds: number[];
  peakKiB: number;
}
export type Spec = Pick<Contender, 'name' | 'cmd' | 'reset' | 'check'>;

let dbCount = 0;
export function engine(src: string, dst: string, ...extra: string[]): [string, string[]] {
  const db = fs.mkdtempSync(path.join(work, `db-${++dbCount}-`)) + '/jobs.db'; // fresh each round
  return [process.execPath, [CLI, 'clone', src, dst, '--yes', '--json', '--db', db, ...extra]];
}

export const throttleLines: string[] = [];

/**
 * A clone at `--throttle PERCENT`, stopped (SIGTERM) `seconds` after it started unless it
 * ends first: its bytes per second after its first second, from its progress events as they
 * arrived (the first fraction of a second of a throttled copy measures the full speed, at it).
 */
function rateAfterFirstSecond(
  src: string,
  dst: string,
  percent: number,
  seconds: number,
): Promise<number> {
  const [cmd, args] = engine(src, dst, '--throttle', String(percent));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'], env: ENV });
    const seen: Array<{ at: number; bytes: number }> = [];
    let startedAt = 0;
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        const e = JSON.parse(line) as { type: string; phase?: string; bytesDone?: number };
        const at = performance.now();
        if (e.type === 'start') {
          startedAt = at;
          setTimeout(() => child.kill('SIGTERM'), seconds * 1000);
        }
        if (e.type === 'progress' && e.phase === 'copying' && startedAt > 0) {
          seen.push({ at, bytes: e.bytesDone! });
        }
      }
    });
    child.on('error', reject);
    child.on('close', () => {
      const after = seen.filter((p) => p.at >= startedAt + 1000);
      if (after.length < 2) return reject(new Error(`--throttle ${percent}: too short to measure`));
      const [a, b] = [after[0], after[after.length - 1]];
      resolve(((b.bytes - a.bytes) * 1000) / (b.at - a.at));
    });
  });
}

/**
 * --throttle 25, 50 and 75 against 100 on the same pair, alternating, each measured after
 * its first second; then --max-rate 50M on 500 MiB.
 */
export async function throttleFigures(loopA: string, loopB: string): Promise<void> {
  const percents = [100, 25, 50, 75];
  const rates: Record<number, number[]> = { 100: [], 25: [], 50: [], 75: [] };
  for (let round = 0; round < ROUNDS; round++)
    for (let i = 0; i < percents.length; i++) {
      const pct = percents[(i + round) % percents.length];
      rates[pct].push(await rateAfterFirstSecond(loopA, loopB, pct, 4));
    }
  const full = median(rates[100]);
  for (const pct of [25, 50, 75]) {
    const share = median(rates[pct]) / full;
    const holds = Math.abs(share - pct / 100) <= 0.15 * (pct / 100);
    throttleLines.push(
      `--throttle ${pct}: ${(median(rates[pct]) / MiB).toFixed(0)} MiB/s against ` +
        `${(full / MiB).toFixed(0)} MiB/s at 100: ${share.toFixed(2)} of full speed ` +
        `(target ${(pct / 100).toFixed(2)} ± 15%: ${holds ? 'holds' : 'FAILS'})`,
    );
  }
  const small = path.join(work, 'rate-src.img');
  const out = path.join(work, 'rate-dst.img');
  sh('dd', ['if=/dev/urandom', `of=${small}`, 'bs=4M', 'count=125', 'status=none']);
  const capped: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    fs.rmSync(out, { force: true });
    capped.push((await run(...engine(small, out, '--max-rate', '50M'))).seconds);
  }
  const m = median(capped);
  throttleLines.push(
    `--max-rate 50M on 500 MiB: ${capped.map((x) => x.toFixed(2)).join(' ')} s, median ` +
      `${m.toFixed(2)} s (target 10 s ± 5%: ${Math.abs(m - 10) <= 0.5 ? 'holds' : 'FAILS'})`,
  );
  fs.rmSync(small);
  fs.rmSync(out, { force: true });
}

export const rows: string[][] = [];
export const ratios: Record<string, number> = {};
/** The engine's peak RSS per scenario. */
export const enginePeaks: Record<string, number> = {};

/**
 * Runs the contenders (baseline first, then the engine, then any other peers) in rotating
 * order, round by round; adds their rows to the table. MiB/s is of `bytes` (the source's
 * data). The engine's row carries baseline/engine (the goal's ratio); a further peer's row
 * its own median over the engine's.
 */
export async function scenario(
  title: string,
  specs: [Spec, Spec, ...Spec[]],
  bytes = SIZE,
): Promise<void> {
  const all = specs.map((s): Contender => ({ ...s, seconds: [], peakKiB: 0 }));
  const [dd, eng] = all;
  let done = '';
  for (let round = 0; round < ROUNDS; round++)
    for (let k = 0; k < all.length; k++) {
      const c = all[(k + round) % all.length];
      c.reset();
      const r = await run(...c.cmd());
      c.check();
      c.seconds.push(r.seconds);
      c.peakKiB = Math.max(c.peakKiB, r.rssKiB);
      if (c === eng)
        done = r.stdout.split('\n').find((l) => /"type":"(done|verify)"/.test(l)) ?? '';
      process.stderr.write(`  ${title} ${c.name} round ${round + 1}: ${r.seconds.toFixed(3)} s\n`);
    }
  ratios[title] = median(dd.seconds) / median(eng.seconds);
  enginePeaks[title] = eng.peakKiB;
  for (const c of all) {
    const m = median(c.seconds);
    const ratio = c === eng ? ratios[title] : c === dd ? null : m / median(eng.seconds);
    const rounds = c.seconds.map((s) => s.toFixed(3)).join(' ');
    const rss = (c.peakKiB / 1024).toFixed(1);
    const shown = ratio === null ? '' : ratio.toFixed(2);
    rows.push([title, c.name, rounds, m.toFixed(3), (bytes / MiB / m).toFixed(0), shown, rss]);
  }
  if (done) console.log(`${title}: engine's last ${JSON.parse(done).type} event: ${done}`);
}
