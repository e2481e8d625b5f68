// The platform layer: Linux's open → write → flush → eject sequence recorded against a
// fake OS (the same calls DriveTwin always made), and the engine's block device and
// after-copy step going through whichever platform module is in place — never asking
// which system it is.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { linuxPlatform } from '../../engine/drives/linux';
import {
  type DrivePlatform,
  DriveError,
  drivePlatform,
  useDrivePlatform,
} from '../../engine/drives/platform';
import { BlockDevice } from '../../engine/io/block-device';
import { alignedBuffer } from '../../engine/io/buffers';
import { releaseDrives } from '../../engine/session/removal';
import type { Device } from '../../engine/io/device';
import { fakeOs } from '../helpers/fake-os';

const FACTS = { size: 8 * 1024 * 1024, logicalBlockSize: 512, serial: 'S1', backingFile: null };

afterEach(() => useDrivePlatform(null));

describe('Linux: open → prepare → write → flush → eject, as recorded', () => {
  test('O_RDWR | O_EXCL | O_DIRECT, sysfs geometry, fdatasync; eject only when asked', async () => {
    const os = fakeOs();
    const linux = linuxPlatform(os, () => FACTS);
    const drive = await linux.openDrive('/dev/sdx', true);
    assert.equal(drive.size, FACTS.size);
    assert.equal(drive.rawPath, '/dev/sdx');
    await drive.write(Buffer.alloc(4096), 8192);
    await drive.flush();
    await drive.close();
    await drive.close(); // closing twice closes once
    assert.deepEqual(await linux.afterCopy('/dev/sdx', false), {
      safeToRemove: true,
      ejected: false,
      note: null,
    });
    assert.deepEqual(await linux.afterCopy('/dev/sdx', true), {
      safeToRemove: true,
      ejected: true,
      note: null,
    });
    assert.deepEqual(os.calls, [
      'open /dev/sdx O_RDWR|O_EXCL|O_DIRECT = 3',
      'pwrite 3 8192+4096',
      'fdatasync 3',
      'close 3',
      // The kernel reads the new partition table, after each copy.
      'open /dev/sdx O_RDONLY = 4',
      'ioctl 4 BLKRRPART',
      'close 4',
      'open /dev/sdx O_RDONLY = 5',
      'ioctl 5 BLKRRPART',
      'close 5',
      'run /usr/bin/eject /dev/sdx',
    ]);
  });

  test('after the copy a partition still in use keeps the kernel from re-reading: the note says so', async () => {
    const os = fakeOs({ rereadFails: 'EBUSY' });
    const removal = await linuxPlatform(os, () => FACTS).afterCopy('/dev/sdx', false);
    assert.match(
      removal.note ?? '',
      /Linux kept its old partitions of \/dev\/sdx \(EBUSY\): run "partprobe/,
    );
    // A loop device without partition scanning has no table to re-read: nothing to say.
    const loop = fakeOs({ rereadFails: 'EINVAL' });
    assert.equal(
      (await linuxPlatform(loop, () => FACTS).afterCopy('/dev/loop3', false)).note,
      null,
    );
  });

  test('reading: O_RDONLY | O_DIRECT; a drive whose facts fail is closed again', async () => {
    const os = fakeOs();
    await (await linuxPlatform(os, () => FACTS).openDrive('/dev/sdx', false)).close();
    const failing = linuxPlatform(os, () => {
      throw new Error('no sysfs node');
    });
    await assert.rejects(failing.openDrive('/dev/sdy', false), /no sysfs node/);
    assert.deepEqual(os.calls, [
      'open /dev/sdx O_RDONLY|O_DIRECT = 3',
      'close 3',
      'open /dev/sdy O_RDONLY|O_DIRECT = 4',
      'close 4',
    ]);
  });

  test('image files are locked with flock', async () => {
    const os = fakeOs();
    await linuxPlatform(os).lockFile(9);
    assert.deepEqual(os.calls, ['setFlock 9 1']);
  });

  test('this machine is Linux, and the live module says so', () => {
    assert.equal(drivePlatform().system, 'linux');
    assert.equal(drivePlatform().whenInUse, 'it will be written while in use');
  });
});

describe('the engine goes through the platform module', () => {
  /** The live Linux module, but for a fake OS and fixed facts. */
  function fakeLinux(): { platform: DrivePlatform; calls: string[] } {
    const os = fakeOs();
    return { platform: linuxPlatform(os, () => FACTS), calls: os.calls };
  }

  test("BlockDevice opens, writes, flushes and closes through it; a short tail is padded to the drive's block", async () => {
    const { platform, calls } = fakeLinux();
    useDrivePlatform(platform);
    const device = await BlockDevice.open('/dev/sdx', true);
    assert.equal(device.size, FACTS.size);
    // The copier's buffers are aligned, with room to the next 4 KiB (io/buffers.ts).
    await device.write(alignedBuffer(4096 + 100), 0);
    await device.flush();
    await device.close();
    assert.deepEqual(calls, [
      'open /dev/sdx O_RDWR|O_EXCL|O_DIRECT = 3',
      'pwrite 3 0+4608',
      'fdatasync 3',
      'close 3',
    ]);
  });

  test('a refusal in words (busy, Full Disk Access) reaches the claim as it is', async () => {
    const refusal = new DriveError(
      '/dev/disk4 is in use: tail has files open on it',
      'EBUSY',
      'tail',
    );
    useDrivePlatform({
      ...fakeLinux().platform,
      openDrive: async () => {
        throw refusal;
      },
    });
    await assert.rejects(BlockDevice.open('/dev/disk4', true), (e) => e === refusal);
  });

  test('after a job: drives only, ejected when asked, and a failure to say is "not safe"', async () => {
    const asked: string[] = [];
    useDrivePlatform({
      ...fakeLinux().platform,
      afterCopy: async (p, eject) => {
        asked.push(`${p} ${eject}`);
        if (p === '/dev/sdz') throw new Error('diskutil vanished');
        return { safeToRemove: true, ejected: eject, note: null };
      },
    });
    const device = (path: string, kind: 'block' | 'file'): Device => ({ path, kind }) as Device;
    const removals = await releaseDrives(
      [device('/dev/sdx', 'block'), device('/tmp/a.img', 'file'), device('/dev/sdz', 'block')],
      true,
    );
    assert.deepEqual(asked, ['/dev/sdx true', '/dev/sdz true']);
    assert.deepEqual(Object.fromEntries(removals), {
      '/dev/sdx': { safeToRemove: true, ejected: true, note: null },
      '/dev/sdz': { safeToRemove: false, ejected: false, note: 'diskutil vanished' },
    });
  });
});
