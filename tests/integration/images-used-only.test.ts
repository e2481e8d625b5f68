// `clone --used-only` (dm-clone's discard) through the command line, on filesystems
// made by the real tools over random bytes (so free space holds stale data): the
// copy passes fsck, every file reads back identical, fewer bytes are read than the
// image holds, and exactly the regions the filesystem's own bitmap calls free are
// left alone (or zeroed with --zero-free). Unclean, foreign and mounted sources are
// refused with nothing written.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli, explain, only } from '../helpers/cli';
import { readRange, sha256, writeRandomFile } from '../helpers/files';
import { attachLoop, requireRoot } from '../helpers/loop';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const SIZE = 128 * MIB;
const REGION = MIB;
const REGIONS = SIZE / REGION;

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

// ---- the tree of files put on every filesystem -----------------------------------

/** Relative path → sha256 of what stays; `deleted` are removed after mkfs (their blocks go stale). */
interface Tree {
  dir: string;
  kept: Map<string, string>;
  deleted: string[];
}

function makeTree(dir: string, seed: number): Tree {
  const kept = new Map<string, string>();
  const put = (rel: string, size: number, n: number): void => {
    const f = path.join(dir, rel);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    writeRandomFile(f, size, seed * 1000 + n);
    kept.set(rel, sha256(f));
  };
  put('big.bin', 20 * MIB, 1);
  put('sub/medium.bin', 1536 * 1024 + 7, 2);
  put('sub/deeper/odd.bin', 3001, 3);
  put('sub/deeper/one', 1, 4);
  for (let i = 0; i < 30; i++) put(`many/f${i}.dat`, 1 + ((i * 7919 * 13) % (200 * 1024)), 10 + i);
  fs.writeFileSync(path.join(dir, 'empty'), '');
  kept.set('empty', sha256(path.join(dir, 'empty')));
  fs.writeFileSync(path.join(dir, 'sub/notes.txt'), 'used space only\n'.repeat(100));
  kept.set('sub/notes.txt', sha256(path.join(dir, 'sub/notes.txt')));
  const deleted = ['del1.bin', 'sub/del2.bin', 'many/del3.bin'];
  deleted.forEach((rel, i) => {
    const f = path.join(dir, rel);
    writeRandomFile(f, [6 * MIB, 9 * MIB, 300 * 1024][i], seed * 1000 + 900 + i);
  });
  return { dir, kept, deleted };
}

// ---- filesystems: how to make, check, read back, and where they are free ---------

interface Filesystem {
  name: string;
  /** Over random bytes, from `tree`; then the deleted files removed. */
  make(img: string, tree: Tree): void;
  /** fsck in no-change mode: throws unless clean. */
  fsck(target: string): void;
  /** The file at `rel` inside `target`, copied out to `out`. */
  extract(target: string, rel: string, out: string): void;
  /** Per byte range the filesystem uses, from its own metadata (independent of the engine). */
  usedRanges(img: string): Array<[number, number]>;
}

function ext(kind: 'ext2' | 'ext3' | 'ext4', extra: string[] = []): Filesystem {
  return {
    name: [kind, ...extra].join(' '),
    make(img, tree) {
      sh(`mkfs.${kind}`, ['-q', '-F', '-E', 'nodiscard', ...extra, '-d', tree.dir, img]);
      for (const rel of tree.deleted) sh('debugfs', ['-w', '-R', `rm /${rel}`, img]);
    },
    fsck(target) {
      sh('e2fsck', ['-fn', target]);
    },
    extract(target, rel, out) {
      sh('debugfs', ['-R', `dump /${rel} ${out}`, target]);
    },
    usedRanges(img) {
      const text = sh('dumpe2fs', [img]);
      const blockSize = Number(/^Block size:\s+(\d+)/m.exec(text)![1]);
      const blocks = Number(/^Block count:\s+(\d+)/m.exec(text)![1]);
      const free = new Uint8Array(blocks);
      for (const m of text.matchAll(/^\s+Free blocks: (.*)$/gm)) {
        for (const part of m[1]
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)) {
          const [a, b] = part.split('-').map(Number);
          free.fill(1, a, (b ?? a) + 1);
        }
      }
      const used: Array<[number, number]> = [];
      for (let b = 0; b < blocks; b++)
        if (!free[b]) used.push([b * blockSize, (b + 1) * blockSize]);
      return used;
    },
  };
}

