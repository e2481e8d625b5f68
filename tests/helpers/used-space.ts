// Checks on a used-space scan (engine/filesystems) of an image file: the scan itself,
// its ranges well formed and covering what they must, and a copy of only those ranges.
// And partitioned images made without root: each file system made apart by its own
// tools (files put in by mkfs.ext4 -d, ntfscp, mcopy), then written in at its offset.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { usedSpace, type UsedSpace } from '../../engine/filesystems';
import type { Range } from '../../engine/geometry';
import { ImageFile } from '../../engine/io/image-file';
import { readRange, writeRandomFile } from './files';

const MiB = 1024 * 1024;

export async function scan(image: string): Promise<UsedSpace | null> {
  const dev = ImageFile.open(image, false);
  try {
    return await usedSpace(dev);
  } finally {
    await dev.close();
  }
}

export async function withDevice<T>(image: string, fn: (dev: ImageFile) => Promise<T>): Promise<T> {
  const dev = ImageFile.open(image, false);
  try {
    return await fn(dev);
  } finally {
    await dev.close();
  }
}

export const total = (ranges: Range[]): number => ranges.reduce((n, r) => n + r.length, 0);

/** Sorted, merged, within the size. */
export function assertWellFormed(u: UsedSpace): void {
  let end = -1;
  for (const r of u.used) {
    assert.ok(r.length > 0 && r.offset > end, `ranges sorted and merged at ${r.offset}`);
    end = r.offset + r.length;
  }
  assert.ok(end <= u.size);
}

/** [offset, offset + length) lies inside the used ranges. */
export function assertInside(used: Range[], offset: number, length: number, what: string): void {
  let lo = 0;
  let hi = used.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (used[mid].offset <= offset) lo = mid;
    else hi = mid - 1;
  }
  const r = used[lo];
  assert.ok(
    r && r.offset <= offset && offset + length <= r.offset + r.length,
    `${what}: bytes ${offset}+${length} are not marked used`,
  );
}

/** A destination full of random bytes with only the used ranges copied from the source. */
export function copyUsed(source: string, dest: string, u: UsedSpace, garbage: boolean): void {
  if (garbage) writeRandomFile(dest, u.size, 999);
  else {
    fs.rmSync(dest, { force: true });
    fs.writeFileSync(dest, '');
    fs.truncateSync(dest, u.size);
  }
  const src = fs.openSync(source, 'r');
  const dst = fs.openSync(dest, 'r+');
  const buf = Buffer.alloc(4 * MiB);
  try {
    for (const r of u.used) {
      for (let pos = r.offset; pos < r.offset + r.length; pos += buf.length) {
        const n = Math.min(buf.length, r.offset + r.length - pos);
        assert.equal(fs.readSync(src, buf, 0, n, pos), n);
        fs.writeSync(dst, buf, 0, n, pos);
      }
    }
  } finally {
    fs.closeSync(src);
    fs.closeSync(dst);
  }
}

/** A tool's output; throws when it fails. */
export const run = (cmd: string, args: string[], input?: string): string =>
  execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });

/** Every one of these tools is installed. */
export const have = (...cmds: string[]): boolean =>
  cmds.every((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).error === undefined);

/** A checker passes (exit 0); its output is the failure's message otherwise. */
export function passes(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
}

/** What a partition made apart holds: a file system, swap, random bytes (raw) or nothing. */
export type PartKind = 'ext4' | 'ntfs' | 'exfat' | 'fat16' | 'fat32' | 'swap' | 'raw' | 'empty';

