// Wipe first, table last (invariant 9): a new clone zeroes the target's old partition
// tables — its first and last MiB and where its old GPT kept its backup — before any
// region, and writes the source's tables last. So a copy killed (-9) at a random moment
// leaves a target with no partition table at all (`blkid -p` and `sfdisk -d` find none,
// and the job's map has the regions of the tables — at the start, and the backup GPT at
// the end — unhydrated), and resuming it finishes byte-identical where the sizes match —
// also from a compressed source, whose table is read again from its start — and with a
// correct GPT where the copy was fitted to a smaller drive. A resumed job does not wipe
// again: a mark put on a hydrated region of the first MiB survives the resume.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { runCli, spawnCli, explain, only } from '../helpers/cli';
import { sha256 } from '../helpers/files';
import { type LoopDevice, requireRoot } from '../helpers/loop';
import {
  GIB,
  assertPartitionsCopied,
  assertSgdiskClean,
  gptLayout,
  partitionedImage,
  requireTools,
  run,
} from '../helpers/partitioned';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const RATE = 256 * MIB;
/**
 * Random bytes in the third partition (no file system there): the rest of the image is
 * holes, which are not read, so without them the copy would be over before any kill.
 */
const DATA = 384 * MIB;
const THIRD_PARTITION = MIB + 800 * MIB;

/** The 2 GiB GPT source, with DATA bytes to copy at the start of its third partition. */
function busySource(env: Workspace): { file: string; files: string } {
  const src = partitionedImage(env, 'src.img', 2 * GIB, gptLayout(1.5 * GIB));
  const fd = fs.openSync(src.file, 'r+');
  try {
    const chunk = Buffer.alloc(8 * MIB);
    for (let done = 0; done < DATA; done += chunk.length) {
      crypto.randomFillSync(chunk);
      fs.writeSync(fd, chunk, 0, chunk.length, THIRD_PARTITION + done);
    }
  } finally {
    fs.closeSync(fd);
  }
  return src;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Where the old GPT's backup header lies: it was made when the disk was 1.5 GiB. */
const OLD_BACKUP_HEADER = 1.5 * GIB - 512;

/**
 * What a target held before: a GPT made when it was smaller (its backup sits in the
 * middle of the disk now), an ext4 file system in its one partition.
 */
function writeOldDisk(file: string, size: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, 1.5 * GIB);
  run('sgdisk', ['-o', '-n', '1:2048:+512M', '-t', '1:8300', file]);
  run('mkfs.ext4', ['-q', '-F', '-E', `offset=${MIB}`, file, '512M']);
  fs.truncateSync(file, size);
}

/** A target that held something else: an old GPT and an ext4 file system. */
function oldDisk(env: Workspace, name: string, size: number): LoopDevice {
  const file = env.file(name);
  writeOldDisk(file, size);
  const dev = env.attach(file);
  assert.equal(blkidTable(dev.path), 'gpt', 'the old disk has its GPT');
  return dev;
}

/** Empties the target and writes its old table and file system again. */
function reset(dev: LoopDevice): void {
  writeOldDisk(dev.file, fs.statSync(dev.file).size);
  execFileSync('blockdev', ['--flushbufs', dev.path]);
}

/** The partition table type `blkid -p` finds on the whole disk, or null for none. */
function blkidTable(disk: string): string | null {
  const r = spawnSync('blkid', ['-p', '-o', 'value', '-s', 'PTTYPE', disk], { encoding: 'utf8' });
  // 2: nothing was found.
  if (r.status === 2) return null;
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim() || null;
}

