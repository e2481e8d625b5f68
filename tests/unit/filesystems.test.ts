import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import {
  filesystemState,
  FilesystemRefused,
  freeRegions,
  identifySource,
  type UsedSpace,
} from '../../engine/filesystems';
import type { Range } from '../../engine/geometry';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import {
  assertInside,
  assertWellFormed,
  copyUsed,
  scan,
  total,
  withDevice,
} from '../helpers/used-space';

const KiB = 1024;
const MiB = 1024 * KiB;

const have = (cmd: string, ...args: string[]): boolean =>
  spawnSync(cmd, args.length ? args : ['-V'], { stdio: 'ignore' }).error === undefined;
const noExt = !['mkfs.ext4', 'debugfs', 'e2fsck', 'dumpe2fs'].every((c) => have(c))
  ? 'e2fsprogs is not installed'
  : false;
const noFat = !['mkfs.vfat', 'fsck.vfat', 'mcopy', 'mshowfat'].every((c) => have(c))
  ? 'dosfstools and mtools are not installed'
  : false;

const run = (cmd: string, args: string[]): string =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Exit status and output of a command that may fail. */
function status(cmd: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const tmp = tempDir('drivetwin-fs-');
after(() => tmp.cleanup());
const at = (name: string): string => path.join(tmp.dir, name);

// A tree of files: one big, many of scattered sizes (seeded), an empty one, nested dirs.
const TREE = at('tree');
const files: Array<{ rel: string; size: number; sha: string }> = [];
/** Files deleted after mkfs, leaving holes between used blocks; the others are kept. */
const deleted = (): typeof files => files.filter((f) => /f\d*[37]\.dat$/.test(f.rel));
const kept = (): typeof files => files.filter((f) => !deleted().includes(f));
before(() => {
  let seed = 12345;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  const entries: Array<[string, number]> = [
    ['big.bin', 24 * MiB + 777],
    ['empty', 0],
    ['one', 1],
  ];
  const dirs = ['a', 'a/b', 'c', 'c/d/e'];
  for (let i = 0; i < 24; i++)
    entries.push([
      `${dirs[i % dirs.length]}/f${i}.dat`,
      next() % (i % 5 === 0 ? 3 * MiB : 80 * KiB),
    ]);
  entries.forEach(([rel, size], i) => {
    const file = path.join(TREE, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    writeRandomFile(file, size, 100 + i);
    files.push({ rel, size, sha: sha256(file) });
  });
});

function makeExt(image: string, size: number, mkfs: string, options: string[]): void {
  fs.rmSync(image, { force: true });
  fs.writeFileSync(image, '');
  fs.truncateSync(image, size);
  run(mkfs, ['-q', '-F', ...options, '-d', TREE, image]);
}

/** Block size, block count, free blocks and group flags as dumpe2fs reports them. */
function dumpe2fs(image: string): { blockSize: number; used: number; uninitGroups: number } {
  const out = run('dumpe2fs', [image]);
  const field = (name: string): number =>
    Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(out)![1]);
  const blockSize = field('Block size');
  return {
    blockSize,
    used: (field('Block count') - field('Free blocks')) * blockSize,
    uninitGroups: out.match(/BLOCK_UNINIT/g)?.length ?? 0,
  };
}

interface ExtCase {
  name: string;
  mkfs: string;
  options: string[];
  size: number;
  fs: UsedSpace['fs'];
  /** Large sparse images: copy onto a sparse destination instead of random bytes. */
  sparse?: boolean;
}

const extCases: ExtCase[] = [
  {
    name: 'ext4 defaults (flex_bg, 64bit, metadata_csum)',
    mkfs: 'mkfs.ext4',
    options: [],
    size: 128 * MiB,
    fs: 'ext4',
  },
  {
    name: 'ext4 4K blocks without 64bit',
    mkfs: 'mkfs.ext4',
    options: ['-b', '4096', '-O', '^64bit'],
    size: 128 * MiB,
    fs: 'ext4',
  },
  {
    name: 'ext4 1K blocks without flex_bg',
    mkfs: 'mkfs.ext4',
    options: ['-b', '1024', '-O', '^flex_bg'],
    size: 128 * MiB,
    fs: 'ext4',
  },
  {
    name: 'ext4 gdt_csum instead of metadata_csum',
    mkfs: 'mkfs.ext4',
    options: ['-O', '^metadata_csum,^64bit,uninit_bg'],
    size: 96 * MiB,
    fs: 'ext4',
  },
  {
    // 384 groups of 8 MiB: 24 meta groups, each with its own descriptor block.
    name: 'ext4 meta_bg, 3 GiB in 1K blocks',
    mkfs: 'mkfs.ext4',
    options: ['-b', '1024', '-O', 'meta_bg,^resize_inode,^flex_bg'],
    size: 3072 * MiB,
    fs: 'ext4',
    sparse: true,
  },
  {
    name: 'ext4 bigalloc (16K clusters)',
    mkfs: 'mkfs.ext4',
    options: ['-b', '4096', '-O', 'bigalloc', '-C', '16384'],
    size: 128 * MiB,
    fs: 'ext4',
  },
  { name: 'ext3', mkfs: 'mkfs.ext3', options: [], size: 128 * MiB, fs: 'ext3' },
  { name: 'ext2', mkfs: 'mkfs.ext2', options: [], size: 128 * MiB, fs: 'ext2' },
  {
    name: 'ext4 2 GiB, 4K blocks, uninitialised groups',
    mkfs: 'mkfs.ext4',
    options: ['-b', '4096'],
    size: 2048 * MiB,
    fs: 'ext4',
    sparse: true,
  },
];

for (const c of extCases) {
  test(
    `${c.name}: used ranges hold every file, and copying only them gives a clean, identical filesystem`,
    { skip: noExt },
    async (t) => {
      const image = at('ext.img');
      const copy = at('ext-copy.img');
      makeExt(image, c.size, c.mkfs, c.options);
      for (const f of deleted()) run('debugfs', ['-w', '-R', `rm /${f.rel}`, image]);
      assert.equal(status('e2fsck', ['-fn', image]).code, 0, 'the source is clean');
      const info = dumpe2fs(image);
      const u = await scan(image);
      assert.ok(u, 'recognised');
      assert.equal(u.fs, c.fs);
      assert.equal(u.size, c.size);
      assert.equal(u.fsSize, c.size);
      assertWellFormed(u);
      // Exactly the filesystem's own accounting: blocks in use = count - free.
      assert.equal(total(u.used), info.used, 'used bytes agree with dumpe2fs');
      assert.ok(total(u.used) < 0.5 * c.size, `${total(u.used)} used of ${c.size}`);
      t.diagnostic(`${total(u.used)} of ${c.size} bytes used (${u.used.length} ranges)`);
      if (c.sparse) assert.ok(info.uninitGroups > 0, 'the image has BLOCK_UNINIT groups');

      for (const f of kept()) {
        if (f.size === 0) continue;
        const blocks = run('debugfs', ['-R', `blocks /${f.rel}`, image])
          .trim()
          .split(/\s+/)
          .map(Number);
        assert.ok(blocks.length >= Math.ceil(f.size / info.blockSize), f.rel);
        for (const b of blocks) assertInside(u.used, b * info.blockSize, info.blockSize, f.rel);
      }

      copyUsed(image, copy, u, !c.sparse);
      const fsck = status('e2fsck', ['-fn', copy]);
      assert.equal(fsck.code, 0, `e2fsck -fn on the copy:\n${fsck.out}`);
      for (const f of kept()) {
        const out = at('dumped');
        fs.rmSync(out, { force: true });
        run('debugfs', ['-R', `dump /${f.rel} ${out}`, copy]);
        assert.equal(sha256(out), f.sha, `${f.rel} is identical in the copy`);
      }
      fs.rmSync(copy, { force: true });
      fs.rmSync(image, { force: true });
    },
  );
}

test(
  'ext4: unclean states are refused with the reason, and reported by filesystemState',
  { skip: noExt },
  async () => {
    const image = at('unclean.img');
    const cases: Array<[string, RegExp]> = [
      ['ssv state 0', /not cleanly unmounted/],
      ['ssv state 3', /errors/],
      ['feature needs_recovery', /journal needs recovery/],
      ['ssv last_orphan 12', /orphan/],
    ];
    for (const [cmd, reason] of cases) {
      makeExt(image, 64 * MiB, 'mkfs.ext4', []);
      run('debugfs', ['-w', '-R', cmd, image]);
      await assert.rejects(
        scan(image),
        (e: unknown) =>
          e instanceof FilesystemRefused && e.kind === 'unclean' && reason.test(e.message),
        cmd,
      );
      const st = await withDevice(image, filesystemState);
      assert.equal(st?.clean, false, cmd);
      assert.match(st?.reason ?? '', reason);
    }
    makeExt(image, 64 * MiB, 'mkfs.ext4', []);
    assert.deepEqual(await withDevice(image, filesystemState), { fs: 'ext4', clean: true });
  },
);

test('ext4: a damaged block bitmap is refused by its checksum', { skip: noExt }, async () => {
  const image = at('damaged.img');
  makeExt(image, 64 * MiB, 'mkfs.ext4', []);
  const out = run('dumpe2fs', [image]);
  const bitmap = Number(/Block bitmap at (\d+)/.exec(out)![1]);
  const bs = dumpe2fs(image).blockSize;
  const fd = fs.openSync(image, 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, bitmap * bs + 100);
  byte[0] ^= 0x10;
  fs.writeSync(fd, byte, 0, 1, bitmap * bs + 100);
  fs.closeSync(fd);
  await assert.rejects(
    scan(image),
    (e: unknown) =>
      e instanceof FilesystemRefused && e.kind === 'corrupt' && /bitmap checksum/.test(e.message),
  );
});

test('ext2: an unknown or unsupported feature flag is refused', { skip: noExt }, async () => {
  const image = at('feature.img');
  for (const [bit, reason] of [
    [0x1, /compression/],
    [0x800000, /unknown 0x800000/],
  ] as const) {
    makeExt(image, 64 * MiB, 'mkfs.ext2', []);
    const fd = fs.openSync(image, 'r+');
    const word = Buffer.alloc(4);
    fs.readSync(fd, word, 0, 4, 1024 + 0x60);
    word.writeUInt32LE(word.readUInt32LE(0) | bit);
    fs.writeSync(fd, word, 0, 4, 1024 + 0x60);
    fs.closeSync(fd);
    await assert.rejects(
      scan(image),
      (e: unknown) =>
        e instanceof FilesystemRefused && e.kind === 'unsupported' && reason.test(e.message),
    );
  }
});

test(
  'ext4 smaller than its source: the tail is used; larger than its source: refused',
  { skip: noExt },
  async () => {
    const image = at('tail.img');
    fs.rmSync(image, { force: true });
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 80 * MiB);
    run('mkfs.ext4', ['-q', '-F', '-d', TREE, image, String(64 * 1024)]); // 64 MiB in 1K units
    const u = await scan(image);
    assert.ok(u);
    assert.equal(u.fsSize, 64 * MiB);
    assert.equal(u.size, 80 * MiB);
    assert.deepEqual(u.used[u.used.length - 1], { offset: 64 * MiB, length: 16 * MiB });
    fs.truncateSync(image, 60 * MiB);
    await assert.rejects(
      scan(image),
      (e: unknown) =>
        e instanceof FilesystemRefused && e.kind === 'corrupt' && /holds only/.test(e.message),
    );
  },
);

