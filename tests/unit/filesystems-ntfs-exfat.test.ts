// The NTFS, exFAT and FAT12/16 readers on volumes made by their own tools over random
// bytes (no mount needed: ntfscp writes files into an NTFS image, mtools into a FAT
// one): the bytes they call used are exactly what the tools count as used, a copy of
// only those bytes over random garbage passes the tools' checker and gives every file
// back, and what they can't trust — dirty, hibernated, torn, a wrong checksum — is
// refused with the reason.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { FilesystemRefused, type UsedSpace } from '../../engine/filesystems';
import { readRange, sha256, tempDir, writeRandomFile } from '../helpers/files';
import {
  assertWellFormed,
  copyUsed,
  have,
  ntfsAttribute,
  passes,
  patch,
  run,
  scan,
} from '../helpers/used-space';

const KiB = 1024;
const MiB = 1024 * KiB;

const noNtfs =
  !have('mkntfs', 'ntfscp', 'ntfscat', 'ntfsfix', 'ntfscluster') && 'ntfs-3g is not installed';
const noExfat = !have('mkfs.exfat', 'fsck.exfat', 'dump.exfat') && 'exfatprogs is not installed';
const noFat =
  !have('mkfs.vfat', 'fsck.vfat', 'mcopy', 'mdir', 'mdel') && 'dosfstools or mtools missing';

const tmp = tempDir('drivetwin-fs2-');
after(() => tmp.cleanup());
const at = (name: string): string => path.join(tmp.dir, name);

/** Bytes inside the file system's own size that it calls used. */
const usedInside = (u: UsedSpace): number =>
  u.used.reduce((n, r) => n + Math.max(0, Math.min(r.offset + r.length, u.fsSize) - r.offset), 0);

const refusedWith =
  (kind: string, why: RegExp) =>
  (e: unknown): boolean =>
    e instanceof FilesystemRefused && e.kind === kind && why.test(e.message);

/** Files to put on a volume: name → size. */
const FILES: Array<[string, number]> = [
  ['big.bin', 9 * MiB + 123],
  ['mid.bin', 700 * KiB],
  ['small.txt', 3001],
  ['one', 1],
];

function sources(): Map<string, string> {
  const out = new Map<string, string>();
  FILES.forEach(([name, size], i) => {
    const f = at(`src-${name}`);
    if (!fs.existsSync(f)) writeRandomFile(f, size, 300 + i);
    out.set(name, f);
  });
  return out;
}

/** An NTFS image over random bytes holding FILES. */
function makeNtfs(image: string, size = 48 * MiB): void {
  writeRandomFile(image, size, 31);
  run('mkntfs', ['-Q', '-F', '-q', image]);
  for (const [name, file] of sources()) run('ntfscp', ['-f', image, file, name]);
}

test(
  'NTFS: used = what ntfscluster counts; the used bytes alone give back every file',
  { skip: noNtfs },
  async () => {
    const image = at('ntfs.img');
    makeNtfs(image);
    const u = (await scan(image))!;
    assert.equal(u.fs, 'ntfs');
    assertWellFormed(u);
    const info = run('ntfscluster', ['-i', image]);
    const volume = Number(/bytes per volume\s*:\s*(\d+)/.exec(info)![1]);
    const free = Number(/bytes of free space\s*:\s*(\d+)/.exec(info)![1]);
    // The bytes past the last whole cluster (up to the backup boot sector) count as used too.
    assert.equal(usedInside(u), volume - free + (u.fsSize - volume));
    const copy = at('ntfs-copy.img');
    copyUsed(image, copy, u, true);
    passes('ntfsfix', ['-n', copy]);
    for (const [name, file] of sources()) assert.equal(sha256Of(copy, name), sha256(file), name);
  },
);

/** sha256 of a file read out of an NTFS image with ntfscat. */
function sha256Of(image: string, name: string): string {
  const out = at(`cat-${name}`);
  fs.writeFileSync(out, execFileSync('ntfscat', [image, name], { maxBuffer: 64 * MiB }));
  return sha256(out);
}

test(
  'NTFS: marked dirty, hibernated, or a torn $MFT record is refused',
  { skip: noNtfs },
  async () => {
    const image = at('ntfs-bad.img');
    makeNtfs(image, 24 * MiB);
    const info = ntfsAttribute(image, 0, 3, 0x70);
    const flagsAt = info + readRange(image, info + 20, 2).readUInt16LE(0) + 10;
    const flags = readRange(image, flagsAt, 2);
    patch(image, flagsAt, Buffer.from([flags[0] | 0x01, flags[1]]));
    await assert.rejects(scan(image), refusedWith('unclean', /marked dirty/));
    patch(image, flagsAt, flags);
    assert.equal((await scan(image))!.fs, 'ntfs');

    // Resumed ('wake') or cleared: fine. Hibernated: refused — and ntfs-3g's own ntfscp
    // refuses to write to it from then on, as it refuses to mount it read-write.
    const hiber = at('hiberfil.sys');
    for (const header of ['wake', '\0\0\0\0', 'hibr']) {
      const bytes = Buffer.alloc(16 * KiB);
      bytes.write(header, 'latin1');
      fs.writeFileSync(hiber, bytes);
      run('ntfscp', ['-f', image, hiber, 'hiberfil.sys']);
      if (header === 'hibr')
        await assert.rejects(scan(image), refusedWith('unclean', /hibernated/));
      else assert.equal((await scan(image))!.fs, 'ntfs', header);
    }
    const theirs = spawnSync('ntfscp', ['-f', image, hiber, 'again'], { encoding: 'utf8' });
    assert.match(theirs.stderr, /hibernated/);
    const where = fs.readFileSync(image).indexOf(Buffer.from('hibr\0\0\0\0', 'latin1'));
    patch(image, where, Buffer.from('HIBR'));
    await assert.rejects(scan(image), refusedWith('unclean', /hibernated/), 'HIBR');

    // A sector of $Volume's record whose update sequence number no longer matches.
    const record = Math.floor(info / 1024) * 1024;
    patch(image, record + 510, Buffer.from([0xde, 0xad]));
    await assert.rejects(
      scan(image),
      refusedWith('corrupt', /MFT record 3: sector 0 of it was torn/),
    );
  },
);