/** A file system of `size` bytes in a file of its own, holding `content` (not exFAT: no tool puts files in). */
export function makePart(file: string, kind: PartKind, size: number, content: string[] = []): void {
  if (kind === 'raw') return writeRandomFile(file, size, size % 9973);
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
  if (kind === 'ext4') {
    const dir = `${file}-tree`;
    fs.mkdirSync(dir, { recursive: true });
    for (const c of content) fs.copyFileSync(c, path.join(dir, path.basename(c)));
    run('mkfs.ext4', ['-q', '-F', '-d', dir, file]);
  } else if (kind === 'ntfs') {
    run('mkntfs', ['-Q', '-F', '-q', file]);
    for (const c of content) run('ntfscp', ['-f', file, c, path.basename(c)]);
  } else if (kind === 'exfat') run('mkfs.exfat', [file]);
  else if (kind === 'fat16' || kind === 'fat32') {
    run('mkfs.vfat', ['-F', kind.slice(3), file]);
    if (content.length) run('mcopy', ['-i', file, ...content, '::/']);
  } else if (kind === 'swap') run('mkswap', ['-q', file]);
}

/** Writes `data` into `image` at `offset` (the rest of the image stays as it was). */
export function patch(image: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(image, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** The partitions of a table as sfdisk reports them: number → where. */
export function partitionsOf(image: string): Map<number, Range> {
  const json = JSON.parse(run('sfdisk', ['--json', image])) as {
    partitiontable: { partitions: Array<{ node: string; start: number; size: number }> };
  };
  return new Map(
    json.partitiontable.partitions.map((p) => [
      Number(/(\d+)$/.exec(p.node)![1]),
      { offset: p.start * 512, length: p.size * 512 },
    ]),
  );
}

/**
 * A sparse image of `size` with a GPT of one partition of `partSize` per kind, each
 * made apart and written in (an 'empty' one never written: a hole).
 */
export function imageOfParts(
  image: string,
  size: number,
  partSize: number,
  kinds: PartKind[],
  content: string[] = [],
): Map<number, Range> {
  fs.rmSync(image, { force: true });
  fs.writeFileSync(image, '');
  fs.truncateSync(image, size);
  const script = kinds.map(() => `size=${partSize / 512}\n`).join('');
  run('sfdisk', ['--quiet', image], `label: gpt\n${script}`);
  const parts = partitionsOf(image);
  kinds.forEach((kind, i) => {
    if (kind === 'empty') return;
    const made = `${image}.part${i + 1}`;
    makePart(made, kind, partSize, content);
    patch(image, parts.get(i + 1)!.offset, fs.readFileSync(made));
    fs.rmSync(made);
  });
  return parts;
}

/**
 * Where attribute `type` of MFT record `n` (one of the first, in the MFT's first run;
 * or its copy in $MFTMirr) of the NTFS at `base` in `image` lies — read here from the
 * boot sector and the record, not by the engine.
 */
export function ntfsAttribute(
  image: string,
  base: number,
  n: number,
  type: number,
  mirror = false,
): number {
  const boot = readRange(image, base, 512);
  const cluster = boot.readUInt16LE(11) * boot[13];
  const code = boot.readInt8(0x40);
  const recordSize = code < 0 ? 2 ** -code : code * cluster;
  const mft = Number(boot.readBigUInt64LE(mirror ? 0x38 : 0x30)) * cluster;
  const record = base + mft + n * recordSize;
  const raw = readRange(image, record, recordSize);
  assert.equal(raw.toString('latin1', 0, 4), 'FILE', `MFT record ${n}`);
  for (let at = raw.readUInt16LE(0x14); raw.readUInt32LE(at) !== 0xffffffff;) {
    if (raw.readUInt32LE(at) === type) return record + at;
    at += raw.readUInt32LE(at + 4);
  }
  throw new Error(`MFT record ${n} has no attribute 0x${type.toString(16)}`);
}

/** Marks the NTFS at `base` dirty, in $Volume and in its mirror, as Windows does. */
export function markNtfsDirty(image: string, base: number): void {
  for (const mirror of [false, true]) {
    const info = ntfsAttribute(image, base, 3, 0x70, mirror);
    const flagsAt = info + readRange(image, info + 20, 2).readUInt16LE(0) + 10;
    const flags = readRange(image, flagsAt, 2);
    patch(image, flagsAt, Buffer.from([flags[0] | 1, flags[1]]));
  }
}