function makeFat(image: string, options: string[], size = 128 * MiB): void {
  fs.rmSync(image, { force: true });
  run('mkfs.vfat', ['-F', '32', ...options, '-C', image, String(size / KiB)]);
  const top = fs.readdirSync(TREE).map((n) => path.join(TREE, n));
  run('mcopy', ['-s', '-i', image, ...top, '::/']);
}

for (const [name, options, size] of [
  // mtools wants at least 65525 clusters: 4K clusters need a bigger volume.
  ['FAT32 512-byte clusters', [], 128 * MiB],
  ['FAT32 4K clusters', ['-s', '8'], 320 * MiB],
  ['FAT32 4K sectors', ['-S', '4096', '-s', '1'], 320 * MiB],
] as Array<[string, string[], number]>) {
  test(
    `${name}: used ranges hold every file, and copying only them gives a clean, identical volume`,
    { skip: noFat },
    async (t) => {
      const image = at('fat.img');
      const copy = at('fat-copy.img');
      makeFat(image, options, size);
      run('mdel', ['-i', image, ...deleted().map((f) => `::/${f.rel}`)]);
      const u = await scan(image);
      assert.ok(u);
      assert.equal(u.fs, 'fat32');
      assert.equal(u.size, size);
      assertWellFormed(u);
      // The volume's own accounting: reserved sectors + FATs + clusters in use (fsck.vfat).
      const boot = fs.readFileSync(image).subarray(0, 512);
      const bps = boot.readUInt16LE(11);
      const dataStart = (boot.readUInt16LE(14) + boot[16] * boot.readUInt32LE(36)) * bps;
      assert.equal(u.blockSize, bps * boot[13]);
      const fsck = status('fsck.vfat', ['-n', image]);
      assert.equal(fsck.code, 0, fsck.out);
      const clusters = Number(/(\d+)\/\d+ clusters/.exec(fsck.out)![1]);
      // mkfs.vfat may round the volume down to whole tracks: that tail is counted used.
      const fsSize = boot.readUInt32LE(32) * bps;
      assert.equal(u.fsSize, fsSize);
      assert.equal(total(u.used), dataStart + clusters * u.blockSize + (size - fsSize));
      assert.ok(total(u.used) < 0.5 * u.size, `${total(u.used)} used of ${u.size}`);
      t.diagnostic(`${total(u.used)} of ${u.size} bytes used (${u.used.length} ranges)`);

      for (const f of kept()) {
        if (f.size === 0) continue;
        const chain = run('mshowfat', ['-i', image, `::/${f.rel}`]);
        const runs = [...chain.matchAll(/<(\d+)(?:-(\d+))?>/g)];
        assert.ok(runs.length > 0, chain);
        for (const m of runs) {
          const first = Number(m[1]);
          const last = Number(m[2] ?? m[1]);
          assertInside(
            u.used,
            dataStart + (first - 2) * u.blockSize,
            (last - first + 1) * u.blockSize,
            f.rel,
          );
        }
      }

      copyUsed(image, copy, u, true);
      const check = status('fsck.vfat', ['-n', copy]);
      assert.equal(check.code, 0, `fsck.vfat -n on the copy:\n${check.out}`);
      for (const f of kept()) {
        const out = at('copied-out');
        fs.rmSync(out, { force: true });
        run('mcopy', ['-n', '-i', copy, `::/${f.rel}`, out]);
        assert.equal(sha256(out), f.sha, `${f.rel} is identical in the copy`);
      }
    },
  );
}

