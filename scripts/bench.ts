// DriveTwin benchmark: the engine against the tools that set the limit, backing files in
// /dev/shm so the disk's noise stays out. Contenders alternate round by round; we report
// medians, their ratio (baseline median / engine median: > 1, the engine is faster) and
// the engine's peak RSS in each case.
//
//   npm run bench                         # 2 GiB, 3 rounds (needs root, losetup, nbdkit, nbdfuse)
//   BENCH_SIZE=512M BENCH_ROUNDS=5 npm run bench
//   BENCH_VERIFY=0 npm run bench          # skip the byte comparison after each round
//   BENCH_ETCHER_SDK=/some/dir npm run bench   # etcher-sdk (npm install etcher-sdk there) joins the .xz case
//   BENCH_ONLY=used npm run bench         # only the used-space case (bench-used.ts)
//   BENCH_ONLY=download BENCH_ROUNDS=1 npm run bench   # the download case alone, once
//
// Cases: loop→loop against dd, and the throttle; verify against cmp, drive vs drive and
// image vs drive; image→image sparse against dd; a 64 GiB sparse image (4 MiB of data)
// against cp; .xz (xz -T2, many blocks) against `xz -dc -T2 | dd`; a single-block .xz
// against `xz -dc | dd`; .bz2 against `bzip2 -dc | dd`; and a rate-limited pair (nbdkit's
// rate filter through nbdfuse and loop devices: source 200 MB/s, destination 100 MB/s)
// against dd and the slower drive's rate; a 4 GiB disk of four partitions a quarter
// used, --used-only against the full copy and partclone (bench-used.ts); last, a .img.xz
// served over http on 127.0.0.1, its URL onto a loop device, against
// `curl | xz -dc | dd` (bench-download.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { DOWNLOAD_CASE, downloadCase } from './bench-download';
import { loadEtcherSdk } from './bench-etcher';
import { USED_CASE, usedSpaceCase } from './bench-used';
import {
  CHUNK,
  CLI,
  ENV_NOTE,
  MiB,
  ONLY,
  ROUNDS,
  SIZE,
  TIME_BIN,
  VERIFY,
  cleanup,
  engine,
  enginePeaks,
  loops,
  makeSource,
  mounts,
  ratios,
  refuse,
  rows,
  sameBytes,
  scenario,
  sh,
  throttleFigures,
  throttleLines,
  work,
  type Spec,
} from './bench-lib';

const dd = (...args: string[]): [string, string[]] => ['dd', [...args, 'status=none']];
const pipe = (cmd: string): [string, string[]] => ['sh', ['-c', cmd]];
const nothing = (): void => undefined;
const notes: string[] = [];
/** The rate-limited pair: the engine's and dd's rates, and the limit (the slower drive). */
const limits: Record<string, number> = {};

for (const tool of ['nbdkit', 'nbdfuse', 'xz', 'bzip2', 'cmp', 'cp', 'curl'])
  if (!process.env.PATH?.split(':').some((d) => fs.existsSync(path.join(d, tool))))
    refuse(`${tool} not found`);

/** A loop device over `file`, served by nbdkit at `bitsPerSecond` through nbdfuse. */
async function rateLimitedLoop(file: string, bitsPerSecond: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(work, 'fuse-'));
  const nbd = path.join(dir, 'nbd');
  const args = [nbd, '--command', 'nbdkit', '-s', '--filter=rate', 'file', file];
  spawn('nbdfuse', [...args, `rate=${bitsPerSecond}`, 'burstiness=0.2'], {
    stdio: 'ignore',
    detached: true,
  }).unref();
  mounts.push(dir);
  for (let i = 0; i < 100 && !fs.existsSync(nbd); i++) await new Promise((r) => setTimeout(r, 50));
  const dev = sh('losetup', ['-f', '--show', '--direct-io=on', nbd]);
  loops.push(dev);
  const dio = fs.readFileSync(`/sys/block/${path.basename(dev)}/loop/dio`, 'utf8').trim();
  notes.push(
    `${dev}: ${file} at ${bitsPerSecond} bits/s, loop direct I/O ${dio === '1' ? 'on' : 'off'}`,
  );
  return dev;
}

