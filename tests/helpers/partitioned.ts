// Partitioned disk images for tests, made with the system's own tools: sgdisk or sfdisk
// for the table, mkfs.ext4 (with its files given by -d) and mkfs.vfat + mcopy for the
// file systems; and the checks those tools make of a copy (sgdisk -v, fsck).

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { sha256, writeRandomFile } from './files';
import type { Workspace } from './workspace';

const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;

const TOOLS = ['sgdisk', 'sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'fsck.ext4', 'fsck.vfat'];

/** True when the partitioning and file system tools are there; else skipped (failed under CI=true). */
export function requireTools(t: TestContext): boolean {
  const missing = TOOLS.filter(
    (c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).error !== undefined,
  );
  if (missing.length === 0) return true;
  if (process.env.CI === 'true') throw new Error(`CI requires ${missing.join(', ')}`);
  t.skip(`${missing.join(', ')} not installed`);
  return false;
}

export const run = (cmd: string, args: string[], input?: string): string =>
  execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });

/** A partition as the table says: 1-based number, first byte, length. */
export interface Part {
  number: number;
  offset: number;
  length: number;
}

/** The partitions of a disk or image, from `sfdisk --json`. */
export function partsOf(disk: string): Part[] {
  const json = JSON.parse(run('sfdisk', ['--json', disk])) as {
    partitiontable: { sectorsize?: number; partitions: Array<{ start: number; size: number }> };
  };
  const ss = json.partitiontable.sectorsize ?? 512;
  return json.partitiontable.partitions.map((p, i) => ({
    number: i + 1,
    offset: p.start * ss,
    length: p.size * ss,
  }));
}

/** What `sfdisk --json` says of a table, but the device names: label, identifier, partitions. */
export function tableOf(disk: string): unknown {
  const { partitiontable: t } = JSON.parse(run('sfdisk', ['--json', disk])) as {
    partitiontable: { label: string; id: string; partitions: Array<Record<string, unknown>> };
  };
  return {
    label: t.label,
    id: t.id,
    partitions: t.partitions.map(({ start, size, type, uuid }) => ({ start, size, type, uuid })),
  };
}

/** The kernel reads the table of loop device `dev` again (its partitions appear as devp1, …). */
export function rescan(dev: string, partitions = 1): void {
  run('blockdev', ['--flushbufs', dev]);
  // devtmpfs makes the nodes (there may be no udev to wait for): wait for each, asking
  // again now and then (on a loaded machine a node was still missing after 5 s).
  const nodes = Array.from({ length: partitions }, (_, i) => `${dev}p${i + 1}`);
  const until = Date.now() + 20_000;
  for (let asked = 0; ;) {
    if (Date.now() >= asked + 4000) {
      run('partx', ['--update', dev]);
      asked = Date.now();
    }
    if (nodes.every((n) => fs.existsSync(n)) || Date.now() > until) return;
    spawnSync('sleep', ['0.05']);
  }
}

/**
 * A sparse image of `size` bytes with the table made by `partition(file)`: an ext4 file
 * system holding `files` on partition 1, a FAT one holding them too on partition 2.
 */
export function partitionedImage(
  env: Workspace,
  name: string,
  size: number,
  partition: (file: string) => void,
): { file: string; files: string } {
  const file = env.file(name);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
  partition(file);
  const files = env.file(`${name}-files`);
  fs.mkdirSync(files, { recursive: true });
  writeRandomFile(path.join(files, 'random.bin'), 3 * MIB, 90);
  fs.writeFileSync(path.join(files, 'hello.txt'), 'partition-aware cloning\n');
  const loop = env.attach(file, { partscan: true });
  try {
    rescan(loop.path);
    run('mkfs.ext4', ['-q', '-F', '-d', files, `${loop.path}p1`]);
    run('mkfs.vfat', [`${loop.path}p2`]);
    run('mcopy', [
      '-i',
      `${loop.path}p2`,
      path.join(files, 'random.bin'),
      path.join(files, 'hello.txt'),
      '::/',
    ]);
    run('blockdev', ['--flushbufs', loop.path]);
  } finally {
    loop.detach();
  }
  return { file, files };
}

/** A GPT: ext4 from 1 MiB, FAT after it, a third partition up to `end` (exclusive). */
export function gptLayout(end: number): (file: string) => void {
  return (file) =>
    void run('sgdisk', [
      '-o',
      '-n',
      '1:2048:+600M',
      '-t',
      '1:8300',
      '-n',
      '2:0:+200M',
      '-t',
      '2:0700',
      '-n',
      `3:0:${end / 512 - 1}`,
      '-t',
      '3:8300',
      file,
    ]);
}

/** An MBR: ext4 from 1 MiB, FAT after it, the last ending at `end`. */
export function mbrLayout(end: number): (file: string) => void {
  return (file) =>
    void run(
      'sfdisk',
      ['--quiet', file],
      `label: dos\nstart=2048, size=${(600 * MIB) / 512}, type=83\n` +
        `size=${(200 * MIB) / 512}, type=c\nsize=${(end - 801 * MIB) / 512}, type=83\n`,
    );
}

/** `sgdisk -v` finds nothing wrong. */
export function assertSgdiskClean(disk: string): void {
  const out = run('sgdisk', ['-v', disk]);
  assert.match(out, /No problems found/, `sgdisk -v ${disk}:\n${out}`);
}

/**
 * Every partition of `copy` holds what the source's does (sha256 of its bytes), its
 * file systems pass fsck, and their files read back as written.
 */
export function assertPartitionsCopied(source: string, copy: string, files: string): void {
  const theirs = partsOf(source);
  const mine = partsOf(copy);
  assert.deepEqual(mine, theirs, 'the same partitions, at the same places');
  rescan(copy, mine.length);
  for (const p of mine) {
    assert.equal(sha256(`${copy}p${p.number}`), partitionSha(source, p), `partition ${p.number}`);
  }
  run('fsck.ext4', ['-f', '-n', `${copy}p1`]);
  run('fsck.vfat', ['-n', `${copy}p2`]);
  const want = fs.readFileSync(path.join(files, 'hello.txt'), 'utf8');
  assert.equal(run('debugfs', ['-R', 'cat /hello.txt', `${copy}p1`]).trim(), want.trim());
  assert.equal(run('mtype', ['-i', `${copy}p2`, '::/hello.txt']).replace(/\r/g, ''), want);
}

function partitionSha(file: string, p: Part): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(4 * MIB);
  try {
    for (let at = 0; at < p.length; at += buf.length) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, p.length - at), p.offset + at);
      hash.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}
