// Verify reads drives as drives are read: an image whose size is not a multiple of
// the logical block, cloned onto a loop device, verifies equal (the destination's
// last block is read whole, only the image's bytes compared); and a destination that
// can't be read is reported as unreadable — never as equal, never silently as "differs".

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { BlockDevice } from '../../engine/io/block-device';
import { ImageFile } from '../../engine/io/image-file';
import { makeGeometry } from '../../engine/geometry';
import { allEqual, verify } from '../../engine/hydration/verify';
import { runCli, explain, only } from '../helpers/cli';
import { sha256, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { faultyDrive } from '../helpers/nbd';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
/** The size from the report: 240,298 sectors and 344 bytes. */
const ODD_SIZE = 123_032_920;

for (const sectorSize of [512, 4096] as const) {
  test(`a ${ODD_SIZE}-byte image onto a ${sectorSize}-byte-sector loop device: clone --verify and verify say equal`, async (t) => {
    if (!requireRoot(t)) return;
    const env = workspace(t, `verify-odd-${sectorSize}`);
    const src = env.file('odd.img');
    writeRandomFile(src, ODD_SIZE, 901);
    const loop = env.loop('dst.img', 128 * MIB, { sectorSize });
    assert.equal(loop.sectorSize, sectorSize);

    const cloned = await runCli(['clone', src, loop.path, '--verify', '--yes', '--json'], {
      db: env.db,
    });
    assert.equal(cloned.code, 0, explain(cloned));
    const done = only(cloned, 'done');
    assert.equal(done.state, 'done');
    assert.equal(done.verified, true, explain(cloned));
    assert.deepEqual(done.mismatches, []);
    assert.equal(sha256(loop.path, ODD_SIZE), sha256(src));

    const checked = await runCli(['verify', src, loop.path, '--json'], { db: env.db });
    assert.equal(checked.code, 0, explain(checked));
    const v = only(checked, 'verify');
    assert.equal(v.equal, true);
    assert.equal(v.bytesCompared, ODD_SIZE);
    assert.deepEqual(v.mismatches, { [loop.path]: [] });
  });
}

test('a destination drive with bad sectors: its regions unreadable, with the error; never equal', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'verify-unreadable');
  const image = env.file('img');
  writeRandomFile(image, 16 * MIB, 902);
  // The destination holds the same bytes, but two places can't be read.
  const bad = [
    { offset: 5 * MIB + 4096, length: 512 },
    { offset: 12 * MIB - 512, length: 1024 },
  ];
  const drive = await faultyDrive(image, bad);
  t.after(() => drive.stop());
  const source = ImageFile.open(image, false);
  const dest = await BlockDevice.open(drive.loop!.path, false);
  t.after(() => Promise.all([source.close(), dest.close()]));

  const r = await verify(source, [dest], makeGeometry(16 * MIB, MIB));
  const p = dest.path;
  assert.deepEqual(r.unreadableRegions[p], [5, 11, 12]);
  assert.deepEqual(r.unreadable[p], [
    { offset: 5 * MIB, length: MIB },
    { offset: 11 * MIB, length: 2 * MIB },
  ]);
  assert.match(r.readErrors[p], /EIO/);
  // Not found equal (so a caller that knows nothing of `unreadable` never says "equal")…
  assert.deepEqual(r.mismatchedRegions[p], [5, 11, 12]);
  assert.equal(allEqual(r), false);
  // …and nothing else: every readable region compared equal.
  assert.equal(r.bytesCompared, 16 * MIB);
  assert.deepEqual(r.skipped, []);
});

test('a destination that differs and one that is equal: only the first named, allEqual false', async (t) => {
  const env = workspace(t, 'verify-differs');
  const src = env.file('src.img');
  writeRandomFile(src, 9 * MIB + 1000, 903);
  fs.copyFileSync(src, env.file('same.img'));
  fs.copyFileSync(src, env.file('other.img'));
  const fd = fs.openSync(env.file('other.img'), 'r+');
  fs.writeSync(fd, Buffer.from('x'), 0, 1, 9 * MIB + 999);
  fs.closeSync(fd);
  const devices = [src, env.file('same.img'), env.file('other.img')].map((f) =>
    ImageFile.open(f, false),
  );
  t.after(() => Promise.all(devices.map((d) => d.close())));
  const [source, same, other] = devices;
  // Small pieces: several per 4 MiB region, the last region short.
  const r = await verify(source, [same, other], makeGeometry(source.size, 4 * MIB), {
    pieceBytes: 256 * 1024,
  });
  assert.deepEqual(r.mismatchedRegions, { [same.path]: [], [other.path]: [2] });
  assert.deepEqual(r.mismatches[other.path], [{ offset: 8 * MIB, length: MIB + 1000 }]);
  assert.deepEqual(r.unreadableRegions, { [same.path]: [], [other.path]: [] });
  assert.equal(r.bytesCompared, source.size);
  assert.equal(allEqual(r), false);
});