/** No partition table anywhere a system looks: blkid, sfdisk, and no old backup header. */
function assertNoTable(disk: string, when: string): void {
  const probe = spawnSync('blkid', ['-p', disk], { encoding: 'utf8' });
  assert.equal(probe.status, 2, `${when}: blkid -p finds nothing (${probe.stdout.trim()})`);
  const dump = spawnSync('sfdisk', ['-d', disk], { encoding: 'utf8' });
  assert.notEqual(dump.status, 0, `${when}: sfdisk -d finds no table:\n${dump.stdout}`);
  assert.match(dump.stderr, /does not contain a recognized partition table/);
  const fd = fs.openSync(disk, 'r');
  try {
    const sector = Buffer.alloc(512);
    fs.readSync(fd, sector, 0, 512, OLD_BACKUP_HEADER);
    assert.notEqual(sector.toString('latin1', 0, 8), 'EFI PART', `${when}: the old backup GPT`);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Starts `args`, kills it -9 at a random moment within the copy (not before `atLeast`
 * ms), and checks no partition table is left. Returns the job and its map, or null when
 * the copy finished first.
 */
async function killMidCopy(
  env: Workspace,
  args: string[],
  dev: LoopDevice,
  log: (m: string) => void,
  opts: { backupHeld?: boolean; atLeast?: number; rate?: number } = {},
): Promise<{ job: number; hydrated: (region: number) => boolean } | null> {
  const rate = opts.rate ?? RATE;
  const run1 = spawnCli([...args, '--max-rate', String(rate), '--yes', '--json'], { db: env.db });
  const start = await run1.waitEvent((e) => e.type === 'start');
  // A stream is read whole (at its rate); an image's holes are not read at all.
  const busy = args[1].endsWith('.zst') ? (start.bytesTotal as number) : DATA;
  const expectedMs = (busy / rate) * 1000;
  const atLeast = opts.atLeast ?? 200;
  const delay = atLeast + Math.round(Math.random() * (expectedMs * 0.8 - atLeast));
  await sleep(delay);
  run1.child.kill('SIGKILL');
  const r = await run1.done;
  if (r.code === 0) {
    log(`finished before the kill at ${delay} ms`);
    return null;
  }
  assert.equal(r.signal, 'SIGKILL', explain(r));
  execFileSync('blockdev', ['--flushbufs', dev.path]);
  assertNoTable(dev.path, `killed at ${delay} ms`);
  const job = start.job as number;
  const map = only(await runCli(['map', String(job), '--format', 'json'], { db: env.db }), 'map');
  const runs = map.hydrated as Array<{ first: number; count: number }>;
  const hydrated = (r: number): boolean => runs.some((h) => h.first <= r && r < h.first + h.count);
  assert.ok(!hydrated(0), 'the region holding the tables is not hydrated');
  const last = (map.regionsTotal as number) - 1;
  if (opts.backupHeld) assert.ok(!hydrated(last), 'nor the one holding the backup GPT');
  log(
    `killed at ${delay} ms with ${String(map.regionsHydrated)}/${String(map.regionsTotal)} regions`,
  );
  return { job, hydrated };
}

async function resumeToEnd(env: Workspace, job: number, again: string[] | null): Promise<void> {
  const args = again ? [...again, '--yes', '--json'] : ['resume', String(job), '--yes', '--json'];
  const r = await runCli(args, { db: env.db });
  assert.equal(r.code, 0, explain(r));
  assert.equal(only(r, 'start').job, job, 'the same job goes on');
  assert.equal(only(r, 'done').state, 'done');
}

test('kill -9 before the end: no partition table is left; resume finishes', async (t) => {
  if (!requireRoot(t) || !requireTools(t)) return;
  const env = workspace(t, 'parts-kill');
  const src = busySource(env);
  const want = sha256(src.file);
  const dev = oldDisk(env, 'dst.img', 2 * GIB);
  let killed = 0;

  for (let round = 0; round < 3; round++) {
    await t.test(`same size, round ${round + 1}: identical after the resume`, async (st) => {
      reset(dev);
      const args = ['clone', src.file, dev.path];
      const killed1 = await killMidCopy(env, args, dev, (m) => st.diagnostic(m), {
        backupHeld: true,
      });
      if (killed1 === null) return;
      const { job } = killed1;
      killed += 1;
      st.after(() => runCli(['forget', String(job)], { db: env.db }));
      await resumeToEnd(env, job, round % 2 === 0 ? null : args);
      execFileSync('blockdev', ['--flushbufs', dev.path]);
      assert.equal(sha256(dev.path), want, 'byte-identical to the source');
      assertSgdiskClean(dev.path);
    });
  }
  assert.ok(killed >= 2, `only ${killed} of 3 rounds were killed mid-copy`);

  await t.test('from a .zst image: the table is read again from the stream’s start', async (st) => {
    const zst = env.file('src.img.zst');
    run('zstd', ['-q', '-1', '-c', src.file, '-o', zst]);
    for (let attempt = 0; attempt < 3; attempt++) {
      reset(dev);
      const killed1 = await killMidCopy(env, ['clone', zst, dev.path], dev, (m) =>
        st.diagnostic(m),
      );
      if (killed1 === null) continue;
      await resumeToEnd(env, killed1.job, null);
      execFileSync('blockdev', ['--flushbufs', dev.path]);
      assert.equal(sha256(dev.path), want);
      return;
    }
    assert.fail('the copy from the .zst image always finished before the kill');
  });

  await t.test('fitted onto a smaller drive: no table left, then a clean GPT', async (st) => {
    const small = oldDisk(env, 'small.img', 1638 * MIB);
    for (let attempt = 0; attempt < 3; attempt++) {
      reset(small);
      const args = ['clone', src.file, small.path, '--fit'];
      const killed1 = await killMidCopy(env, args, small, (m) => st.diagnostic(m));
      if (killed1 === null) continue;
      await resumeToEnd(env, killed1.job, null);
      assertSgdiskClean(small.path);
      assertPartitionsCopied(src.file, small.path, src.files);
      return;
    }
    assert.fail('the fitted copy always finished before the kill');
  });
});

test('a resumed job does not wipe again: a mark on a hydrated region survives', async (t) => {
  if (!requireRoot(t) || !requireTools(t)) return;
  const env = workspace(t, 'parts-rewipe');
  const src = busySource(env);
  const dev = oldDisk(env, 'dst.img', 2 * GIB);
  // 64 KiB regions: the first MiB holds 16, the tables only the first; at half the rate,
  // a kill after the first commit (1 s) finds regions 1-15 hydrated.
  const args = ['clone', src.file, dev.path, '--region-size', '64K'];
  const slow = { atLeast: 1300, rate: 128 * MIB };
  const MARKED = 8;
  let killed1: Awaited<ReturnType<typeof killMidCopy>> = null;
  for (let attempt = 0; attempt < 3 && !killed1?.hydrated(MARKED); attempt++) {
    reset(dev);
    killed1 = await killMidCopy(env, args, dev, (m) => t.diagnostic(m), slow);
  }
  if (!killed1?.hydrated(MARKED)) assert.fail(`never killed with region ${MARKED} hydrated`);
  const mark = Buffer.alloc(512);
  mark.write('DRIVETWIN: NOT WIPED AGAIN', 'latin1');
  const at = MARKED * 64 * 1024;
  const fd = fs.openSync(dev.path, 'r+');
  try {
    fs.writeSync(fd, mark, 0, mark.length, at);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  await resumeToEnd(env, killed1.job, null);
  execFileSync('blockdev', ['--flushbufs', dev.path]);
  const back = Buffer.alloc(512);
  const fd2 = fs.openSync(dev.path, 'r');
  try {
    fs.readSync(fd2, back, 0, back.length, at);
  } finally {
    fs.closeSync(fd2);
  }
  assert.deepEqual(back, mark, 'the mark in the first MiB is still there: no second wipe');
  // The rest is the source's: with the mark undone the copy is identical.
  const fd3 = fs.openSync(dev.path, 'r+');
  try {
    fs.writeSync(fd3, Buffer.alloc(512), 0, 512, at);
  } finally {
    fs.closeSync(fd3);
  }
  execFileSync('blockdev', ['--flushbufs', dev.path]);
  assert.equal(sha256(dev.path), sha256(src.file));
});

test('--fit and --new-ids are fixed for a job: a resume or a re-run can’t change them', async (t) => {
  if (!requireRoot(t) || !requireTools(t)) return;
  const env = workspace(t, 'parts-fixed');
  const src = busySource(env);
  const dev = oldDisk(env, 'dst.img', 2 * GIB);
  let job: number | null = null;
  for (let attempt = 0; attempt < 3 && job === null; attempt++) {
    reset(dev);
    job =
      (await killMidCopy(env, ['clone', src.file, dev.path], dev, (m) => t.diagnostic(m)))?.job ??
      null;
  }
  assert.ok(job !== null, 'killed mid-copy');
  const before = sha256(dev.path);
  const r = await runCli(['clone', src.file, dev.path, '--new-ids', '--yes'], { db: env.db });
  assert.equal(r.code, 2, explain(r));
  assert.match(r.stderr, new RegExp(`--new-ids can't change for job ${job}`));
  assert.equal(sha256(dev.path), before, 'nothing was written');
});
