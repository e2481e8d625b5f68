// `clone --used-only` of partitioned disks (GPT, and MBR with logical partitions)
// holding ext4, NTFS, exFAT, FAT32 and FAT16, swap and a partition of no known kind,
// made here by the file systems' own tools over random bytes: the copy reads at most
// 5 % more than the file systems use by their own count (plus the tables), every
// partition of the copy passes its checker and holds the source's files (mounted and
// hashed), free space is holes in an image and untouched on a drive. Killed with -9
// it resumes; fitted onto a smaller image it fits; a backup (.img.zst) restores; the
// job's ddrescue map is complete.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { runCli, spawnCli, explain, only } from '../helpers/cli';
import { allocatedBytes, sha256, writeRandomFile } from '../helpers/files';
import {
  type MadePartition,
  type PartSpec,
  assertCopied,
  multiFsImage,
  partitionNodes,
  requireFsTools,
  usedByTools,
} from '../helpers/filesystems';
import { requireRoot } from '../helpers/loop';
import { assertSgdiskClean, run } from '../helpers/partitioned';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

const GPT_SPECS: PartSpec[] = [
  { fs: 'ext4', size: 320 * MIB, fill: 150 * MIB },
  { fs: 'ntfs', size: 320 * MIB, fill: 140 * MIB },
  { fs: 'exfat', size: 256 * MIB, fill: 110 * MIB },
  { fs: 'fat32', size: 256 * MIB, fill: 100 * MIB },
  { fs: 'swap', size: 64 * MIB, fill: 0 },
  { fs: 'raw', size: 16 * MIB, fill: 0 },
];
/** The GPT disk: its partitions end at 1233 MiB, the rest is in none. */
const GPT_SIZE = 1400 * MIB;

/** What the file systems use by their own tools' count, and what lies outside the partitions up to the last one. */
function usedByTheirTools(env: Workspace, file: string, parts: MadePartition[]): number {
  const loop = env.attach(file, { partscan: true, readOnly: true });
  try {
    partitionNodes(
      loop.path,
      parts.map((p) => p.number),
    );
    const inside = parts.reduce(
      (n, p) => n + usedByTools(`${loop.path}p${p.number}`, p.fs, p.length),
      0,
    );
    const last = Math.max(...parts.map((p) => p.offset + p.length));
    const outside = last - parts.reduce((n, p) => n + p.length, 0);
    return inside + outside + 33 * 512; // and the backup GPT
  } finally {
    loop.detach();
  }
}

test('four file systems, swap and an unknown partition on a GPT: --used-only to an image file', async (t) => {
  if (!requireRoot(t) || !requireFsTools(t)) return;
  const env = workspace(t, 'used-parts-gpt');
  const { file, parts } = multiFsImage(env, 'src.img', GPT_SIZE, 'gpt', GPT_SPECS, 2201);
  const want = sha256(file);
  const used = usedByTheirTools(env, file, parts);
  const copy = env.file('copy.img');

  const r = await runCli(['clone', file, copy, '--used-only', '--verify', '--json'], {
    db: env.db,
  });
  assert.equal(r.code, 0, explain(r));
  const start = only(r, 'start');
  const done = only(r, 'done');
  assert.equal(done.verified, true, 'verify compares the used blocks and the tables');
  const areas = (start.usedSpace as { areas: Array<{ fs: string; copy: string }> }).areas;
  assert.deepEqual(
    areas.map((a) => `${a.fs}:${a.copy}`),
    ['ext4:used', 'ntfs:used', 'exfat:used', 'fat32:used', 'swap:skipped', 'null:whole'],
  );
  const read = done.bytesRead as number;
  t.diagnostic(
    `bytesRead ${read} (${(read / MIB).toFixed(1)} MiB) for ${(used / MIB).toFixed(1)} MiB used ` +
      `by the file systems' own count: +${(((read - used) / used) * 100).toFixed(2)} %; ` +
      `a full copy reads ${GPT_SIZE / MIB} MiB`,
  );
  assert.ok(read <= used * 1.05, `read ${read}, used ${used}: more than 5 % over`);
  assert.ok(read >= used * 0.99, `read ${read}, used ${used}: less than is used`);
  assert.ok(
    allocatedBytes(copy) <= (done.bytesWritten as number) + MIB,
    'free space is holes in the copy',
  );
  assertCopied(env, copy, parts, (m) => t.diagnostic(m));
  assert.equal(sha256(file), want, 'the source is never written');

  await t.test('its ddrescue map: every byte of the copy finished', async () => {
    const map = await runCli(['map', String(done.job), '--format', 'ddrescue'], { db: env.db });
    assert.equal(map.code, 0, explain(map));
    const lines = map.stdout.split('\n').filter((l) => /^0x/.test(l));
    assert.ok(lines.length > 0 && lines.slice(1).every((l) => l.trim().endsWith('+')), map.stdout);
  });

  await t.test('fitted onto a smaller image: a clean GPT and every partition', async (st) => {
    const small = env.file('small.img');
    writeRandomFile(small, 1300 * MIB, 2202);
    const f = await runCli(['clone', file, small, '--used-only', '--fit', '--json'], {
      db: env.db,
    });
    assert.equal(f.code, 0, explain(f));
    assert.ok((only(f, 'done').bytesRead as number) <= used * 1.05);
    assertSgdiskClean(small);
    assertCopied(env, small, parts, (m) => st.diagnostic(m));
  });

  await t.test('a backup (.img.zst): zstd -d gives the copy back', async (st) => {
    const zst = env.file('backup.img.zst');
    const b = await runCli(['clone', file, zst, '--used-only', '--json'], { db: env.db });
    assert.equal(b.code, 0, explain(b));
    const restored = env.file('restored.img');
    run('zstd', ['-q', '-d', zst, '-o', restored]);
    assertCopied(env, restored, parts, (m) => st.diagnostic(m));
  });
});

