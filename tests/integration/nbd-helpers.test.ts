import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  allocatedBytes,
  readRange,
  sha256,
  tempDir,
  writeMixedFile,
  writeRandomFile,
} from '../helpers/files';
import { attachLoop, requireRoot } from '../helpers/loop';
import { faultyDrive, forgetfulDrive, type NbdDrive } from '../helpers/nbd';

const MIB = 1024 * 1024;

/** dd with O_DIRECT (dd aligns its buffer; Node's Buffers are not). */
function ddRead(dev: string, offset: number, length: number): Buffer {
  return execFileSync(
    'dd',
    [
      `if=${dev}`,
      `bs=${length}`,
      `skip=${offset}`,
      'count=1',
      'iflag=direct,skip_bytes',
      'status=none',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

/** An O_DIRECT write: it reaches the drive, but nothing asks the drive to flush. */
function ddWrite(dev: string, offset: number, data: Buffer): void {
  execFileSync(
    'dd',
    [
      `of=${dev}`,
      `bs=${data.length}`,
      `seek=${offset}`,
      'oflag=direct,seek_bytes',
      'conv=notrunc',
      'status=none',
    ],
    {
      input: data,
      stdio: ['pipe', 'ignore', 'pipe'],
    },
  );
}

function mountedAt(file: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${file} `);
}

function processesUsing(file: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((pid) => /^\d+$/.test(pid))
    .filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(file);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Nothing of the drive is left: no mount, no loop binding, no nbdkit/nbdfuse, no files. */
async function assertGone(drive: NbdDrive): Promise<void> {
  assert.equal(mountedAt(drive.file), false, 'nbdfuse file still mounted');
  const sys = `/sys/block/${path.basename(drive.loop!.path)}/loop/backing_file`;
  const backing = fs.existsSync(sys) ? fs.readFileSync(sys, 'utf8').trim() : '';
  assert.ok(backing !== drive.file && backing !== '/', `loop device still attached (${backing})`);
  assert.equal(fs.existsSync(path.dirname(drive.file)), false, 'helper directory left behind');
  const dir = path.dirname(drive.file);
  for (let i = 0; i < 100 && processesUsing(dir).length > 0; i++)
    await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(processesUsing(dir), [], 'nbdkit or nbdfuse still running');
}

test('file helpers are deterministic and see zeros, holes and file ends', (t) => {
  const tmp = tempDir('drivetwin-files-');
  t.after(() => tmp.cleanup());
  const a = path.join(tmp.dir, 'a');
  const b = path.join(tmp.dir, 'b');
  writeRandomFile(a, 5 * MIB + 123, 7);
  writeRandomFile(b, 5 * MIB + 123, 7);
  assert.equal(sha256(a), sha256(b));
  writeRandomFile(b, 5 * MIB + 123, 8);
  assert.notEqual(sha256(a), sha256(b));

  const mixed = path.join(tmp.dir, 'mixed');
  writeMixedFile(mixed, 6 * MIB, 1);
  assert.ok(readRange(mixed, 2 * MIB, MIB).equals(Buffer.alloc(MIB)), 'every third MiB is zero');
  assert.ok(!readRange(mixed, 3 * MIB, MIB).equals(Buffer.alloc(MIB)));
  assert.equal(allocatedBytes(mixed), 6 * MIB, 'zeros are written, not holes');
  const sparse = path.join(tmp.dir, 'sparse');
  fs.writeFileSync(sparse, '');
  fs.truncateSync(sparse, 64 * MIB);
  assert.equal(allocatedBytes(sparse), 0);
  assert.equal(readRange(a, 5 * MIB, 1000).length, 123, 'short at end of file');
});

test('a loop device reports its sector size, hashes like its file and detaches once', (t) => {
  if (!requireRoot(t)) return;
  const tmp = tempDir('drivetwin-loop-');
  t.after(() => tmp.cleanup());
  const a = path.join(tmp.dir, 'a');
  writeRandomFile(a, 5 * MIB + 123, 7);
  for (const sectorSize of [512, 4096] as const) {
    const loop = attachLoop(a, { sectorSize, readOnly: true });
    try {
      assert.equal(loop.sectorSize, sectorSize);
      // The device rounds the file down to whole sectors.
      const size = Math.floor((5 * MIB + 123) / sectorSize) * sectorSize;
      assert.equal(sha256(loop.path), sha256(a, size));
    } finally {
      loop.detach();
      loop.detach();
    }
  }
});

for (const sectorSize of [512, 4096] as const) {
  test(`a faulty drive (${sectorSize}-byte sectors) fails reads of its bad extents with EIO and serves the rest`, async (t) => {
    if (!requireRoot(t)) return;
    const tmp = tempDir('drivetwin-faulty-test-');
    t.after(() => tmp.cleanup());
    const image = path.join(tmp.dir, 'source.img');
    writeRandomFile(image, 8 * MIB, 3);
    const badSector = MIB + 4096 + 512; // one 512-byte sector inside a 4 KiB page
    const drive = await faultyDrive(
      image,
      [
        { offset: badSector, length: 512 },
        { offset: 5 * MIB, length: 64 * 1024 },
      ],
      { sectorSize },
    );
    t.after(() => drive.stop({ kill: true }));
    const dev = drive.loop!.path;
    assert.equal(fs.statSync(dev).isBlockDevice(), true);
    assert.equal(drive.loop!.sectorSize, sectorSize);

    // O_DIRECT (as the engine reads): a fault covers exactly the sectors it touches.
    const badBlock = Math.floor(badSector / sectorSize) * sectorSize;
    assert.throws(() => ddRead(dev, badBlock, sectorSize), /Input\/output error/);
    assert.throws(() => ddRead(dev, 5 * MIB + 60 * 1024, sectorSize), /Input\/output error/);
    assert.throws(
      () => ddRead(dev, MIB, MIB),
      /Input\/output error/,
      'a large read across the fault fails',
    );
    for (const offset of [
      0,
      badBlock - sectorSize,
      badBlock + sectorSize,
      5 * MIB - sectorSize,
      5 * MIB + 64 * 1024,
    ]) {
      assert.ok(
        ddRead(dev, offset, sectorSize).equals(readRange(image, offset, sectorSize)),
        `sector at ${offset}`,
      );
    }
    if (sectorSize === 512) {
      // the neighbours inside the same 4 KiB page are readable
      assert.ok(ddRead(dev, badSector - 512, 512).equals(readRange(image, badSector - 512, 512)));
      assert.ok(ddRead(dev, badSector + 512, 512).equals(readRange(image, badSector + 512, 512)));
    }

    // Plain fs reads (buffered, whole pages).
    const fd = fs.openSync(dev, 'r');
    try {
      const buf = Buffer.alloc(4096);
      assert.throws(() => fs.readSync(fd, buf, 0, 4096, badSector - 512), { code: 'EIO' });
      assert.equal(fs.readSync(fd, buf, 0, 4096, 3 * MIB), 4096);
      assert.ok(buf.equals(readRange(image, 3 * MIB, 4096)));
    } finally {
      fs.closeSync(fd);
    }
    assert.throws(() => sha256(dev), { code: 'EIO' });
    assert.equal(sha256(dev, MIB), sha256(image, MIB));

    drive.stop();
    drive.stop({ kill: true }); // idempotent
    await assertGone(drive);
  });

  test(`a forgetful drive (${sectorSize}-byte sectors) keeps exactly what was flushed when its power is cut`, async (t) => {
    if (!requireRoot(t)) return;
    const tmp = tempDir('drivetwin-forgetful-test-');
    t.after(() => tmp.cleanup());
    const backing = path.join(tmp.dir, 'backing.img');
    fs.writeFileSync(backing, '');
    fs.truncateSync(backing, 8 * MIB);
    const patterns = [1, 2, 3, 4].map((seed) => {
      const file = path.join(tmp.dir, `p${seed}`);
      writeRandomFile(file, 64 * 1024, seed);
      return fs.readFileSync(file);
    });
    const [unflushedEarly, flushed, unflushedLate, ejected] = patterns;
    const zeros = Buffer.alloc(64 * 1024);

    let drive = await forgetfulDrive(backing, { sectorSize });
    t.after(() => drive.stop({ kill: true }));
    const dev = drive.loop!.path;
    assert.equal(drive.loop!.sectorSize, sectorSize);

    // Reaches the drive (O_DIRECT, readable back) but not its medium.
    ddWrite(dev, 1 * MIB, unflushedEarly);
    assert.ok(
      ddRead(dev, 1 * MIB, 64 * 1024).equals(unflushedEarly),
      'the drive serves its own write',
    );
    assert.ok(
      readRange(backing, 1 * MIB, 64 * 1024).equals(zeros),
      'not on the medium before a flush',
    );

    // An ordinary write then fdatasync on the device: on the medium at once.
    const fd = fs.openSync(dev, 'r+');
    try {
      fs.writeSync(fd, flushed, 0, flushed.length, 2 * MIB);
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    assert.ok(
      readRange(backing, 2 * MIB, 64 * 1024).equals(flushed),
      'flushed write on the medium',
    );
    assert.ok(
      readRange(backing, 1 * MIB, 64 * 1024).equals(unflushedEarly),
      'a flush covers earlier writes',
    );

    ddWrite(dev, 3 * MIB, unflushedLate);
    assert.ok(ddRead(dev, 3 * MIB, 64 * 1024).equals(unflushedLate));
    drive.stop({ kill: true });
    await assertGone(drive);
    assert.ok(
      readRange(backing, 3 * MIB, 64 * 1024).equals(zeros),
      'unflushed write lost in the power cut',
    );
    assert.ok(
      readRange(backing, 2 * MIB, 64 * 1024).equals(flushed),
      'flushed write survives the power cut',
    );

    // Powered on again over the same medium: it shows what survived; a clean stop keeps all.
    drive = await forgetfulDrive(backing, { sectorSize });
    assert.ok(ddRead(drive.loop!.path, 2 * MIB, 64 * 1024).equals(flushed));
    assert.ok(ddRead(drive.loop!.path, 3 * MIB, 64 * 1024).equals(zeros));
    ddWrite(drive.loop!.path, 4 * MIB, ejected);
    drive.stop();
    await assertGone(drive);
    assert.ok(readRange(backing, 4 * MIB, 64 * 1024).equals(ejected), 'a clean stop flushes');
  });
}