test(
  'exFAT: used = the boot regions, the FAT and what dump.exfat counts; refusals',
  { skip: noExfat },
  async () => {
    const image = at('exfat.img');
    writeRandomFile(image, 40 * MiB, 41);
    run('mkfs.exfat', [image]);
    const u = (await scan(image))!;
    assert.equal(u.fs, 'exfat');
    assertWellFormed(u);
    const dump = run('dump.exfat', [image]);
    const n = (re: RegExp): number => Number(re.exec(dump)![1]);
    const heap = n(/Cluster Heap Offset \(sector offset\):\s*(\d+)/) * 512;
    const cluster = n(/Cluster size:\s*(\d+)/);
    const usedClusters = n(/Total Clusters:\s*(\d+)/) - n(/Free Clusters:\s*(\d+)/);
    assert.equal(
      usedInside(u),
      heap + usedClusters * cluster + (u.fsSize - heap - n(/Total Clusters:\s*(\d+)/) * cluster),
    );
    const copy = at('exfat-copy.img');
    copyUsed(image, copy, u, true);
    passes('fsck.exfat', ['-n', copy]);

    const flags = readRange(image, 106, 2);
    patch(image, 106, Buffer.from([flags[0] | 0x02, flags[1]]));
    await assert.rejects(scan(image), refusedWith('unclean', /marked dirty/));
    patch(image, 106, Buffer.from([(flags[0] & ~0x02) | 0x04, flags[1]]));
    await assert.rejects(scan(image), refusedWith('unclean', /media failure/));
    patch(image, 106, flags);
    const serial = readRange(image, 100, 1);
    patch(image, 100, Buffer.from([serial[0] ^ 0xff]));
    await assert.rejects(scan(image), refusedWith('corrupt', /boot checksum is wrong/));
    assert.notEqual(spawnSync('fsck.exfat', ['-n', image]).status, 0, 'fsck.exfat sees it too');
  },
);

for (const kind of ['12', '16'] as const) {
  test(
    `FAT${kind}: used = what mdir leaves free; the used bytes alone give back every file; dirty refused`,
    { skip: noFat },
    async () => {
      const image = at(`fat${kind}.img`);
      writeRandomFile(image, kind === '12' ? 8 * MiB : 40 * MiB, 50 + Number(kind));
      run('mkfs.vfat', ['-F', kind, image]);
      const files = [...sources()].filter(([name]) => kind === '16' || name !== 'big.bin');
      run('mcopy', ['-i', image, ...files.map(([, f]) => f), '::/']);
      run('mdel', ['-i', image, `::/${path.basename(files[1][1])}`]); // a hole of stale data
      const kept = files.filter((_, i) => i !== 1);
      const u = (await scan(image))!;
      assert.equal(u.fs, `fat${kind}`);
      assertWellFormed(u);
      const free = Number(
        /([\d ]+) bytes free/.exec(run('mdir', ['-i', image, '::/']))![1].replace(/ /g, ''),
      );
      assert.equal(usedInside(u), u.fsSize - free);
      const copy = at(`fat${kind}-copy.img`);
      copyUsed(image, copy, u, true);
      passes('fsck.vfat', ['-n', copy]);
      for (const [, file] of kept) {
        const out = at(`out-${path.basename(file)}`);
        run('mcopy', ['-n', '-i', copy, `::/${path.basename(file)}`, out]);
        assert.equal(sha256(out), sha256(file));
      }

      // Linux's dirty bit in the boot sector (0x25 on FAT12/16); FAT16's clean bit in FAT[1].
      const state = readRange(image, 0x25, 1);
      patch(image, 0x25, Buffer.from([state[0] | 1]));
      await assert.rejects(scan(image), refusedWith('unclean', /dirty bit/));
      patch(image, 0x25, state);
      if (kind === '16') {
        const fat1 = readRange(image, readRange(image, 14, 2).readUInt16LE(0) * 512 + 2, 2);
        patch(
          image,
          readRange(image, 14, 2).readUInt16LE(0) * 512 + 2,
          Buffer.from([fat1[0], fat1[1] & 0x7f]),
        );
        assert.match(
          spawnSync('fsck.vfat', ['-n', image], { encoding: 'utf8' }).stdout,
          /Dirty bit/,
        );
        await assert.rejects(scan(image), refusedWith('unclean', /dirty bit/));
      }
    },
  );
}
