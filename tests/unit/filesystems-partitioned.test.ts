// The per-partition layer (sourceUsedSpace) on disk images whose partitions hold file
// systems made by their own tools (made apart, then written in at their offsets):
// each partition read through its own map, swap cut to its header page, an unknown
// kind copied whole, an empty one skipped, the tables and gaps kept, nothing after
// the last partition but the backup GPT; MBR logical partitions numbered from 5. A
// copy of only those bytes over garbage passes every checker with every file. What
// can't be trusted is refused with the partition named.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import {
  FilesystemRefused,
  type SourceUsedSpace,
  sourceUsedSpace,
  UsedSpaceRefused,
} from '../../engine/filesystems';
import type { Range } from '../../engine/geometry';
import { readRange, sha256, tempDir, writeRandomFile } from '../helpers/files';
import {
  type PartKind,
  assertInside,
  have,
  imageOfParts,
  makePart,
  ntfsAttribute,
  partitionsOf,
  passes,
  patch,
  run,
  total,
  withDevice,
} from '../helpers/used-space';

const KiB = 1024;
const MiB = 1024 * KiB;

const missing =
  !have('sfdisk', 'mkfs.ext4', 'debugfs', 'e2fsck', 'mkntfs', 'ntfscp', 'ntfscat', 'ntfsfix') ||
  !have('mkfs.exfat', 'fsck.exfat', 'mkfs.vfat', 'fsck.vfat', 'mcopy', 'mkswap')
    ? 'a partitioning or file system tool is missing'
    : false;

const tmp = tempDir('drivetwin-fs3-');
after(() => tmp.cleanup());
const at = (name: string): string => path.join(tmp.dir, name);

const FILE = at('data.bin');
const scanDisk = (image: string): Promise<SourceUsedSpace | null> =>
  withDevice(image, sourceUsedSpace);

/** Copies only `used` of `image` over random garbage, and returns partition `n` of the copy apart. */
function copiedPartition(
  image: string,
  used: Range[],
  parts: Map<number, Range>,
  n: number,
): string {
  const copy = at('copy.img');
  writeRandomFile(copy, fs.statSync(image).size, 77);
  const fd = fs.openSync(copy, 'r+');
  for (const r of used)
    fs.writeSync(fd, readRange(image, r.offset, r.length), 0, r.length, r.offset);
  fs.closeSync(fd);
  const out = at(`copied-${n}.img`);
  fs.writeFileSync(out, readRange(copy, parts.get(n)!.offset, parts.get(n)!.length));
  return out;
}

const KINDS: PartKind[] = ['ext4', 'ntfs', 'exfat', 'fat16', 'swap', 'raw', 'empty'];

/** A file system made apart holding FILE, written into `image` at partition `n`. */
function placePart(image: string, parts: Map<number, Range>, n: number, kind: PartKind): string {
  const made = at(`part-${n}-${kind}.img`);
  makePart(made, kind, parts.get(n)!.length, [FILE]);
  patch(image, parts.get(n)!.offset, fs.readFileSync(made));
  return made;
}