test(
  'FAT32: either dirty bit (FAT[1] or the boot sector) is refused, as fsck.vfat sees it',
  { skip: noFat },
  async () => {
    const image = at('dirty.img');
    for (const mark of ['fat1', 'boot'] as const) {
      makeFat(image, []);
      const fd = fs.openSync(image, 'r+');
      const boot = Buffer.alloc(512);
      fs.readSync(fd, boot, 0, 512, 0);
      if (mark === 'boot') fs.writeSync(fd, Buffer.from([boot[0x41] | 1]), 0, 1, 0x41);
      else {
        const at1 = boot.readUInt16LE(14) * boot.readUInt16LE(11) + 4;
        const e = Buffer.alloc(4);
        fs.readSync(fd, e, 0, 4, at1);
        e.writeUInt32LE(e.readUInt32LE(0) & ~0x08000000);
        fs.writeSync(fd, e, 0, 4, at1);
      }
      fs.closeSync(fd);
      assert.match(status('fsck.vfat', ['-n', image]).out, /Dirty bit is set/);
      await assert.rejects(
        scan(image),
        (e: unknown) =>
          e instanceof FilesystemRefused && e.kind === 'unclean' && /dirty bit/.test(e.message),
        mark,
      );
      assert.equal((await withDevice(image, filesystemState))?.clean, false);
    }
  },
);