const fat32: Filesystem = {
  name: 'fat32',
  make(img, tree) {
    sh('mkfs.vfat', ['-F', '32', img]);
    const top = fs.readdirSync(tree.dir).map((n) => path.join(tree.dir, n));
    sh('mcopy', ['-i', img, '-s', ...top, '::/']);
    for (const rel of tree.deleted) sh('mdel', ['-i', img, `::/${rel}`]);
  },
  fsck(target) {
    sh('fsck.vfat', ['-n', target]);
  },
  extract(target, rel, out) {
    sh('mcopy', ['-n', '-i', target, `::/${rel}`, out]);
  },
  usedRanges(img) {
    // The boot sector's BPB and the FAT, read here and not by the engine's code.
    const bs = readRange(img, 0, 512);
    const bytesPerSector = bs.readUInt16LE(11);
    const perCluster = bs[13] * bytesPerSector;
    const reserved = bs.readUInt16LE(14);
    const fats = bs[16];
    const totalSectors = bs.readUInt32LE(32);
    const fatSectors = bs.readUInt32LE(36);
    const dataStart = (reserved + fats * fatSectors) * bytesPerSector;
    const clusters = Math.floor((totalSectors * bytesPerSector - dataStart) / perCluster);
    const fat = readRange(img, reserved * bytesPerSector, fatSectors * bytesPerSector);
    const used: Array<[number, number]> = [[0, dataStart]];
    for (let c = 2; c < clusters + 2; c++) {
      if ((fat.readUInt32LE(4 * c) & 0x0fffffff) !== 0) {
        const at = dataStart + (c - 2) * perCluster;
        used.push([at, at + perCluster]);
      }
    }
    return used;
  },
};

/** Regions (1 MiB) holding no byte the filesystem uses. */
function freeRegionSet(f: Filesystem, img: string): Set<number> {
  const used = new Uint8Array(REGIONS);
  for (const [a, b] of f.usedRanges(img)) {
    for (let r = Math.floor(a / REGION); r <= Math.floor((b - 1) / REGION); r++) used[r] = 1;
  }
  return new Set([...used.keys()].filter((r) => !used[r]));
}

function regionHashes(file: string): string[] {
  if (fs.statSync(file).isBlockDevice()) execFileSync('blockdev', ['--flushbufs', file]);
  return Array.from({ length: REGIONS }, (_, r) =>
    createHash('sha256')
      .update(readRange(file, r * REGION, REGION))
      .digest('hex'),
  );
}

const ZERO_REGION = createHash('sha256').update(Buffer.alloc(REGION)).digest('hex');

/** A filesystem image of SIZE over random bytes, with the tree on it. */
function makeImage(env: Workspace, f: Filesystem, seed: number): { img: string; tree: Tree } {
  const tree = makeTree(env.file(`tree-${seed}`), seed);
  const img = env.file(`${f.name.replace(/\W+/g, '-')}-${seed}.img`);
  writeRandomFile(img, SIZE, seed);
  f.make(img, tree);
  f.fsck(img);
  return { img, tree };
}

function assertFilesIdentical(env: Workspace, f: Filesystem, target: string, tree: Tree): void {
  let n = 0;
  for (const [rel, want] of tree.kept) {
    const out = env.file(`out-${n++}`);
    fs.rmSync(out, { force: true });
    f.extract(target, rel, out);
    assert.equal(sha256(out), want, `${f.name}: /${rel} differs on ${target}`);
    fs.rmSync(out);
  }
}

