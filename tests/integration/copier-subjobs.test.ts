// The copier splits a job longer than its buffer into sub-jobs, in order, each
// admitted by the throttle, and does per sub-job everything it does for a job:
// zero detection, ignore-errors delimiting, first-bad-block narrowing, a stream
// ending early, sequential write turns (one turn per job), the write-error mask.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test, type TestContext } from 'node:test';
import { Copier, type CopyOptions, type Target } from '../../engine/hydration/copier';
import { BlockDevice } from '../../engine/io/block-device';
import { alignedBuffer } from '../../engine/io/buffers';
import { openCompressedSource } from '../../engine/io/compressed/index';
import type { Device } from '../../engine/io/device';
import { ImageFile } from '../../engine/io/image-file';
import { ZstImage } from '../../engine/io/zst-image';
import { Throttle } from '../../engine/hydration/throttle';
import { allocatedBytes, readRange, sha256, tempDir, writeMixedFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { faultyDrive } from '../helpers/nbd';
import { workspace } from '../helpers/workspace';

const KIB = 1024;
const MIB = 1024 * KIB;

/** A throttle that lets everything through and notes each admission. */
class CountingThrottle extends Throttle {
  readonly admitted: number[] = [];
  constructor() {
    super({ percent: 100, maxRate: 0 });
  }
  override admit(bytes: number): Promise<void> {
    this.admitted.push(bytes);
    return super.admit(bytes);
  }
}

function options(o: Partial<CopyOptions> = {}): CopyOptions {
  return { ignoreErrors: false, sequential: false, zeroUnit: 4 * MIB, ...o };
}

function target(device: Device, skipZeros = false): Target {
  return { device, skipZeros, writesFree: false };
}

/** `device`, noting the length of each write. */
function countingWrites(device: ImageFile, writes: number[]): Device {
  return Object.assign(Object.create(device) as ImageFile, {
    write: (b: Buffer, o: number) => {
      writes.push(b.length);
      return device.write(b, o);
    },
  });
}

/** A fresh, empty (all holes) image file of `size` bytes. */
function emptyImage(path: string, size: number): ImageFile {
  const f = ImageFile.open(path, true);
  assert.ok(f.reset(size));
  return f;
}

test('a 12 MiB job through a 1 MiB buffer: twelve sub-jobs admitted, zeros skipped per sub-job, identical', async (t) => {
  const env = workspace(t, 'copier-subjobs');
  const size = 12 * MIB;
  writeMixedFile(env.file('src.img'), size, 801); // MiB 2, 5, 8, 11 are zeros
  const source = ImageFile.open(env.file('src.img'), false);
  const sparse = emptyImage(env.file('sparse.img'), size);
  const full = emptyImage(env.file('full.img'), size);
  const throttle = new CountingThrottle();
  const copier = new Copier(source, throttle, options());
  const r = await copier.copy({ offset: 0, length: size }, alignedBuffer(MIB), [
    target(sparse, true),
    target(full),
  ]);
  await Promise.all([source, sparse, full].map((d) => d.close()));

  assert.deepEqual(throttle.admitted, Array(12).fill(MIB));
  assert.equal(r.readError, null);
  assert.equal(r.writeErrorMask, 0);
  assert.equal(r.end, undefined);
  assert.equal(r.bytesRead, size);
  // The 4 MiB zero unit is judged 1 MiB at a time: the four zero MiBs are skipped.
  assert.equal(r.bytesWritten, size + 8 * MIB);
  assert.ok(allocatedBytes(env.file('sparse.img')) <= 8 * MIB + 64 * KIB);
  assert.equal(sha256(env.file('sparse.img')), sha256(env.file('src.img')));
  assert.equal(sha256(env.file('full.img')), sha256(env.file('src.img')));
});

test('a stream that ends inside the job: result.end where it ended, nothing after', async (t) => {
  const env = workspace(t, 'copier-stream');
  const size = 5 * MIB + 512 * KIB + 100;
  writeMixedFile(env.file('src.img'), size, 802);
  execFileSync('gzip', ['-k', '-1', env.file('src.img')]);
  const source = await openCompressedSource(env.file('src.img.gz'));
  const dest = emptyImage(env.file('dst.img'), 0);
  const throttle = new CountingThrottle();
  const r = await new Copier(source, throttle, options()).copy(
    { offset: 0, length: 16 * MIB },
    alignedBuffer(MIB),
    [target(dest)],
  );
  await Promise.all([source.close(), dest.close()]);
  assert.equal(r.end, size);
  assert.equal(r.bytesRead, size);
  assert.equal(r.bytesWritten, size);
  assert.equal(throttle.admitted.length, 6, 'no sub-job after the end');
  assert.equal(fs.statSync(env.file('dst.img')).size, size);
  assert.equal(sha256(env.file('dst.img')), sha256(env.file('src.img')));
});

async function faultySource(t: TestContext, bad: Array<{ offset: number; length: number }>) {
  const env = workspace(t, 'copier-faulty');
  const image = env.file('src.img');
  writeMixedFile(image, 6 * MIB, 803);
  const drive = await faultyDrive(image, bad);
  t.after(() => drive.stop());
  const source = await BlockDevice.open(drive.loop!.path, false);
  t.after(() => source.close());
  return { env, image, source };
}

// One bad sector inside the second sub-job, one run across the 3 MiB sub-job boundary.
const BAD = [
  { offset: MIB + 77 * 512, length: 512 },
  { offset: 3 * MIB - 2 * KIB, length: 5 * KIB },
];

test('ignore-errors: bad blocks delimited per sub-job and merged across sub-jobs; zeros there', async (t) => {
  if (!requireRoot(t)) return;
  const { env, image, source } = await faultySource(t, BAD);
  const dest = emptyImage(env.file('dst.img'), 6 * MIB);
  const r = await new Copier(source, new CountingThrottle(), options({ ignoreErrors: true })).copy(
    { offset: 0, length: 6 * MIB },
    alignedBuffer(MIB),
    [target(dest)],
  );
  await dest.close();
  assert.equal(r.readError, null);
  assert.deepEqual(r.unreadable, BAD);
  assert.equal(r.bytesRead, 6 * MIB - 512 - 5 * KIB);
  const want = fs.readFileSync(image);
  for (const b of BAD) want.fill(0, b.offset, b.offset + b.length);
  assert.ok(fs.readFileSync(env.file('dst.img')).equals(want));
});

test('without ignore-errors: the job stops at the sub-job that fails, naming its first bad block', async (t) => {
  if (!requireRoot(t)) return;
  const { env, source } = await faultySource(t, BAD);
  const dest = emptyImage(env.file('dst.img'), 6 * MIB);
  const throttle = new CountingThrottle();
  const r = await new Copier(source, throttle, options()).copy(
    { offset: 0, length: 6 * MIB },
    alignedBuffer(MIB),
    [target(dest)],
  );
  await dest.close();
  assert.equal(r.readError?.code, 'EIO');
  assert.equal(r.readError?.offset, BAD[0].offset);
  assert.equal(r.readError?.length, 512);
  assert.equal(throttle.admitted.length, 2, 'no sub-job after the failing one');
  assert.equal(r.bytesWritten, MIB, 'the first sub-job was written, nothing after');
});

test('sequential: concurrent jobs of several sub-jobs each reach a .img.zst strictly in order', async (t) => {
  const env = workspace(t, 'copier-sequential');
  const size = 24 * MIB;
  writeMixedFile(env.file('src.img'), size, 804);
  const source = ImageFile.open(env.file('src.img'), false);
  const zst = ZstImage.create(env.file('dst.img.zst'), size, { frameBytes: 4 * MIB });
  const copier = new Copier(source, new CountingThrottle(), options({ sequential: true }));
  // Six 4 MiB jobs at once, each through its own 1 MiB buffer; a .zst refuses any write out of order.
  const results = await Promise.all(
    Array.from({ length: 6 }, (_, i) =>
      copier.copy({ offset: i * 4 * MIB, length: 4 * MIB }, alignedBuffer(MIB), [target(zst)]),
    ),
  );
  await zst.close();
  await source.close();
  for (const r of results) assert.equal(r.writeErrorMask, 0, r.writeErrors.join('; '));
  const restored = spawnSync('zstd', ['-d', '-c', '-q', env.file('dst.img.zst')], {
    maxBuffer: 64 * MIB,
  });
  assert.equal(restored.status, 0, String(restored.stderr));
  assert.ok(restored.stdout.equals(fs.readFileSync(env.file('src.img'))));
});

test('a destination that fills up mid-job: its bit in the mask, not written again; the other completes', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'copier-full');
  const size = 8 * MIB;
  writeMixedFile(env.file('src.img'), size, 805);
  // A 3 MiB file system of its own, unmounted before its folder goes.
  const mount = tempDir('drivetwin-copier-small-');
  const small = mount.dir;
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', small]);
  t.after(() => {
    execFileSync('umount', [small]);
    mount.cleanup();
  });
  const source = ImageFile.open(env.file('src.img'), false);
  const good = emptyImage(env.file('good.img'), size);
  const full = ImageFile.open(`${small}/full.img`, true);
  const fullWrites: number[] = [];
  const counted = countingWrites(full, fullWrites);
  const throttle = new CountingThrottle();
  const r = await new Copier(source, throttle, options()).copy(
    { offset: 0, length: size },
    alignedBuffer(MIB),
    [target(counted), target(good)],
  );
  await Promise.all([source.close(), good.close(), full.close()]);
  assert.equal(r.writeErrorMask, 0b01);
  assert.equal(r.writeErrors.length, 1);
  assert.equal(r.writeErrors[0].code, 'ENOSPC');
  // 3 MiB fit; the fourth write fails and is the last one.
  assert.equal(r.writeErrors[0].offset, 3 * MIB);
  assert.equal(fullWrites.length, 4, 'not written again after it failed');
  assert.equal(throttle.admitted.length, 8, 'the other destination got every sub-job');
  assert.equal(sha256(env.file('good.img')), sha256(env.file('src.img')));
});

test('zero job longer than MAX_IO_BYTES: zeros written over all of it, in pieces', async (t) => {
  const env = workspace(t, 'copier-zero');
  const size = 20 * MIB;
  writeMixedFile(env.file('dst.img'), size, 806);
  const dest = ImageFile.open(env.file('dst.img'), true);
  const writes: number[] = [];
  const counted = countingWrites(dest, writes);
  const source = ImageFile.open(env.file('dst.img'), false);
  const r = await new Copier(source, new CountingThrottle(), options()).zero(
    { offset: MIB, length: 18 * MIB },
    [{ device: counted, skipZeros: false, writesFree: true }],
  );
  await Promise.all([dest.close(), source.close()]);
  assert.equal(r.bytesWritten, 18 * MIB);
  assert.deepEqual(writes, [8 * MIB, 8 * MIB, 2 * MIB]);
  assert.ok(readRange(env.file('dst.img'), MIB, 18 * MIB).equals(Buffer.alloc(18 * MIB)));
  assert.ok(!readRange(env.file('dst.img'), 0, MIB).equals(Buffer.alloc(MIB)));
});
