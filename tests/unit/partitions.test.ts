// The partition-table module against the real tools: tables made by sgdisk and sfdisk
// are read as they say, and what the module writes for another disk size or with new
// identifiers is what `sgdisk -v` calls clean and what the verify's check accepts.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { ImageFile } from '../../engine/io/image-file';
import { tableProblem } from '../../engine/partitions/check';
import { crc32 } from '../../engine/partitions/crc32';
import { type TableWrites, tableWrites } from '../../engine/partitions/rewrite';
import { type PartitionTable, readPartitionTable } from '../../engine/partitions/table';
import { tempDir, writeRandomFile } from '../helpers/files';

const MIB = 1024 * 1024;
const tmp = tempDir('drivetwin-partitions-');
after(() => tmp.cleanup());
let serial = 0;
const file = (name: string): string => path.join(tmp.dir, `${++serial}-${name}`);

const have = (cmd: string): boolean =>
  spawnSync(cmd, ['--version'], { stdio: 'ignore' }).error === undefined;
const noTools = ['sgdisk', 'sfdisk', 'mkfs.vfat'].every(have)
  ? false
  : 'gdisk, fdisk and dosfstools are needed';

const run = (cmd: string, args: string[], input?: string): string =>
  execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });

/** An empty image of `mib` MiB partitioned by sgdisk (`args`) or sfdisk (`script`). */
function gptImage(mib: number, args: string[]): string {
  const f = file('gpt.img');
  fs.writeFileSync(f, '');
  fs.truncateSync(f, mib * MIB);
  run('sgdisk', ['-o', ...args, f]);
  return f;
}

function mbrImage(mib: number, script: string): string {
  const f = file('mbr.img');
  fs.writeFileSync(f, '');
  fs.truncateSync(f, mib * MIB);
  run('sfdisk', ['--quiet', f], script);
  return f;
}

async function tableOf(f: string): Promise<ReturnType<typeof readPartitionTable>> {
  const image = ImageFile.open(f, false);
  try {
    return await readPartitionTable(image);
  } finally {
    await image.close();
  }
}

async function usable(f: string): Promise<PartitionTable> {
  const t = await tableOf(f);
  assert.ok(t && t.kind !== 'damaged', `a usable table in ${f}: ${JSON.stringify(t)}`);
  return t;
}

/** What a clone writes: the source's first `copyEnd` bytes, then the destination's own tables. */
function cloneWith(source: string, size: number, copyEnd: number, writes: TableWrites): string {
  const f = file('copy.img');
  fs.writeFileSync(f, '');
  fs.truncateSync(f, size);
  const fd = fs.openSync(f, 'r+');
  const src = fs.openSync(source, 'r');
  try {
    const buf = Buffer.alloc(MIB);
    for (let at = 0; at < copyEnd; at += MIB) {
      const n = fs.readSync(src, buf, 0, Math.min(MIB, copyEnd - at), at);
      fs.writeSync(fd, buf, 0, n, at);
    }
    for (const p of [...writes.inCopy, ...writes.pastCopy])
      fs.writeSync(fd, p.bytes, 0, p.bytes.length, p.offset);
  } finally {
    fs.closeSync(fd);
    fs.closeSync(src);
  }
  return f;
}

async function problemOf(
  table: PartitionTable,
  f: string,
  newIds: boolean,
): Promise<string | null> {
  const image = ImageFile.open(f, false);
  try {
    return await tableProblem(table, image, newIds);
  } finally {
    await image.close();
  }
}

function sgdiskClean(f: string): void {
  const out = run('sgdisk', ['-v', f]);
  assert.match(out, /No problems found/, out);
}

/** `sgdisk -p`'s partition lines. */
const partitionLines = (f: string): string =>
  run('sgdisk', ['-p', f])
    .split('\n')
    .filter((l) => /^\s+\d+\s+\d+\s+\d+/.test(l))
    .join('\n');

test('CRC-32 is the IEEE one GPT uses', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  assert.equal(crc32(Buffer.alloc(0)), 0);
});

test(
  'a GPT made by sgdisk: where its partitions end, what a fitted target must hold',
  { skip: noTools },
  async () => {
    const f = gptImage(64, ['-n', '1:2048:+20M', '-n', '2:0:+10M']);
    const t = await usable(f);
    assert.equal(t.kind, 'gpt');
    assert.equal(t.sectorSize, 512);
    assert.equal(t.partitionsEnd, (2048 + 30 * 2048) * 512);
    assert.equal(
      t.fitSize,
      t.partitionsEnd + 33 * 512,
      'the backup: 32 sectors of entries and a header',
    );
    assert.deepEqual(t.head, { offset: 0, length: 34 * 512 });
    assert.deepEqual(t.backup, { offset: 64 * MIB - 33 * 512, length: 33 * 512 });
  },
);

