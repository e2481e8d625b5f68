// DriveTwin benchmark: the engine against dd, loop→loop and image→image (sparse),
// backing files in /dev/shm so the disk's noise stays out. Contenders alternate
// round by round; we report medians, their ratio and the engine's peak RSS.
//
//   npm run bench                         # 2 GiB, 3 rounds (needs root and losetup)
//   BENCH_SIZE=512M BENCH_ROUNDS=5 npm run bench
//   BENCH_VERIFY=0 npm run bench          # skip the byte comparison after each round
//
// Also: `drivetwin verify` against `cmp` on the same image pair (BENCH_SIZE each), and an
// .xz source (`xz -T2 -3` of a mixed image of BENCH_SIZE/2) cloned to an image against
// `xz -dc | dd`. Ratios are the baseline's median over the engine's (> 1: engine faster).
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync, randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'drivetwin.js');
const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;

function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(text.trim());
  if (!m) throw new Error(`BENCH_SIZE: cannot read "${text}" (try 512M or 2G)`);
  const exp = ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
  const bytes = Number(m[1]) * 1024 ** exp;
  if (bytes < CHUNK || bytes % CHUNK) throw new Error('BENCH_SIZE must be a multiple of 4M');
  return bytes;
}

const SIZE = parseSize(process.env.BENCH_SIZE ?? '2G');
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3) | 0);
const VERIFY = process.env.BENCH_VERIFY !== '0';
const TIME_BIN = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

// ---- preconditions and cleanup ---------------------------------------------------------
function refuse(msg: string): never {
  console.error(`bench: ${msg}`);
  process.exit(2);
}
if (process.getuid?.() !== 0) refuse('must run as root (it attaches loop devices)');
if (spawnSync('losetup', ['--version']).status !== 0) refuse('losetup not found (util-linux)');
if (!fs.existsSync('/dev/shm')) refuse('/dev/shm is missing');
if (fs.statfsSync('/dev/shm').bavail * fs.statfsSync('/dev/shm').bsize < 4.2 * SIZE)
  refuse(`/dev/shm needs about ${Math.ceil((4.2 * SIZE) / MiB)} MiB free`);
if (!fs.existsSync(path.join(ROOT, 'dist', 'engine', 'cli.js'))) refuse('build first');

const work = fs.mkdtempSync('/dev/shm/drivetwin-bench-');
const loops: string[] = [];
function cleanup(): void {
  for (const dev of loops.splice(0)) spawnSync('losetup', ['-d', dev]);
  fs.rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    cleanup();
    console.error(`\nbench: interrupted (${sig}), loop devices detached`);
    process.exit(130);
  });

// ---- helpers --------------------------------------------------------------------------
function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