test('killed with -9 mid-copy and resumed: every partition whole', async (t) => {
  if (!requireRoot(t) || !requireFsTools(t)) return;
  const env = workspace(t, 'used-parts-kill');
  const { file, parts } = multiFsImage(env, 'src.img', GPT_SIZE, 'gpt', GPT_SPECS, 2301);
  const copy = env.file('copy.img');
  const args = ['clone', file, copy, '--used-only', '--json'];
  const first = spawnCli([...args, '--max-rate', '128M'], { db: env.db });
  const start = await first.waitEvent((e) => e.type === 'start');
  const job = start.job as number;
  // Free regions count as hydrated from the start: wait for 64 copied ones.
  const free = start.regionsHydrated as number;
  const at = await first.waitEvent(
    (e) => e.type === 'progress' && (e.regionsHydrated as number) > free + 64,
  );
  first.child.kill('SIGKILL');
  const killed = await first.done;
  assert.equal(killed.signal, 'SIGKILL', explain(killed));
  t.diagnostic(`killed with ${String(at.bytesDone)} bytes done`);
  const again = await runCli(['resume', String(job), '--verify', '--json'], { db: env.db });
  assert.equal(again.code, 0, explain(again));
  assert.equal(only(again, 'start').intent, 'resume');
  const kept = (only(again, 'start').regionsHydrated as number) - free;
  const total = only(again, 'start').regionsTotal as number;
  assert.ok(kept > 64 && free + kept < total, `${kept} copied regions kept, the rest to go`);
  assert.equal(only(again, 'done').verified, true);
  assertCopied(env, copy, parts, (m) => t.diagnostic(m));
});

test('an MBR with logical partitions onto a drive of random bytes: free space left as it was (but the wiped last MiB), or zeroed', async (t) => {
  if (!requireRoot(t) || !requireFsTools(t)) return;
  const env = workspace(t, 'used-parts-mbr');
  const specs: PartSpec[] = [
    { fs: 'fat16', size: 128 * MIB, fill: 40 * MIB },
    { fs: 'ext4', size: 192 * MIB, fill: 60 * MIB },
    { fs: 'swap', size: 32 * MIB, fill: 0 },
    { fs: 'ntfs', size: 192 * MIB, fill: 70 * MIB },
    { fs: 'exfat', size: 160 * MIB, fill: 50 * MIB },
  ];
  const { file, parts } = multiFsImage(env, 'src.img', 720 * MIB, 'mbr', specs, 2401);
  assert.deepEqual(
    parts.map((p) => p.number),
    [1, 2, 3, 5, 6],
  );
  const drive = env.loop('drive.img', 720 * MIB, { seed: 2402 });
  const before = fs.readFileSync(drive.file);
  const r = await runCli(
    ['clone', file, drive.path, '--used-only', '--verify', '--yes', '--json'],
    {
      db: env.db,
    },
  );
  assert.equal(r.code, 0, explain(r));
  assert.equal(only(r, 'done').verified, true);
  execFileSync('blockdev', ['--flushbufs', drive.path]);
  assertCopied(env, drive.path, parts, (m) => t.diagnostic(m));
  // Regions the copy did not read keep the drive's old bytes, but for the last MiB: a new
  // job wipes it (old partition tables), and past the last partition nothing is read.
  const after = fs.readFileSync(drive.file);
  const src = fs.readFileSync(file);
  const zero = Buffer.alloc(MIB);
  const notRead = new Set<number>();
  for (let at = 0; at < after.length; at += MIB) {
    const mine = after.subarray(at, at + MIB);
    if (mine.equals(before.subarray(at, at + MIB)) && !mine.equals(src.subarray(at, at + MIB)))
      notRead.add(at / MIB);
  }
  const untouched = notRead.size;
  const usedSpace = only(r, 'start').usedSpace as { afterLastBytes: number };
  assert.ok(usedSpace.afterLastBytes >= MIB, 'this disk has room after its last partition');
  assert.ok(after.subarray(after.length - MIB).equals(zero), 'the last MiB wiped');
  notRead.add(after.length / MIB - 1);
  const read = only(r, 'done').bytesRead as number;
  assert.equal(
    notRead.size,
    (after.length - read) / MIB,
    'every region not read is left as it was',
  );
  t.diagnostic(`${untouched} of ${after.length / MIB} regions left as they were`);

  // With --zero-free (a new job: it can't change for the one that ran) those are zeros.
  const z = await runCli(
    ['clone', file, drive.path, '--used-only', '--zero-free', '--fresh', '--yes', '--json'],
    { db: env.db },
  );
  assert.equal(z.code, 0, explain(z));
  execFileSync('blockdev', ['--flushbufs', drive.path]);
  const zeroed = fs.readFileSync(drive.file);
  for (let at = 0; at < zeroed.length; at += MIB) {
    const want = notRead.has(at / MIB) ? zero : src.subarray(at, at + MIB);
    assert.ok(zeroed.subarray(at, at + MIB).equals(want), `region ${at / MIB}: zeros or copied`);
  }
  assertCopied(env, drive.path, parts, (m) => t.diagnostic(m));
});