test(
  'fitted to a smaller disk, and moved to a bigger one: sgdisk -v finds no problem',
  { skip: noTools },
  async () => {
    const source = gptImage(64, ['-n', '1:2048:+20M', '-n', '2:0:+10M', '-t', '2:0700']);
    const t = await usable(source);
    for (const [what, size, copyEnd] of [
      ['fitted, just big enough', t.fitSize, t.partitionsEnd],
      ['fitted, 40 MiB', 40 * MIB, t.partitionsEnd],
      ['the whole source onto 96 MiB', 96 * MIB, 64 * MIB],
    ] as const) {
      const writes = tableWrites(t, copyEnd, size, false);
      const copy = cloneWith(source, size, copyEnd, writes);
      sgdiskClean(copy);
      assert.equal(partitionLines(copy), partitionLines(source), `${what}: the same partitions`);
      assert.equal(await problemOf(t, copy, false), null, what);
      const lastLba = size / 512 - 1;
      assert.match(
        run('sgdisk', ['-p', copy]),
        new RegExp(`last usable sector is ${lastLba - 33}\\b`),
        what,
      );
    }
    // The source's backup is not left in the middle of the bigger disk.
    const writes = tableWrites(t, 64 * MIB, 96 * MIB, false);
    const copy = cloneWith(source, 96 * MIB, 64 * MIB, writes);
    const old = Buffer.alloc(33 * 512);
    const fd = fs.openSync(copy, 'r');
    fs.readSync(fd, old, 0, old.length, 64 * MIB - old.length);
    fs.closeSync(fd);
    assert.ok(
      old.every((b) => b === 0),
      'the stale backup GPT is cleared',
    );
  },
);

test('the same size and the same ids: nothing is rewritten', { skip: noTools }, async () => {
  const source = gptImage(64, ['-n', '1:2048:+20M']);
  const t = await usable(source);
  assert.deepEqual(tableWrites(t, 64 * MIB, 64 * MIB, false), { inCopy: [], pastCopy: [] });
  const mbr = await usable(mbrImage(32, 'label: dos\nstart=2048, size=20480, type=83\n'));
  assert.deepEqual(tableWrites(mbr, 32 * MIB, 32 * MIB, false), { inCopy: [], pastCopy: [] });
});

test(
  'a bigger disk has its last MiB cleared: an old backup GPT there is gone',
  { skip: noTools },
  async () => {
    const mbr = await usable(mbrImage(32, 'label: dos\nstart=2048, size=20480, type=83\n'));
    const writes = tableWrites(mbr, 32 * MIB, 48 * MIB, false);
    assert.deepEqual(writes.inCopy, []);
    assert.deepEqual(
      writes.pastCopy.map((p) => [p.offset, p.bytes.length, p.bytes.every((b) => b === 0)]),
      [[47 * MIB, MIB, true]],
    );
  },
);

test(
  'new identifiers: fresh GPT disk and partition GUIDs, still clean',
  { skip: noTools },
  async () => {
    const source = gptImage(64, ['-n', '1:2048:+20M', '-n', '2:0:+10M']);
    const t = await usable(source);
    const copy = cloneWith(source, 64 * MIB, 64 * MIB, tableWrites(t, 64 * MIB, 64 * MIB, true));
    sgdiskClean(copy);
    const guid = (f: string, args: string[], what: RegExp): string =>
      what.exec(run('sgdisk', [...args, f]))![1];
    const disk = /Disk identifier \(GUID\): (\S+)/;
    const unique = /Partition unique GUID: (\S+)/;
    assert.notEqual(guid(copy, ['-p'], disk), guid(source, ['-p'], disk));
    for (const n of ['1', '2']) {
      assert.notEqual(
        guid(copy, ['-i', n], unique),
        guid(source, ['-i', n], unique),
        `partition ${n}`,
      );
    }
    assert.equal(await problemOf(t, copy, true), null);
    assert.match((await problemOf(t, copy, false)) ?? '', /GUIDs differ/);
    assert.match((await problemOf(t, source, true)) ?? '', /still carries GUIDs/);
  },
);

test('an MBR made by sfdisk: its end, a new disk signature', { skip: noTools }, async () => {
  const source = mbrImage(
    32,
    'label: dos\nlabel-id: 0x12345678\nstart=2048, size=20480, type=83\nstart=22528, size=10240, type=c\n',
  );
  const t = await usable(source);
  assert.equal(t.kind, 'mbr');
  assert.equal(t.partitionsEnd, (22528 + 10240) * 512);
  assert.equal(t.fitSize, t.partitionsEnd, 'an MBR has nothing after its partitions');
  assert.equal(t.mbr.diskSignature, 0x12345678);
  const copy = cloneWith(
    source,
    t.fitSize,
    t.partitionsEnd,
    tableWrites(t, t.partitionsEnd, t.fitSize, true),
  );
  assert.match(run('sfdisk', ['-d', copy]), /label-id: 0x(?!12345678)[0-9a-f]{8}/);
  assert.equal(await problemOf(t, copy, true), null);
  assert.match((await problemOf(t, copy, false)) ?? '', /signature differs/);
});

test(
  'no table: a bare FAT file system, random data; a damaged GPT is not rewritten',
  { skip: noTools },
  async () => {
    const fat = file('fat.img');
    run('mkfs.vfat', ['-C', fat, String(32 * 1024)]);
    assert.equal(await tableOf(fat), null, 'a FAT boot sector ends in 0x55AA too');
    const random = file('random.img');
    writeRandomFile(random, 4 * MIB, 7);
    assert.equal(await tableOf(random), null);
    const damaged = gptImage(16, ['-n', '1:2048:+4M']);
    const fd = fs.openSync(damaged, 'r+');
    fs.writeSync(fd, Buffer.from([0xff]), 0, 1, 512 + 56);
    fs.closeSync(fd);
    const t = await tableOf(damaged);
    assert.equal(t?.kind, 'damaged');
  },
);