test(
  'GPT: each partition by its own map, swap cut, unknown whole, empty skipped, tables kept',
  { skip: missing },
  async () => {
    writeRandomFile(FILE, 3 * MiB + 17, 60);
    const image = at('gpt.img');
    const parts = imageOfParts(image, 160 * MiB, 16 * MiB, KINDS, [FILE]);

    const u = (await scanDisk(image))!;
    assert.equal(u.table, 'gpt');
    assert.deepEqual(
      u.areas.map((a) => [a.partition, a.fs, a.copy]),
      [
        [1, 'ext4', 'used'],
        [2, 'ntfs', 'used'],
        [3, 'exfat', 'used'],
        [4, 'fat16', 'used'],
        [5, 'swap', 'skipped'],
        [6, null, 'whole'],
        [7, null, 'skipped'],
      ],
    );
    const p = (n: number): Range => parts.get(n)!;
    assertInside(u.used, 0, p(1).offset, 'the MBR, the GPT and the gap before partition 1');
    assertInside(u.used, p(5).offset, 4 * KiB, "swap's header page");
    assert.ok(
      !u.used.some(
        (r) => r.offset < p(5).offset + p(5).length && r.offset + r.length > p(5).offset + 4 * KiB,
      ),
    );
    assertInside(u.used, p(6).offset, p(6).length, 'the partition of no known kind');
    assert.ok(
      !u.used.some(
        (r) => r.offset < p(7).offset + p(7).length && r.offset + r.length > p(7).offset,
      ),
      'the empty one',
    );
    const lastEnd = p(7).offset + p(7).length;
    const backup = 33 * 512;
    assertInside(u.used, 160 * MiB - backup, backup, 'the backup GPT');
    assert.equal(
      u.afterLastBytes,
      160 * MiB - lastEnd - backup,
      'after the last partition: left out',
    );
    assert.equal(total(u.used.filter((r) => r.offset >= lastEnd)), backup);

    passes('e2fsck', ['-fn', copiedPartition(image, u.used, parts, 1)]);
    const ext = copiedPartition(image, u.used, parts, 1);
    run('debugfs', ['-R', `dump /data.bin ${at('ext.out')}`, ext]);
    assert.equal(sha256(at('ext.out')), sha256(FILE));
    const ntfs = copiedPartition(image, u.used, parts, 2);
    passes('ntfsfix', ['-n', ntfs]);
    fs.writeFileSync(
      at('ntfs.out'),
      execFileSync('ntfscat', [ntfs, 'data.bin'], { maxBuffer: 64 * MiB }),
    );
    assert.equal(sha256(at('ntfs.out')), sha256(FILE));
    passes('fsck.exfat', ['-n', copiedPartition(image, u.used, parts, 3)]);
    const fat = copiedPartition(image, u.used, parts, 4);
    passes('fsck.vfat', ['-n', fat]);
    run('mcopy', ['-n', '-i', fat, '::/data.bin', at('fat.out')]);
    assert.equal(sha256(at('fat.out')), sha256(FILE));
    const swap = copiedPartition(image, u.used, parts, 5);
    assert.match(
      run('blkid', ['-o', 'export', swap]),
      /TYPE=swap/,
      'the copy is still swap, its UUID kept',
    );
  },
);

test(
  'MBR: logical partitions numbered from 5, their tables kept; refusals name the partition',
  { skip: missing },
  async () => {
    const image = at('mbr.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 80 * MiB);
    run(
      'sfdisk',
      ['--quiet', image],
      'label: dos\nsize=16M, type=e\ntype=5\nsize=16M, type=83\nsize=16M, type=7\n',
    );
    const parts = partitionsOf(image);
    assert.deepEqual([...parts.keys()], [1, 2, 5, 6]);
    placePart(image, parts, 1, 'fat16');
    placePart(image, parts, 5, 'ext4');
    placePart(image, parts, 6, 'ntfs');
    const u = (await scanDisk(image))!;
    assert.deepEqual(
      u.areas.map((a) => [a.partition, a.fs, a.copy]),
      [
        [1, 'fat16', 'used'],
        [5, 'ext4', 'used'],
        [6, 'ntfs', 'used'],
      ],
    );
    // Each logical partition's table (EBR): the first at the extended partition's start,
    // the next where the first's second entry says, relative to that start.
    const extended = readRange(image, 446 + 16, 16).readUInt32LE(8) * 512;
    const ebr1 = extended;
    const ebr2 = extended + readRange(image, ebr1 + 462, 16).readUInt32LE(8) * 512;
    for (const ebr of [ebr1, ebr2]) assertInside(u.used, ebr, 512, `the table at ${ebr}`);

    // An NTFS marked dirty in partition 6: refused, named.
    const info = ntfsAttribute(image, parts.get(6)!.offset, 3, 0x70);
    const flags = info + readRange(image, info + 20, 2).readUInt16LE(0) + 10;
    const before = readRange(image, flags, 1);
    patch(image, flags, Buffer.from([before[0] | 1]));
    await assert.rejects(scanDisk(image), (e: unknown) => {
      assert.ok(e instanceof FilesystemRefused);
      assert.match(e.message, /^partition 6 of .*mbr\.img: ntfs filesystem refused .*marked dirty/);
      return true;
    });
    patch(image, flags, before);

    // The second EBR pointing back at the first: a loop, refused rather than followed.
    const link = readRange(image, ebr1 + 462, 16);
    patch(image, ebr2 + 462, link);
    await assert.rejects(
      scanDisk(image),
      (e: unknown) =>
        e instanceof UsedSpaceRefused && /extended partition/.test((e as Error).message),
    );
  },
);

test(
  'a partition that ends past the end of the image is refused, named',
  { skip: missing },
  async () => {
    const image = at('short.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 64 * MiB);
    run('sfdisk', ['--quiet', image], 'label: dos\nsize=16M, type=83\nsize=32M, type=83\n');
    fs.truncateSync(image, 40 * MiB);
    await assert.rejects(
      scanDisk(image),
      /partition 2 of .*short\.img ends at byte \d+, past the end of the source/,
    );
  },
);
