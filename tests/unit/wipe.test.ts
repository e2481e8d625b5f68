// What a new job wipes before its first region (engine/session/wipe.ts): a destination's
// first and last MiB, and wherever its old GPT says the backup lies — a disk once
// partitioned at a smaller size keeps its backup in the middle. Real bytes in an image
// file partitioned by sgdisk; a mapfile's regions are left alone.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ImageFile } from '../../engine/io/image-file';
import { oldTableRanges, wipe, without } from '../../engine/partitions/wipe';
import { tempDir } from '../helpers/files';

const MIB = 1024 * 1024;

test('first and last MiB, and the backup an old GPT points to in the middle', async (t) => {
  const tmp = tempDir('drivetwin-wipe-');
  t.after(() => tmp.cleanup());
  const file = path.join(tmp.dir, 'old.img');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, 64 * MIB);
  execFileSync('sgdisk', ['-o', '-n', '1:2048:+16M', file], { stdio: 'ignore' });
  fs.truncateSync(file, 96 * MIB); // the disk grew: its backup GPT stays at 64 MiB
  const device = ImageFile.open(file, true);
  try {
    const ranges = await oldTableRanges(device);
    const backupHeader = 64 * MIB - 512;
    assert.deepEqual(ranges, [
      { offset: 0, length: MIB },
      { offset: backupHeader - 32 * 512, length: 33 * 512 },
      { offset: 95 * MIB, length: MIB },
    ]);
    const before = fs.readFileSync(file);
    assert.equal(before.toString('latin1', backupHeader, backupHeader + 8), 'EFI PART');
    assert.equal(await wipe(device, ranges), 2 * MIB + 33 * 512);
    const after = fs.readFileSync(file);
    assert.ok(after.subarray(0, MIB).equals(Buffer.alloc(MIB)), 'the MBR and primary GPT');
    assert.notEqual(after.toString('latin1', backupHeader, backupHeader + 8), 'EFI PART');
    // Nothing else: the partition's bytes and the rest are as they were.
    assert.ok(
      after
        .subarray(MIB, backupHeader - 32 * 512)
        .equals(before.subarray(MIB, backupHeader - 32 * 512)),
    );
    assert.equal(await wipe(device, []), 0, 'nothing to wipe: nothing written, nothing flushed');
  } finally {
    await device.close();
  }
});

test("a mapfile's regions are left as they are", () => {
  const ranges = [
    { offset: 0, length: MIB },
    { offset: 95 * MIB, length: MIB },
  ];
  assert.deepEqual(without(ranges, [{ offset: 256 * 1024, length: 512 * 1024 }]), [
    { offset: 0, length: 256 * 1024 },
    { offset: 768 * 1024, length: 256 * 1024 },
    { offset: 95 * MIB, length: MIB },
  ]);
  assert.deepEqual(without(ranges, [{ offset: 0, length: 96 * MIB }]), []);
});
