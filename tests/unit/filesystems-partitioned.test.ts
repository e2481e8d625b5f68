// The per-partition layer (sourceUsedSpace) on disk images whose partitions hold file
// systems made by their own tools (made apart, then written in at their offsets):
// each partition read through its own map, swap cut to its header page, an unknown
// kind copied whole, an empty one skipped, the tables and gaps kept, nothing after
// the last partition but the backup GPT; MBR logical partitions numbered from 5. A
// copy of only those bytes over garbage passes every checker with every file. What
// can't be trusted is refused with the partition named.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
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
import { assertInside, total, withDevice } from '../helpers/used-space';

const KiB = 1024;
const MiB = 1024 * KiB;

const have = (...cmds: string[]): boolean =>
  cmds.every((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).error === undefined);
const missing =
  !have('sfdisk', 'mkfs.ext4', 'debugfs', 'e2fsck', 'mkntfs', 'ntfscp', 'ntfscat', 'ntfsfix') ||
  !have('mkfs.exfat', 'fsck.exfat', 'mkfs.vfat', 'fsck.vfat', 'mcopy', 'mkswap')
    ? 'a partitioning or file system tool is missing'
    : false;

const run = (cmd: string, args: string[], input?: string): string =>
  execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
const ok = (cmd: string, args: string[]): void => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
};

const tmp = tempDir('drivetwin-fs3-');
after(() => tmp.cleanup());
const at = (name: string): string => path.join(tmp.dir, name);

const FILE = at('data.bin');
const scanDisk = (image: string): Promise<SourceUsedSpace | null> =>
  withDevice(image, sourceUsedSpace);

/** A file system of `size` bytes made apart, with FILE on it (swap and raw: none). */
function makePart(kind: string, size: number, seed: number): string {
  const f = at(`part-${kind}-${seed}.img`);
  if (kind === 'raw') {
    writeRandomFile(f, size, seed);
    return f;
  }
  fs.writeFileSync(f, '');
  fs.truncateSync(f, size);
  if (kind === 'ext4') {
    const dir = at(`tree-${seed}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(FILE, path.join(dir, 'data.bin'));
    run('mkfs.ext4', ['-q', '-F', '-d', dir, f]);
  } else if (kind === 'ntfs') {
    run('mkntfs', ['-Q', '-F', '-q', f]);
    run('ntfscp', ['-f', f, FILE, 'data.bin']);
  } else if (kind === 'exfat') run('mkfs.exfat', [f]);
  else if (kind === 'fat16') {
    run('mkfs.vfat', ['-F', '16', f]);
    run('mcopy', ['-i', f, FILE, '::/']);
  } else if (kind === 'swap') run('mkswap', ['-q', f]);
  return f;
}

/** Writes `data` into `image` at `offset` (the rest of the image stays as it was). */
function patch(image: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(image, 'r+');
  fs.writeSync(fd, data, 0, data.length, offset);
  fs.closeSync(fd);
}

/** Writes the file system made apart in `part` into `image` at `offset`. */
const place = (image: string, part: string, offset: number): void =>
  patch(image, offset, fs.readFileSync(part));

/** The partitions of a table as sfdisk reports them: number → [offset, length]. */
function partitions(image: string): Map<number, Range> {
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

const KINDS = ['ext4', 'ntfs', 'exfat', 'fat16', 'swap', 'raw', 'empty'];

test(
  'GPT: each partition by its own map, swap cut, unknown whole, empty skipped, tables kept',
  { skip: missing },
  async () => {
    writeRandomFile(FILE, 3 * MiB + 17, 60);
    const image = at('gpt.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 160 * MiB);
    const script = KINDS.map(() => 'size=16M\n').join('');
    run('sfdisk', ['--quiet', image], `label: gpt\n${script}`);
    const parts = partitions(image);
    KINDS.forEach((kind, i) => {
      if (kind !== 'empty')
        place(image, makePart(kind, 16 * MiB, 61 + i), parts.get(i + 1)!.offset);
    });

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

    ok('e2fsck', ['-fn', copiedPartition(image, u.used, parts, 1)]);
    const ext = copiedPartition(image, u.used, parts, 1);
    run('debugfs', ['-R', `dump /data.bin ${at('ext.out')}`, ext]);
    assert.equal(sha256(at('ext.out')), sha256(FILE));
    const ntfs = copiedPartition(image, u.used, parts, 2);
    ok('ntfsfix', ['-n', ntfs]);
    fs.writeFileSync(
      at('ntfs.out'),
      execFileSync('ntfscat', [ntfs, 'data.bin'], { maxBuffer: 64 * MiB }),
    );
    assert.equal(sha256(at('ntfs.out')), sha256(FILE));
    ok('fsck.exfat', ['-n', copiedPartition(image, u.used, parts, 3)]);
    const fat = copiedPartition(image, u.used, parts, 4);
    ok('fsck.vfat', ['-n', fat]);
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
    const parts = partitions(image);
    assert.deepEqual([...parts.keys()], [1, 2, 5, 6]);
    place(image, makePart('fat16', 16 * MiB, 71), parts.get(1)!.offset);
    place(image, makePart('ext4', 16 * MiB, 72), parts.get(5)!.offset);
    const ntfs = makePart('ntfs', 16 * MiB, 73);
    place(image, ntfs, parts.get(6)!.offset);
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
    const boot = readRange(ntfs, 0, 512);
    const cluster = boot.readUInt16LE(11) * boot[13];
    const record = parts.get(6)!.offset + Number(boot.readBigUInt64LE(0x30)) * cluster + 3 * 1024;
    const raw = readRange(image, record, 1024);
    let a = raw.readUInt16LE(0x14);
    while (raw.readUInt32LE(a) !== 0x70) a += raw.readUInt32LE(a + 4);
    const flags = record + a + raw.readUInt16LE(a + 20) + 10;
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
