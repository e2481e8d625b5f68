// A `.img.zst` backup is verified by decompressing it — what a restore reads — not by
// reading the write-only ZstImage the copy went through: a correct backup verifies
// equal (clone --verify, verify() on the job's destination), and a byte corrupted
// inside a frame is found (a decode error or a differing region, never "equal").

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { Copier } from '../../engine/hydration/copier';
import { makeGeometry } from '../../engine/geometry';
import { alignedBuffer } from '../../engine/io/buffers';
import { isStream } from '../../engine/io/device';
import { ImageFile } from '../../engine/io/image-file';
import { ZstImage } from '../../engine/io/zst-image';
import { scanZst } from '../../engine/io/zst-scan';
import { Throttle } from '../../engine/hydration/throttle';
import { allEqual, openForVerify, verify } from '../../engine/hydration/verify';
import { runCli, explain, only } from '../helpers/cli';
import { writeMixedFile } from '../helpers/files';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const SIZE = 40 * MIB + 4096 + 100;

/** Inverts one byte in the middle of the compressed data of frame `index`. */
function corruptFrame(zst: string, index: number): number {
  const frame = scanZst(zst).frames[index];
  const at = frame.fileOffset + Math.floor(frame.compressedSize / 2);
  const fd = fs.openSync(zst, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
  return at;
}

test('clone SRC backup.img.zst --verify: verified, exit 0; a corrupted frame then fails verify', async (t) => {
  const env = workspace(t, 'verify-backup-cli');
  const src = env.file('src.img');
  const zst = env.file('backup.img.zst');
  writeMixedFile(src, SIZE, 701);

  const r = await runCli(['clone', src, zst, '--verify', '--json'], { db: env.db });
  assert.equal(r.code, 0, explain(r));
  const done = only(r, 'done');
  assert.equal(done.state, 'done');
  assert.equal(done.verified, true, explain(r));
  assert.deepEqual(done.mismatches, []);

  const equal = await runCli(['verify', src, zst, '--json'], { db: env.db });
  assert.equal(equal.code, 0, explain(equal));

  corruptFrame(zst, 2);
  const corrupt = await runCli(['verify', src, zst, '--json'], { db: env.db });
  assert.notEqual(corrupt.code, 0, explain(corrupt));
  assert.doesNotMatch(corrupt.stdout, /Equal/);
});

test('verify() of the ZstImage a copy wrote: read back by decompressing, equal; corrupted: not equal', async (t) => {
  const env = workspace(t, 'verify-backup-api');
  const src = env.file('src.img');
  const path = env.file('backup.img.zst');
  writeMixedFile(src, SIZE, 702);
  const source = ImageFile.open(src, false);
  t.after(() => source.close());
  const geometry = makeGeometry(SIZE, 4 * MIB);

  // What the job does: copy through the copier (sequential: a .zst takes writes in order), flush.
  const zst = ZstImage.create(path, SIZE, { frameBytes: 4 * MIB });
  const copier = new Copier(source, new Throttle({ percent: 100, maxRate: 0 }), {
    ignoreErrors: false,
    sequential: true,
    zeroUnit: geometry.regionSize,
  });
  const copied = await copier.copy({ offset: 0, length: SIZE }, alignedBuffer(8 * MIB), [
    { device: zst, skipZeros: false, writesFree: true },
  ]);
  assert.equal(copied.writeErrorMask, 0);
  await zst.flush();

  // The device to compare for this destination: a decompressing stream of the file.
  const readBack = await openForVerify(zst);
  assert.notEqual(readBack, zst);
  assert.ok(isStream(readBack));
  await readBack.close();
  // verify() does the same by itself for the devices the job wrote through.
  const good = await verify(source, [zst], geometry);
  assert.ok(allEqual(good), JSON.stringify(good));
  assert.equal(good.bytesCompared, SIZE);
  assert.deepEqual(good.mismatchedRegions, { [path]: [] });

  corruptFrame(path, 5);
  // Pieces of one region (one frame), so the report is as precise as the frames are:
  // a stream that fails mid-piece can't be read again region by region.
  const bad = await verify(source, [zst], geometry, { pieceBytes: 4 * MIB });
  assert.equal(allEqual(bad), false);
  const found = bad.mismatchedRegions[path];
  assert.ok(found.length > 0 && found.every((r) => r >= 5), `regions ${found}`);
  assert.ok(
    bad.unreadableRegions[path].length > 0
      ? /zstd|checksum|corrupt/i.test(bad.readErrors[path])
      : true,
    bad.readErrors[path],
  );
  t.diagnostic(
    `corrupted frame 5: differs ${found.filter((r) => !bad.unreadableRegions[path].includes(r))}, ` +
      `unreadable ${bad.unreadableRegions[path]} (${bad.readErrors[path]})`,
  );

  // Closed backups (a later `verify` of the job) are read the same way, without a flush.
  await zst.close();
  const closed = await verify(source, [zst], geometry);
  assert.equal(allEqual(closed), false);
});