/** Drops what the page cache holds of the FUSE files: each round reads through nbdkit. */
function uncache(): void {
  for (const dir of mounts) sh(...dd(`if=${path.join(dir, 'nbd')}`, 'iflag=nocache', 'count=0'));
}

function detachAll(): void {
  for (const dev of loops.splice(0)) sh('losetup', ['-d', dev]);
  for (const dir of mounts.splice(0)) sh('umount', [dir]);
}

async function main(): Promise<void> {
  console.log(`DriveTwin bench: ${SIZE / MiB} MiB, ${ROUNDS} rounds, files in ${work}`);
  console.log(`peak RSS: ${TIME_BIN ? '/usr/bin/time %M' : '/proc/PID/status VmHWM, polled'}`);
  if (ENV_NOTE) console.log(ENV_NOTE);
  if (ONLY === 'used') {
    await usedSpaceCase(notes);
    return report();
  }
  const src = path.join(work, 'src.img');
  const dst = path.join(work, 'dst.img');
  const rmDst = (): void => fs.rmSync(dst, { force: true });
  if (ONLY === 'download') {
    notes.push(await downloadCase(src));
    detachAll();
    return report();
  }

  // 1. loop → loop, O_DIRECT, random data; then verify the pair against cmp
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
  sh(...dd(`if=${loopA}`, `of=${loopB}`, 'bs=4M', 'iflag=direct', 'oflag=direct'));
  await scenario('verify drive vs drive', verifyAgainstCmp(loopA, loopB));
  process.stderr.write('throttle figures…\n');
  await throttleFigures(loopA, loopB);

  // 2. verify image vs drive: the source file against the loop device holding its copy
  await scenario('verify image vs drive', verifyAgainstCmp(src, loopB));
  detachAll();

  // 3. image → image, sparse, on mixed data (about half zero)
  process.stderr.write('preparing image→image source…\n');
  makeSource(src, true);
  const allocated = (f: string): string =>
    `${((fs.statSync(f).blocks * 512) / MiB).toFixed(0)} MiB`;
  const alloc: Record<string, string> = {};
  const checkImg =
    (who: string, from = src) =>
    (): void => {
      sameBytes(from, dst);
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
  notes.push(
    `image→image sparse: allocated: source ${allocated(src)}, dd's copy ${alloc.dd}, engine's copy ${alloc.engine}`,
  );
  rmDst();

  // 4. a 64 GiB sparse image holding 4 MiB of data, to an image; cp also asks SEEK_DATA
  const sparse = path.join(work, 'sparse64.img');
  fs.writeFileSync(sparse, '');
  fs.truncateSync(sparse, 64 * 1024 * MiB);
  for (const at of [0, 20_000, 40_000, 65_535])
    sh(...dd('if=/dev/urandom', `of=${sparse}`, 'bs=1M', 'count=1', `seek=${at}`, 'conv=notrunc'));
  // Comparing 64 GiB of holes would take longer than the copies: the data, the size, and
  // the first 64 MiB of holes.
  const sparseCheck = (): void => {
    if (!VERIFY) return;
    if (fs.statSync(dst).size !== fs.statSync(sparse).size) throw new Error(`${dst}: wrong size`);
    for (const [at, n] of [
      [0, '65M'],
      [20_000, '1M'],
      [40_000, '1M'],
      [65_535, '1M'],
    ] as const)
      sh('cmp', ['-i', `${at}M`, '-n', n, sparse, dst]);
  };
  await scenario(
    '64 GiB sparse image',
    [
      {
        name: 'cp --sparse=always',
        cmd: () => ['cp', ['--sparse=always', sparse, dst]],
        reset: rmDst,
        check: sparseCheck,
      },
      { name: 'engine', cmd: () => engine(sparse, dst), reset: rmDst, check: sparseCheck },
    ],
    64 * 1024 * MiB,
  );
  fs.rmSync(sparse);
  rmDst();

  // 5. compressed sources: .xz of many blocks, of one block, and .bz2
  await compressed(src, dst);

  // 6. the rate-limited pair
  await rateLimitedPair(src, dst);

  // 7. a download: a URL on 127.0.0.1 onto a loop device
  rmDst();
  notes.push(await downloadCase(src));
  detachAll();

  // 8. a partitioned disk, a quarter used: --used-only
  fs.rmSync(src, { force: true });
  await usedSpaceCase(notes);

  report();
}

/** cmp against `drivetwin verify` on the same pair (both must find it equal). */
function verifyAgainstCmp(a: string, b: string): [Spec, Spec] {
  return [
    { name: 'cmp', cmd: () => ['cmp', [a, b]], reset: nothing, check: nothing },
    {
      name: 'engine verify',
      cmd: () => [process.execPath, [CLI, 'verify', a, b, '--json']],
      reset: nothing,
      check: nothing,
    },
  ];
}

/** The case etcher-sdk joins (where the issue measured it), when BENCH_ETCHER_SDK loads. */
const ETCHER_CASE = '.xz (xz -T2, many blocks)';
const etcher = loadEtcherSdk();

async function compressed(src: string, dst: string): Promise<void> {
  if (typeof etcher === 'string') notes.push(`etcher-sdk left out: ${etcher}`);
  const rmDst = (): void => fs.rmSync(dst, { force: true });
  const cases: Array<[string, number, string[], string]> = [
    // xz -0 keeps the preparation short; blocks of 3 × its 256 KiB dictionary.
    ['.xz (xz -T2, many blocks)', SIZE / 2, ['xz', '-T2', '-0', '-c'], 'xz -dc -T2'],
    // One block decodes on one core, for xz as for the engine: the whole bench size, so the
    // fixed start-up (Node and the job's checks, ~0.17 s) weighs as on a real image. xz -0
    // packs random data slowly: this one takes about 4 minutes to make.
    ['.xz (one block)', SIZE, ['xz', '-T1', '-0', '-c'], 'xz -dc'],
    ['.bz2', SIZE / 8, ['bzip2', '-c'], 'bzip2 -dc'],
  ];
  for (const [title, size, compress, decompress] of cases) {
    process.stderr.write(`preparing the ${title} source (${size / MiB} MiB)…\n`);
    makeSource(src, true, size);
    const packed = path.join(work, 'packed');
    sh('sh', ['-c', `${compress.join(' ')} '${src}' > '${packed}'`]);
    const share = fs.statSync(packed).size / size;
    const checkIt = (): void => sameBytes(src, dst);
    const peers: Spec[] = [];
    if (title === ETCHER_CASE && typeof etcher !== 'string')
      peers.push({
        name: 'etcher-sdk',
        cmd: () => [process.execPath, [path.join(__dirname, 'bench-etcher.js'), packed, dst]],
        reset: rmDst,
        check: checkIt,
      });
    await scenario(
      title,
      [
        {
          name: `${decompress} | dd`,
          cmd: () =>
            pipe(`${decompress} '${packed}' | dd of='${dst}' bs=4M conv=fsync status=none`),
          reset: rmDst,
          check: checkIt,
        },
        { name: 'engine', cmd: () => engine(packed, dst), reset: rmDst, check: checkIt },
        ...peers,
      ],
      size,
    );
    notes.push(`${title}: ${size / MiB} MiB image, compressed to ${(share * 100).toFixed(1)}%`);
    fs.rmSync(packed);
    rmDst();
  }
}

/** Source at 200 MB/s, destination at 100 MB/s: the limit is 100 MB/s. */
async function rateLimitedPair(src: string, dst: string): Promise<void> {
  const size = Math.min(SIZE, 512 * MiB);
  makeSource(src, false, size);
  fs.writeFileSync(dst, '');
  fs.truncateSync(dst, size);
  const from = await rateLimitedLoop(src, '1600M');
  const to = await rateLimitedLoop(dst, '800M');
  const title = 'rate-limited pair';
  const checkIt = (): void => sameBytes(src, dst);
  await scenario(
    title,
    [
      {
        name: 'dd',
        cmd: () =>
          dd(`if=${from}`, `of=${to}`, 'bs=4M', 'iflag=direct', 'oflag=direct', 'conv=fsync'),
        reset: uncache,
        check: checkIt,
      },
      { name: 'engine', cmd: () => engine(from, to), reset: uncache, check: checkIt },
    ],
    size,
  );
  const seconds = (who: string): number =>
    Number(rows.find((r) => r[0] === title && r[1] === who)![3]);
  limits.engine = size / seconds('engine') / 1e6;
  limits.dd = size / seconds('dd') / 1e6;
  detachAll();
}

function report(): void {
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
  for (const line of [...notes, ...throttleLines]) console.log(line);
  const ok = (b: boolean): string => (b ? 'holds' : 'FAILS');
  const seconds = (title: string, who: string): number | null => {
    const row = rows.find((r) => r[0] === title && r[1] === who);
    return row ? Number(row[3]) : null;
  };
  const ratio = (k: string, floor: number, peer = ''): Array<[string, boolean]> =>
    ratios[k] === undefined
      ? []
      : [[`${k} ${ratios[k].toFixed(2)}×${peer} ≥ ${floor}`, ratios[k] >= floor]];
  const sparseSeconds = seconds('64 GiB sparse image', 'engine');
  const partclone = seconds(USED_CASE, 'partclone -b × 4');
  const usedOnly = seconds(USED_CASE, 'engine --used-only');
  const goals: Array<[string, boolean]> = [
    ...ratio('loop→loop', 1, ' dd'),
    ...['.xz (xz -T2, many blocks)', '.xz (one block)', '.bz2', DOWNLOAD_CASE].flatMap((k) =>
      ratio(k, 1),
    ),
    ...['verify drive vs drive', 'verify image vs drive'].flatMap((k) => ratio(k, 0.9, ' cmp')),
    ...(sparseSeconds === null
      ? []
      : [
          [`64 GiB sparse image in ${sparseSeconds.toFixed(2)} s < 2`, sparseSeconds < 2] as [
            string,
            boolean,
          ],
        ]),
    ...(limits.engine === undefined
      ? []
      : [
          [
            `rate-limited pair: engine ${limits.engine.toFixed(0)} MB/s = ${(limits.engine / 100).toFixed(2)}× the 100 MB/s limit ≥ 0.9 (dd ${limits.dd.toFixed(0)} MB/s)`,
            limits.engine / 100 >= 0.9,
          ] as [string, boolean],
        ]),
    ...ratio(USED_CASE, 2, ' the full copy'),
    ...(partclone === null || usedOnly === null
      ? []
      : [
          [
            `${USED_CASE}: partclone ${partclone.toFixed(2)} s / --used-only ${usedOnly.toFixed(2)} s = ${(partclone / usedOnly).toFixed(2)}× ≥ 1.0`,
            partclone >= usedOnly,
          ] as [string, boolean],
        ]),
    ...Object.entries(enginePeaks).map(([k, kib]): [string, boolean] => [
      `${k}: engine peak RSS ${(kib / 1024).toFixed(0)} MiB ≤ 200`,
      kib <= 200 * 1024,
    ]),
  ];
  console.log('\ngoals:');
  for (const [what, held] of goals) console.log(`  ${ok(held)}  ${what}`);
  const all = goals.every(([, held]) => held);
  console.log(all ? 'ALL GOALS HOLD' : 'GOALS NOT MET');
}

main()
  .then(cleanup)
  .catch((err: Error) => {
    cleanup();
    console.error(`bench: ${err.message}`);
    process.exit(1);
  });