const FILESYSTEMS: Array<[Filesystem, number]> = [
  [ext('ext4'), 701],
  [ext('ext4', ['-b', '4096']), 702],
  [ext('ext3'), 703],
  [ext('ext2'), 704],
  [fat32, 705],
];

for (const [f, seed] of FILESYSTEMS) {
  test(`${f.name} image, cloned --used-only to an image file: fsck clean, every file identical, free regions not read`, async (t) => {
    const env = workspace(t, `images-used-img-${seed}`);
    const { img, tree } = makeImage(env, f, seed);
    const want = sha256(img);
    const free = freeRegionSet(f, img);
    const src = regionHashes(img);
    const dst = env.file('copy.img');

    const r = await runCli(['clone', img, dst, '--used-only', '--verify', '--json'], {
      db: env.db,
    });
    assert.equal(r.code, 0, explain(r));
    const start = only(r, 'start');
    const done = only(r, 'done');
    assert.equal(done.state, 'done');
    assert.equal(done.verified, true, '--verify with --used-only passes');
    f.fsck(dst);
    assertFilesIdentical(env, f, dst, tree);

    // Exactly the free regions are hydrated at once, without reading them.
    assert.equal(
      start.regionsHydrated,
      free.size,
      'regions found free = the bitmap’s free regions',
    );
    assert.equal(done.regionsCopied, REGIONS - free.size);
    // Only used regions are read — and of them only what holds data (holes are not read).
    assert.ok((done.bytesRead as number) <= (REGIONS - free.size) * REGION);
    assert.ok((done.bytesRead as number) > 0);
    const got = regionHashes(dst);
    for (let i = 0; i < REGIONS; i++) {
      if (free.has(i)) assert.equal(got[i], ZERO_REGION, `free region ${i}: a hole`);
      else assert.equal(got[i], src[i], `used region ${i} copied`);
    }
    const stale = [...free].filter((i) => src[i] !== ZERO_REGION).length;
    assert.ok(stale > 0, 'the source’s free space holds stale data');
    const allocated = fs.statSync(dst).blocks * 512;
    t.diagnostic(
      `${f.name}: bytesRead ${String(done.bytesRead)} of ${SIZE} (${(((done.bytesRead as number) / SIZE) * 100).toFixed(1)}%), ` +
        `${free.size}/${REGIONS} regions free (${stale} with stale data), copy allocates ${allocated} bytes`,
    );
    assert.ok(allocated <= (done.bytesWritten as number) + MIB, `allocated ${allocated}`);
    assert.equal(sha256(img), want, 'the source is never written');
  });
}

for (const [f, seed] of [FILESYSTEMS[0], FILESYSTEMS[4]]) {
  test(`${f.name}, --used-only onto a drive full of random bytes: free regions untouched (but the wiped first and last MiB); with --zero-free, zeros`, async (t) => {
    if (!requireRoot(t)) return;
    const env = workspace(t, `images-used-loop-${seed}`);
    const { img, tree } = makeImage(env, f, seed + 10);
    const free = freeRegionSet(f, img);
    const src = regionHashes(img);
    const backing = env.file('drive');
    writeRandomFile(backing, SIZE, seed + 20);
    const dst = attachLoop(backing);
    t.after(() => dst.detach());

    for (const zeroFree of [false, true]) {
      await t.test(zeroFree ? 'with --zero-free' : 'without --zero-free', async (st) => {
        writeRandomFile(backing, SIZE, seed + 20);
        const old = regionHashes(dst.path);
        const args = ['clone', img, dst.path, '--used-only', '--verify', '--yes', '--json'];
        const db = env.file(`jobs-${zeroFree}.db`);
        const r = await runCli(zeroFree ? [...args, '--zero-free'] : args, { db });
        assert.equal(r.code, 0, explain(r));
        const done = only(r, 'done');
        assert.equal(done.verified, true);
        assert.ok((done.bytesRead as number) <= (REGIONS - free.size) * REGION);
        const got = regionHashes(dst.path);
        // A new job wipes the drive's first and last MiB (old partition tables) first.
        const wiped = (i: number): boolean => i === 0 || i === REGIONS - 1;
        for (let i = 0; i < REGIONS; i++) {
          if (!free.has(i)) assert.equal(got[i], src[i], `used region ${i} copied`);
          else if (zeroFree || wiped(i))
            assert.equal(got[i], ZERO_REGION, `free region ${i} zeroed`);
          else assert.equal(got[i], old[i], `free region ${i} left untouched`);
        }
        f.fsck(dst.path);
        assertFilesIdentical(env, f, dst.path, tree);
        st.diagnostic(
          `${free.size} free regions ${zeroFree ? 'zeroed' : 'untouched'}; bytesRead ${String(done.bytesRead)}, ` +
            `bytesWritten ${String(done.bytesWritten)}`,
        );
      });
    }
  });
}

