// verify() reads in bounded pieces and hashes each region across them: a streamed
// source ending inside a region (even exactly where a piece starts) is compared up to
// its end; a source's bad sectors leave out only their regions; skipped regions are
// not compared.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { makeGeometry } from '../../engine/geometry';
import { BlockDevice } from '../../engine/io/block-device';
import { openCompressedSource } from '../../engine/io/compressed/index';
import { ImageFile } from '../../engine/io/image-file';
import { verify } from '../../engine/hydration/verify';
import { writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { faultyDrive } from '../helpers/nbd';
import { workspace } from '../helpers/workspace';

const KIB = 1024;
const MIB = 1024 * KIB;

function flip(file: string, offset: number): void {
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, offset);
  fs.writeSync(fd, Buffer.from([b[0] ^ 0xff]), 0, 1, offset);
  fs.closeSync(fd);
}

for (const [end, label] of [
  [6 * MIB, 'exactly where a piece starts'],
  [6 * MIB + 3000, 'inside a piece'],
] as const) {
  test(`a streamed source ending inside a 4 MiB region, ${label}: compared up to its end`, async (t) => {
    const env = workspace(t, 'verify-stream-end');
    const src = env.file('src.img');
    writeRandomFile(src, end, 1001);
    execFileSync('gzip', ['-k', '-1', src]);
    // The destination holds the image and more after it.
    const dst = env.file('dst.img');
    writeRandomFile(dst, 8 * MIB, 1002);
    fs.writeFileSync(dst, fs.readFileSync(src), { flag: 'r+' });
    const dest = ImageFile.open(dst, false);
    t.after(() => dest.close());
    const run = async () => {
      const source = await openCompressedSource(`${src}.gz`);
      try {
        // As the `verify` command does for a stream of unknown size: the destination's size.
        return await verify(source, [dest], makeGeometry(dest.size, 4 * MIB), {
          pieceBytes: MIB,
        });
      } finally {
        await source.close();
      }
    };
    const equal = await run();
    assert.equal(equal.bytesCompared, end);
    assert.deepEqual(equal.mismatchedRegions, { [dst]: [] });

    flip(dst, end - 1); // the last byte of the image, in region 1
    const differs = await run();
    assert.deepEqual(differs.mismatchedRegions, { [dst]: [1] });
    assert.deepEqual(differs.mismatches[dst], [{ offset: 4 * MIB, length: end - 4 * MIB }]);
  });
}

test('a source with bad sectors: only their regions are left out (skipped), the rest compared', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'verify-bad-source');
  const image = env.file('img');
  writeRandomFile(image, 8 * MIB, 1003);
  const drive = await faultyDrive(image, [{ offset: 2 * MIB + 512, length: 512 }]);
  t.after(() => drive.stop());
  const source = await BlockDevice.open(drive.loop!.path, false);
  const dest = ImageFile.open(image, false);
  t.after(() => Promise.all([source.close(), dest.close()]));
  const r = await verify(source, [dest], makeGeometry(8 * MIB, 512 * KIB));
  assert.deepEqual(r.skipped, [{ offset: 2 * MIB, length: 512 * KIB }]);
  assert.equal(r.bytesCompared, 8 * MIB - 512 * KIB);
  assert.deepEqual(r.mismatchedRegions, { [image]: [] });
});

test('skipped regions are neither read nor compared; the others are', async (t) => {
  const env = workspace(t, 'verify-skip');
  const src = env.file('src.img');
  writeRandomFile(src, 10 * MIB, 1004);
  fs.copyFileSync(src, env.file('dst.img'));
  flip(env.file('dst.img'), 3 * MIB + 5); // region 3: skipped
  flip(env.file('dst.img'), 7 * MIB + 5); // region 7: compared
  const [source, dest] = [src, env.file('dst.img')].map((f) => ImageFile.open(f, false));
  t.after(() => Promise.all([source.close(), dest.close()]));
  const r = await verify(source, [dest], makeGeometry(10 * MIB, MIB), {
    skipRegion: (region) => region === 3 || region === 4,
    pieceBytes: 4 * MIB,
  });
  assert.deepEqual(r.mismatchedRegions, { [dest.path]: [7] });
  assert.equal(r.bytesCompared, 8 * MIB);
});