/** Writes `size` bytes: random, or (mixed) about half zero in 4–64 MiB runs. */
function makeSource(file: string, mixed: boolean): void {
  const fd = fs.openSync(file, 'w');
  const data = Buffer.alloc(CHUNK);
  const zero = Buffer.alloc(CHUNK);
  let zeroRun = false;
  for (let off = 0; off < SIZE;) {
    const run = mixed ? randomInt(1, 17) * CHUNK : SIZE; // 4..64 MiB
    for (const end = Math.min(SIZE, off + run); off < end; off += CHUNK)
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

/** Runs a command, timing it wall-clock and measuring its peak RSS. */
function run(cmd: string, args: string[]): Promise<Run> {
  const timeOut = path.join(work, 'time.out');
  const [bin, argv] = TIME_BIN
    ? [TIME_BIN, ['-f', '%M', '-o', timeOut, cmd, ...args]]
    : [cmd, args];
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
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

function sameBytes(a: string, b: string): void {
  if (VERIFY && spawnSync('cmp', ['-s', a, b]).status !== 0)
    throw new Error(`${b} differs from ${a}`);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((p, q) => p - q);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

interface Contender {
  name: string;
  cmd: () => [string, string[]];
  reset: () => void; // untimed: make the destination ready for a round
  check: () => void; // untimed: destination equals source
  seconds: number[];
  peakKiB: number;
}
type Spec = Pick<Contender, 'name' | 'cmd' | 'reset' | 'check'>;

let dbCount = 0;
function engine(src: string, dst: string, ...extra: string[]): [string, string[]] {
  const db = fs.mkdtempSync(path.join(work, `db-${++dbCount}-`)) + '/jobs.db'; // fresh each round
  return [process.execPath, [CLI, 'clone', src, dst, '--yes', '--json', '--db', db, ...extra]];
}

/** The copy rate the engine's done event reports (its own timing, without start-up). */
function copyRate(stdout: string): number {
  const done = JSON.parse(stdout.split('\n').find((l) => l.includes('"type":"done"')) ?? '{}');
  return done.bytesRead / done.seconds;
}

const throttleLines: string[] = [];

/** --throttle 50 against 100 on the same pair, alternating; then --max-rate 50M on 500 MiB. */
async function throttleFigures(loopA: string, loopB: string): Promise<void> {
  const rates: Record<string, number[]> = { '100': [], '50': [] };
  for (let round = 0; round < ROUNDS; round++)
    for (const pct of round % 2 ? ['50', '100'] : ['100', '50']) {
      const r = await run(...engine(loopA, loopB, '--throttle', pct));
      rates[pct].push(copyRate(r.stdout));
    }
  const share = median(rates['50']) / median(rates['100']);
  throttleLines.push(
    `--throttle 50: ${(median(rates['50']) / MiB).toFixed(0)} MiB/s against ` +
      `${(median(rates['100']) / MiB).toFixed(0)} MiB/s at 100: ${share.toFixed(2)} of full speed ` +
      `(target 0.50 ± 15%: ${share >= 0.425 && share <= 0.575 ? 'holds' : 'FAILS'})`,
  );
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

const rows: string[][] = [];
const ratios: Record<string, number> = {};
let enginePeakKiB = 0;

/**
 * Runs the contenders (baseline first, then the engine) in alternating order, round by
 * round; adds their rows to the table. MiB/s is of `bytes` (the source's data).
 */
async function scenario(title: string, specs: [Spec, Spec], bytes = SIZE): Promise<void> {
  const [dd, eng] = specs.map((s): Contender => ({ ...s, seconds: [], peakKiB: 0 }));
  let done = '';
  for (let round = 0; round < ROUNDS; round++)
    for (const c of round % 2 ? [eng, dd] : [dd, eng]) {
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
  enginePeakKiB = Math.max(enginePeakKiB, eng.peakKiB);
  for (const c of [dd, eng]) {
    const m = median(c.seconds);
    const ratio = c === eng ? ratios[title].toFixed(2) : '';
    const rounds = c.seconds.map((s) => s.toFixed(3)).join(' ');
    const rss = (c.peakKiB / 1024).toFixed(1);
    rows.push([title, c.name, rounds, m.toFixed(3), (bytes / MiB / m).toFixed(0), ratio, rss]);
  }
  if (done) console.log(`${title}: engine's last ${JSON.parse(done).type} event: ${done}`);
}

// ---- main -----------------------------------------------------------------------------
async function main(): Promise<void> {
  console.log(`DriveTwin bench: ${SIZE / MiB} MiB, ${ROUNDS} rounds, files in ${work}`);
  console.log(`peak RSS: ${TIME_BIN ? '/usr/bin/time %M' : '/proc/PID/status VmHWM, polled'}`);
  const src = path.join(work, 'src.img');
  const dst = path.join(work, 'dst.img');
  const dd = (...args: string[]): [string, string[]] => ['dd', [...args, 'status=none']];

  // 1. loop → loop, O_DIRECT, random data
  process.stderr.write('preparing loop→loop source…\n');
  makeSource(src, false);
  fs.writeFileSync(dst, '');
  fs.truncateSync(dst, SIZE);
  loops.push(sh('losetup', ['-f', '--show', src]));
  loops.push(sh('losetup', ['-f', '--show', dst]));
  const [loopA, loopB] = loops;
  // zero the destination between rounds so a contender that wrote nothing can't pass
  const zeros = dd('if=/dev/zero', `of=${loopB}`, 'bs=4M', 'oflag=direct', `count=${SIZE / CHUNK}`);
  const scrub = (): void => {
    if (VERIFY) sh(...zeros);
  };
  const check = (): void => sameBytes(loopA, loopB);
  await scenario('loop→loop', [
    {
      name: 'dd',
      cmd: () =>
        dd(`if=${loopA}`, `of=${loopB}`, 'bs=4M', 'iflag=direct', 'oflag=direct', 'conv=fsync'),
      reset: scrub,
      check,
    },
    { name: 'engine', cmd: () => engine(loopA, loopB), reset: scrub, check },
  ]);
  process.stderr.write('throttle figures…\n');
  await throttleFigures(loopA, loopB);
  for (const dev of loops.splice(0)) sh('losetup', ['-d', dev]);

  // 2. image → image, sparse, on mixed data (about half zero)
  process.stderr.write('preparing image→image source…\n');
  makeSource(src, true);
  const rmDst = (): void => fs.rmSync(dst, { force: true });
  const allocated = (f: string): string =>
    `${((fs.statSync(f).blocks * 512) / MiB).toFixed(0)} MiB`;
  const alloc: Record<string, string> = {};
  const checkImg = (who: string) => (): void => {
    sameBytes(src, dst);
    alloc[who] = allocated(dst);
  };
  await scenario('image→image sparse', [
    {
      name: 'dd',
      cmd: () => dd(`if=${src}`, `of=${dst}`, 'bs=4M', 'conv=sparse,fsync'),
      reset: rmDst,
      check: checkImg('dd'),
    },
    { name: 'engine', cmd: () => engine(src, dst), reset: rmDst, check: checkImg('engine') },
  ]);
  console.log(
    `image→image sparse: allocated: source ${allocated(src)}, dd's copy ${alloc.dd}, engine's copy ${alloc.engine}`,
  );
  rmDst();

  // 3. verify against cmp, on the same pair of full (non-sparse) images; both exit 0
  process.stderr.write('preparing the verify pair…\n');
  sh(...dd(`if=${src}`, `of=${dst}`, 'bs=4M', 'conv=fsync'));
  const nothing = (): void => undefined;
  await scenario('verify pair', [
    { name: 'cmp', cmd: () => ['cmp', [src, dst]], reset: nothing, check: nothing },
    {
      name: 'engine verify',
      cmd: () => [process.execPath, [CLI, 'verify', src, dst, '--json']],
      reset: nothing,
      check: nothing,
    },
  ]);
  rmDst();

  // 4. an .xz source (xz -T2 -3 of a mixed image of SIZE/2) to an image file
  const XZ_SIZE = SIZE / 2;
  process.stderr.write(`preparing the .xz source (${XZ_SIZE / MiB} MiB, xz -T2 -3)…\n`);
  fs.truncateSync(src, XZ_SIZE);
  const xzSrc = `${src}.xz`;
  sh('xz', ['-T2', '-3', '-k', '-f', src]);
  const xzRatio = fs.statSync(xzSrc).size / XZ_SIZE;
  const checkXz = (): void => sameBytes(src, dst);
  await scenario(
    '.xz source→image',
    [
      {
        name: 'xz -dc | dd',
        cmd: () => [
          'sh',
          ['-c', `xz -dc '${xzSrc}' | dd of='${dst}' bs=4M conv=fsync status=none`],
        ],
        reset: rmDst,
        check: checkXz,
      },
      { name: 'engine', cmd: () => engine(xzSrc, dst), reset: rmDst, check: checkXz },
    ],
    XZ_SIZE,
  );
  console.log(
    `.xz source→image: ${XZ_SIZE / MiB} MiB image, compressed to ${(xzRatio * 100).toFixed(1)}% by xz -T2 -3`,
  );
  rmDst();

  // the table, then the verdict
  const head = ['scenario', 'contender', 'rounds (s)', 'median s', 'MiB/s', 'base/engine'];
  const table = [[...head, 'peak RSS MiB'], ...rows];
  const w = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  console.log('');
  for (const r of table)
    console.log(
      r
        .map((c, i) => c.padEnd(w[i]))
        .join('  ')
        .trimEnd(),
    );
  console.log('');
  for (const line of throttleLines) console.log(line);
  const ratio = ratios['loop→loop'];
  const peak = enginePeakKiB / 1024;
  const ok = (b: boolean): string => (b ? 'holds' : 'FAILS');
  console.log(
    `\nratios (baseline median / engine median): ${Object.entries(ratios)
      .map(([k, v]) => `${k} ${v.toFixed(2)}`)
      .join(', ')}`,
  );
  console.log(
    `verify: the engine compares at ${ratios['verify pair'].toFixed(2)}× cmp's speed on the same pair ` +
      `(target: ≥ 0.9× the speed of reading both sides)`,
  );
  console.log(
    `goals: loop→loop ratio ${ratio.toFixed(2)} ≥ 1.0 ${ok(ratio >= 1)}; engine peak RSS ` +
      `${peak.toFixed(1)} MiB ≤ 200 ${ok(peak <= 200)} → ${ratio >= 1 && peak <= 200 ? 'ALL GOALS HOLD' : 'GOALS NOT MET'}`,
  );
}

main()
  .then(cleanup)
  .catch((err: Error) => {
    cleanup();
    console.error(`bench: ${err.message}`);
    process.exit(1);
  });