test('refused with exit 2, destination unchanged: unclean ext4, unclean FAT32, not a filesystem, mounted', async (t) => {
  const env = workspace(t, 'images-used-refuse');
  const dst = env.file('dst.img');
  writeRandomFile(dst, SIZE, 720);
  const before = sha256(dst);
  const refused = async (source: string, why: RegExp, extra: string[] = []): Promise<void> => {
    const r = await runCli(['clone', source, dst, '--used-only', '--json', ...extra], {
      db: env.db,
    });
    assert.equal(r.code, 2, explain(r));
    assert.match(r.stderr, why, explain(r));
    assert.equal(only(r, 'error').fatal, true);
    assert.ok(!r.events.some((e) => e.type === 'start'), 'no job started');
    assert.equal(fs.statSync(dst).size, SIZE);
    assert.equal(sha256(dst), before, 'the destination was written');
  };

  await t.test('ext4 marked not clean (debugfs ssv state 0)', async () => {
    const { img } = makeImage(env, ext('ext4'), 721);
    sh('debugfs', ['-w', '-R', 'ssv state 0', img]);
    await refused(img, /--used-only: ext4 .*not cleanly unmounted/);
  });

  await t.test('ext4 with errors recorded (ssv state 3)', async () => {
    const { img } = makeImage(env, ext('ext4'), 722);
    sh('debugfs', ['-w', '-R', 'ssv state 3', img]);
    await refused(img, /--used-only: .*errors/);
  });

  await t.test('FAT32 with the dirty bit set', async () => {
    const { img } = makeImage(env, fat32, 723);
    const fd = fs.openSync(img, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 0x41);
    b[0] |= 1;
    fs.writeSync(fd, b, 0, 1, 0x41);
    fs.closeSync(fd);
    await refused(img, /--used-only: fat32 .*dirty/);
  });

  await t.test('random data: not ext or FAT', async () => {
    const noise = env.file('noise.img');
    writeRandomFile(noise, SIZE, 724);
    await refused(noise, /--used-only: .*no ext2\/3\/4 or FAT32/);
  });

  await t.test('a mounted ext4 (loop + mount)', async (st) => {
    if (!requireRoot(st)) return;
    const { img } = makeImage(env, ext('ext4'), 725);
    const loop = attachLoop(img);
    const mnt = env.file('mnt');
    fs.mkdirSync(mnt);
    try {
      const m = spawnSync('mount', ['-o', 'ro', loop.path, mnt], { encoding: 'utf8' });
      if (m.status !== 0) return st.skip(`mount failed: ${m.stderr.trim()}`);
      try {
        await refused(loop.path, /--used-only: .*mounted/);
        await refused(loop.path, /--used-only: .*mounted/, ['--allow-mounted']);
      } finally {
        sh('umount', [mnt]);
      }
    } finally {
      loop.detach();
    }
  });
});