test('other content: null from usedSpace, and identifySource names it', async () => {
  const image = at('other.img');
  // A disk with an MBR partition table: read partition by partition (sourceUsedSpace).
  writeRandomFile(image, 16 * MiB, 5);
  const mbr = Buffer.alloc(512);
  mbr[446] = 0x80;
  mbr[446 + 4] = 0x83;
  mbr.writeUInt32LE(2048, 446 + 8);
  mbr.writeUInt32LE(16 * 2048 - 2048, 446 + 12);
  mbr.writeUInt16LE(0xaa55, 510);
  const fd = fs.openSync(image, 'r+');
  fs.writeSync(fd, mbr, 0, 512, 0);
  fs.writeSync(fd, Buffer.alloc(4096), 0, 4096, 1024); // no stray superblock magic
  fs.closeSync(fd);
  assert.equal(await scan(image), null);
  assert.equal(await withDevice(image, identifySource), 'mbr');

  writeRandomFile(image, 4 * KiB, 6);
  assert.equal(await scan(image), null, 'too small for any filesystem');
});

test('freeRegions: regions with no used byte, against a byte-by-byte reference', () => {
  let seed = 7;
  const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let round = 0; round < 300; round++) {
    const regionSize = 2 ** (2 + rnd(4));
    const size = 1 + rnd(400);
    const bytes = new Uint8Array(size + 64);
    const used: Range[] = [];
    for (let k = rnd(6); k > 0; k--) {
      const offset = rnd(size + 20);
      const length = 1 + rnd(40);
      used.push({ offset, length });
      bytes.fill(1, offset, Math.min(offset + length, bytes.length));
    }
    const expect: number[] = [];
    for (let r = 0; r * regionSize < size; r++) {
      if (!bytes.subarray(r * regionSize, Math.min((r + 1) * regionSize, size)).includes(1))
        expect.push(r);
    }
    const got = freeRegions(used, size, regionSize).flatMap((run) =>
      Array.from({ length: run.count }, (_, i) => run.first + i),
    );
    assert.deepEqual(got, expect, JSON.stringify({ used, size, regionSize }));
  }
  assert.deepEqual(freeRegions([], 10 * MiB + 1, MiB), [{ first: 0, count: 11 }]);
  assert.deepEqual(freeRegions([{ offset: MiB, length: 1 }], 4 * MiB, MiB), [
    { first: 0, count: 1 },
    { first: 2, count: 2 },
  ]);
});

test(
  'a used-space scan of an ext4 image: free regions at 1 MiB are most of the image',
  { skip: noExt },
  async () => {
    const image = at('regions.img');
    makeExt(image, 128 * MiB, 'mkfs.ext4', []);
    const u = await scan(image);
    assert.ok(u);
    const free = freeRegions(u.used, u.size, MiB).reduce((n, r) => n + r.count, 0);
    // 28 MiB of files plus metadata: at least half of the 128 regions need no copy.
    assert.ok(free >= 64, `${free} of 128 regions free`);
    for (const run of freeRegions(u.used, u.size, MiB))
      for (const r of u.used)
        assert.ok(
          r.offset + r.length <= run.first * MiB || r.offset >= (run.first + run.count) * MiB,
        );
  },
);
