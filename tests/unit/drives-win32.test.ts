// Windows: Get-Disk, Get-Partition, Get-Volume and Get-BitLockerVolume (as
// STORAGE_SCRIPT prints them) read into the one picture of drives, and the exact calls
// win32.ts makes to open, prepare, write, flush and eject a drive, recorded against a
// fake OS. The fixtures are constructed from documentation, not captured
// (tests/fixtures/drives/windows-laptop/README.md).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { classifyDrives, type Drive, type DrivelistEntry } from '../../engine/drives/classify';
import { driveFacts } from '../../engine/drives/facts';
import { DriveError, useDrivePlatform } from '../../engine/drives/platform';
import { sourceVerdict, targetVerdict } from '../../engine/drives/safety';
import { diskNumber, powershellArgs, win32Platform } from '../../engine/drives/win32';
import { STORAGE_SCRIPT, win32Snapshot } from '../../engine/drives/win32-storage';
import { systemDisks } from '../../engine/drives/topology';
import { decodedScript, type FakeOs, type FakeOsAnswers, fakeOs } from '../helpers/fake-os';
import { type FakeVolume, type FakeWin32Answers, fakeWin32 } from '../helpers/fake-win32';

const FIXTURES = path.join(__dirname, '..', '..', '..', 'tests', 'fixtures', 'drives');
const laptop = (): string =>
  fs.readFileSync(path.join(FIXTURES, 'windows-laptop', 'storage.json'), 'utf8');
const desktop = (): string =>
  fs.readFileSync(path.join(FIXTURES, 'windows-desktop', 'storage.json'), 'utf8');

/** drivelist's entries for disks 0..n-1, as it names them on Windows. */
function listed(json: string, count: number): Record<string, Drive> {
  const entries: DrivelistEntry[] = [...Array(count).keys()].map((n) => ({
    device: `\\\\.\\PHYSICALDRIVE${n}`,
    raw: `\\\\.\\PHYSICALDRIVE${n}`,
    description: `drivelist ${n}`,
    size: 1,
    isRemovable: false,
    isReadOnly: false,
    mountpoints: [],
  }));
  const drives = classifyDrives(entries, win32Snapshot(json));
  return Object.fromEntries(drives.map((d) => [d.path.slice(-1), d]));
}

/** The answers PowerShell gives on this laptop, for the fake OS. */
function powershellAnswers(more: FakeOsAnswers['run'] = () => ({})): FakeOsAnswers {
  return {
    run: (command, args, script) => {
      if (script?.includes('Get-Disk | Select-Object')) return { stdout: laptop() };
      return more(command, args, script);
    },
    geometry: { size: 30752636928, logicalSectorSize: 512, serial: null },
  };
}

afterEach(() => useDrivePlatform(null));

describe('PowerShell storage JSON read into the picture of drives', () => {
  test('the NVMe disk holds the system; the stick is removable and mounted at E:', () => {
    const d = listed(laptop(), 4);
    assert.equal(d['0'].system, true);
    assert.equal(d['0'].removable, false);
    assert.equal(d['0'].bus, 'nvme');
    assert.equal(d['0'].name, 'SAMSUNG MZVL2512HCJQ-00B00');
    assert.equal(d['0'].serial, '0025_3881_2163_5A1E.');
    assert.deepEqual(d['0'].mountpoints, ['C:\\']);
    assert.equal(d['1'].system, false);
    assert.equal(d['1'].removable, true);
    assert.equal(d['1'].readOnly, false);
    assert.deepEqual(d['1'].mountpoints, ['E:\\']);
    assert.equal(d['1'].path, '\\\\.\\PHYSICALDRIVE1', 'the path drivelist gave');
  });

  test('the card reader with no card: size 0, so "no medium"; BitLocker volumes are flagged', () => {
    const d = listed(laptop(), 4);
    assert.equal(d['2'].size, 0);
    assert.equal(d['2'].removable, true);
    assert.match(targetVerdict(driveFacts(d['2'])).reasons.join(), /has no medium/);
    assert.deepEqual(d['0'].notes, ['bitlocker']);
    assert.deepEqual(d['3'].notes, ['bitlocker', 'bitlocker-locked']);
    assert.equal(d['1'].notes, undefined, 'a FAT stick BitLocker reports decrypted');
    assert.match(sourceVerdict(driveFacts(d['0'])).reasons.join(), /BitLocker.*encrypted bytes/);
  });

  test('a BitLocker target is confirmed with its consequence, in Windows terms', () => {
    useDrivePlatform(win32Platform(fakeOs(), { win: null }));
    const t7 = listed(laptop(), 4)['3'];
    assert.deepEqual(targetVerdict(driveFacts(t7), { allowMounted: true }).reasons, [
      'everything on \\\\.\\PHYSICALDRIVE3 (Samsung PSSD T7, 931.5 GiB) will be overwritten',
      '\\\\.\\PHYSICALDRIVE3 is mounted at F:\\: its volumes are locked before it is written',
      '\\\\.\\PHYSICALDRIVE3 holds a BitLocker volume: its contents are lost for good, recovery key or not',
      '\\\\.\\PHYSICALDRIVE3 holds a locked BitLocker volume',
    ]);
  });

  test('a dynamic disk is flagged, a read-only disk is read-only, and the system is the boot disk', () => {
    const d = listed(desktop(), 3);
    assert.deepEqual(d['1'].notes, ['dynamic']);
    assert.match(
      targetVerdict(driveFacts(d['1'])).reasons.join('\n'),
      /dynamic disk: volumes that span/,
    );
    assert.equal(d['2'].readOnly, true);
    assert.equal(d['2'].bus, 'virtual');
    assert.deepEqual(
      Object.values(d)
        .filter((x) => x.system)
        .map((x) => x.path.slice(-1)),
      ['0'],
    );
  });

  test('one object where ConvertTo-Json had a one-item list, nothing where it had none', () => {
    const one = JSON.parse(laptop()) as { Disks: unknown[]; Partitions: unknown[] };
    const single = JSON.stringify({
      ...one,
      Disks: one.Disks[1],
      Partitions: [one.Partitions[4]],
      BitLocker: null,
    });
    const s = win32Snapshot(single);
    assert.deepEqual(
      [...s.topology.nodes.values()].map((n) => n.type),
      ['disk', 'part', 'volume'],
    );
  });

  test('a real capture (GitHub windows-latest runner, tests/fixtures/drives/windows-runner): disks and partitions', () => {
    const real = fs.readFileSync(path.join(FIXTURES, 'windows-runner', 'get-disk.json'), 'utf8');
    const s = win32Snapshot(real);
    const disks = [...s.topology.nodes.values()].filter((n) => n.type === 'disk');
    assert.deepEqual(
      disks.map((d) => [d.name, d.bus, d.size, d.serial]),
      [
        ['PhysicalDrive2', 'virtual', 23622320128, null],
        ['PhysicalDrive0', 'sas', 161061273600, null],
        ['PhysicalDrive1', 'sas', 161061273600, null],
      ],
    );
    assert.equal([...s.topology.nodes.values()].filter((n) => n.type === 'part').length, 5);
    assert.deepEqual(
      [...systemDisks(s)],
      ['PhysicalDrive0'],
      'the disk Get-Disk calls boot and system',
    );
    assert.deepEqual(s.uses, [], 'no Get-Volume in this capture: no volumes, nothing mounted');
  });

  test('as a real Get-Partition prints it: a null among AccessPaths, no letter as "\\u0000"', () => {
    // The shapes seen in a capture from GitHub's windows-latest runner (README of the
    // fixture): a reserved partition's AccessPaths is [null], SerialNumber null, the
    // bus as its name.
    const s = win32Snapshot(
      JSON.stringify({
        SystemDrive: 'C:',
        Disks: [{ Number: 0, FriendlyName: 'Msft Virtual Disk', SerialNumber: null, BusType: 'SAS', Size: 161061273600, LogicalSectorSize: 512, IsBoot: true, IsSystem: true, IsReadOnly: false }],
        Partitions: [
          { DiskNumber: 0, PartitionNumber: 1, DriveLetter: '\u0000', AccessPaths: [null], Size: 16777216 },
          { DiskNumber: 0, PartitionNumber: 4, DriveLetter: 'C', AccessPaths: ['C:\\', '\\\\?\\Volume{efef19e4-aa31-40cb-91c7-6829a696271c}\\'], Size: 160467762688 },
        ],
        Volumes: [{ DriveLetter: 'C', Path: '\\\\?\\Volume{efef19e4-aa31-40cb-91c7-6829a696271c}\\', FileSystem: 'NTFS', Size: 160467762688 }],
      }),
    ); // prettier-ignore
    const disk = s.topology.nodes.get('PhysicalDrive0')!;
    assert.equal(disk.serial, null);
    assert.equal(disk.bus, 'sas');
    assert.deepEqual(
      [...s.topology.nodes.values()].map((n) => n.type),
      ['disk', 'part', 'part', 'volume'],
    );
    assert.deepEqual(
      s.uses.map((u) => u.mountpoint),
      ['C:\\'],
    );
    assert.deepEqual([...systemDisks(s)], ['PhysicalDrive0']);
  });

  test('paths: \\\\.\\PhysicalDriveN in any case; the script goes as -EncodedCommand', () => {
    assert.equal(diskNumber('\\\\.\\PHYSICALDRIVE12'), 12);
    assert.equal(diskNumber('\\\\.\\C:'), null);
    assert.equal(
      decodedScript(powershellArgs(STORAGE_SCRIPT))?.split('\n')[0].slice(0, 16),
      '$disks = @(Get-D',
    );
  });

  test('a file on E: lies on the stick: the platform finds the volume under it', () => {
    const win = win32Platform(fakeOs(), { win: null });
    const s = win32Snapshot(laptop());
    const node = win.fileSystemNode('E:\\images\\pi.img', 0n, s);
    assert.equal(node?.type, 'volume');
    assert.deepEqual(node?.aliases.slice(-2), ['E:', 'E:\\']);
  });
});

/** The volumes Windows has: C: on disk 0, the stick's E: and a letter-less second volume on disk 1. */
const VOLUMES: FakeVolume[] = [
  {
    name: '\\\\?\\Volume{4d36e96a-1f0c-4c3e-9b5a-0a1b2c3d4e02}\\',
    paths: ['C:\\'],
    extents: [{ disk: 0, offset: 290455552, length: 510000000000 }],
  },
  {
    name: '\\\\?\\Volume{9f2c7a10-3b4d-11ef-8c1a-806e6f6e6963}\\',
    paths: ['E:\\'],
    extents: [{ disk: 1, offset: 1048576, length: 268435456 }],
  },
  {
    // No access path: Get-Partition would not name it; volume enumeration does.
    name: '\\\\?\\Volume{0b5e7c44-2a1d-4f6e-9c3b-5d8e1f2a3b4c}\\',
    paths: [],
    extents: [{ disk: 1, offset: 269484032, length: 4294967296 }],
  },
];

/** A fake OS answering PowerShell as this laptop, and a fake kernel32 recording into the same list. */
function windows(
  answers: Partial<FakeWin32Answers> = {},
  os: FakeOs = fakeOs(powershellAnswers()),
): { os: FakeOs; platform: ReturnType<typeof win32Platform> } {
  const win = fakeWin32(os.calls, { volumes: VOLUMES, ...answers });
  return { os, platform: win32Platform(os, { win }) };
}

const PS = 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe';
const E = '\\\\?\\Volume{9f2c7a10-3b4d-11ef-8c1a-806e6f6e6963}';
const HIDDEN = '\\\\?\\Volume{0b5e7c44-2a1d-4f6e-9c3b-5d8e1f2a3b4c}';
/** What finding disk 1's volumes looks like. */
const ENUMERATE = [
  'FindFirstVolumeW/FindNextVolumeW: 3 volumes',
  'IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS \\\\?\\Volume{4d36e96a-1f0c-4c3e-9b5a-0a1b2c3d4e02}\\ = disk 0 at 290455552',
  `IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS ${E}\\ = disk 1 at 1048576`,
  `GetVolumePathNamesForVolumeNameW ${E}\\ = E:\\`,
  `IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS ${HIDDEN}\\ = disk 1 at 269484032`,
  `GetVolumePathNamesForVolumeNameW ${HIDDEN}\\ = (none)`,
];

/** What letting go of them looks like: each opened, locked, dismounted. */
const LET_GO = [
  `CreateFileW ${E} = 100`,
  'FSCTL_LOCK_VOLUME 100',
  'FSCTL_DISMOUNT_VOLUME 100',
  `CreateFileW ${HIDDEN} = 101`,
  'FSCTL_LOCK_VOLUME 101',
  'FSCTL_DISMOUNT_VOLUME 101',
];

describe('Windows: open → prepare → write → flush → eject, as recorded', () => {
  test('a USB stick: every volume of the disk enumerated, locked and dismounted (one has no access path), then written, re-read, ejected without a letter', async () => {
    const { os, platform } = windows();
    const drive = await platform.openDrive('\\\\.\\PhysicalDrive1', true);
    await drive.write(Buffer.alloc(4096), 0);
    await drive.flush();
    await drive.close();
    assert.deepEqual(await platform.afterCopy('\\\\.\\PhysicalDrive1', false), {
      safeToRemove: true,
      ejected: false,
      note: null,
    });
    assert.deepEqual(os.calls, [
      `run ${PS}: $disks = @(Get-Disk | Select-Object Number, FriendlyName, Se…`,
      ...ENUMERATE,
      ...LET_GO,
      'open \\\\.\\PhysicalDrive1 O_RDWR|O_DIRECT|O_DSYNC|O_EXLOCK = 3',
      'getBlockDevice 3',
      'pwrite 3 0+4096',
      'fdatasync 3',
      'close 3',
      // After the copy: the new table read while the old volumes are still held.
      'CreateFileW \\\\.\\PhysicalDrive1 = 102',
      'IOCTL_DISK_UPDATE_PROPERTIES 102',
      'CloseHandle 101',
      'CloseHandle 100',
      'IOCTL_DISK_ARE_VOLUMES_READY 102',
      'CloseHandle 102',
    ]);
  });

  test('eject without a drive letter: volumes let go of, IOCTL_STORAGE_EJECT_MEDIA through one of them, or through the disk', async () => {
    const { os, platform } = windows();
    assert.deepEqual(await platform.afterCopy('\\\\.\\PhysicalDrive1', true), {
      safeToRemove: true,
      ejected: true,
      note: null,
    });
    assert.deepEqual(os.calls, [
      ...ENUMERATE,
      ...LET_GO,
      'IOCTL_STORAGE_EJECT_MEDIA 100',
      'CloseHandle 101',
      'CloseHandle 100',
    ]);
    // A disk with no volume at all (a Linux image: nothing Windows mounts): through the disk.
    const bare = windows({ volumes: VOLUMES.slice(0, 1) });
    assert.equal((await bare.platform.afterCopy('\\\\.\\PhysicalDrive1', true)).ejected, true);
    assert.deepEqual(bare.os.calls.slice(-3), [
      'CreateFileW \\\\.\\PhysicalDrive1 = 100',
      'IOCTL_STORAGE_EJECT_MEDIA 100',
      'CloseHandle 100',
    ]);
    // Windows refuses: not ejected, said so.
    const refused = windows({ fails: { IOCTL_STORAGE_EJECT_MEDIA: 50 } });
    const r = await refused.platform.afterCopy('\\\\.\\PhysicalDrive1', true);
    assert.equal(r.ejected, false);
    assert.match(r.note ?? '', /not ejected .*ERROR_NOT_SUPPORTED.*Safely Remove Hardware/);
  });

  test('a volume still in use: the lock is retried with growing waits, then refused naming the holder Restart Manager names', async () => {
    const { os, platform } = windows({
      lockFailures: Infinity,
      holders: [{ pid: 4120, name: 'VLC media player' }],
    });
    await assert.rejects(platform.openDrive('\\\\.\\PhysicalDrive1', true), (e: DriveError) => {
      assert.equal(e.code, 'EBUSY');
      assert.equal(e.holder, 'VLC media player (PID 4120) holds E:: close it and try again');
      return true;
    });
    assert.deepEqual(
      os.calls.filter((c) => c.startsWith('sleep')),
      ['sleep 250', 'sleep 500', 'sleep 1000', 'sleep 2000', 'sleep 4000'],
    );
    assert.equal(os.calls.filter((c) => c.startsWith('FSCTL_LOCK_VOLUME')).length, 6);
    assert.ok(os.calls.includes(`RmGetList E:\\ ${E}\\ = VLC media player (4120)`));
    assert.ok(!os.calls.some((c) => c.includes('PhysicalDrive1 O_RDWR')), 'never opened');
    assert.equal(os.calls.at(-1), 'CloseHandle 100', 'the volume handle was let go');
  });

  test('Restart Manager names nobody: the programs running from the volume, else "Windows does not say which"', async () => {
    const os = fakeOs(
      powershellAnswers((_c, _a, script) =>
        script?.includes('Get-Process') ? { stdout: '[{"Id":4121,"ProcessName":"cmd"}]' } : {},
      ),
    );
    const { platform } = windows({ lockFailures: Infinity }, os);
    await assert.rejects(platform.openDrive('\\\\.\\PhysicalDrive1', true), (e: DriveError) => {
      assert.equal(e.holder, 'cmd (PID 4121) holds E:: close it and try again');
      return true;
    });
    // The volume without a letter: nothing runs "from" it that Windows can say.
    const hidden = windows({
      volumes: [VOLUMES[2]],
      lockFailures: Infinity,
    });
    await assert.rejects(
      hidden.platform.openDrive('\\\\.\\PhysicalDrive1', true),
      (e: DriveError) => {
        assert.match(
          e.holder ?? '',
          new RegExp(
            `files open on ${HIDDEN.replace(/[\\{}?]/g, '\\$&')} \\(Windows does not say which\\)`,
          ),
        );
        return true;
      },
    );
  });

  test('a lock that succeeds on a later try goes on to dismount and the drive', async () => {
    const { os, platform } = windows({ lockFailures: 2 });
    await (await platform.openDrive('\\\\.\\PhysicalDrive1', true)).close();
    assert.deepEqual(os.calls.slice(8, 13), [
      'FSCTL_LOCK_VOLUME 100 -> ERROR_ACCESS_DENIED',
      'sleep 250',
      'FSCTL_LOCK_VOLUME 100 -> ERROR_ACCESS_DENIED',
      'sleep 500',
      'FSCTL_LOCK_VOLUME 100',
    ]);
    assert.ok(os.calls.includes('FSCTL_DISMOUNT_VOLUME 100'));
    assert.ok(os.calls.includes('open \\\\.\\PhysicalDrive1 O_RDWR|O_DIRECT|O_DSYNC|O_EXLOCK = 3'));
  });

  test('a write Windows refuses (EPERM from libuv) names the volume it fell in', async () => {
    const os = fakeOs({
      ...powershellAnswers(),
      writeFails: (offset) => (offset >= 269484032 ? 'EPERM' : null),
    });
    const { platform } = windows({}, os);
    const drive = await platform.openDrive('\\\\.\\PhysicalDrive1', true);
    await drive.write(Buffer.alloc(4096), 0);
    await assert.rejects(drive.write(Buffer.alloc(4096), 269484032 + 8192), (e: Error) => {
      assert.equal(
        e.message,
        `Windows refused the write at byte 269492224: a volume on this disk is still in use (${HIDDEN}); close what uses it and resume (EPERM)`,
      );
      return true;
    });
    await drive.close();
  });

  test('reading a disk: unbuffered, no volume touched', async () => {
    const { os, platform } = windows();
    await (await platform.openDrive('\\\\.\\PhysicalDrive0', false)).close();
    assert.deepEqual(os.calls.slice(1), [
      'open \\\\.\\PhysicalDrive0 O_RDONLY|O_DIRECT = 3',
      'getBlockDevice 3',
      'close 3',
    ]);
  });

  test('the physical drive open elsewhere (share mode 0 refused): retried, then busy, and the volumes let go', async () => {
    const os = fakeOs({
      ...powershellAnswers(),
      openFails: (p) => (p.includes('PhysicalDrive') ? 'EBUSY' : null),
    });
    const { platform } = windows({}, os);
    await assert.rejects(platform.openDrive('\\\\.\\PhysicalDrive1', true), /in use/);
    assert.deepEqual(
      os.calls.filter((c) => c.startsWith('sleep')),
      ['sleep 100', 'sleep 200', 'sleep 400', 'sleep 800', 'sleep 1600', 'sleep 3200'],
    );
    assert.equal(os.calls.filter((c) => c.includes('PhysicalDrive1 O_RDWR')).length, 7);
    assert.deepEqual(os.calls.slice(-2), ['CloseHandle 101', 'CloseHandle 100']);
  });

  test('a drive held for a moment (Explorer re-reading it): the exclusive open is retried and wins', async () => {
    let refusals = 2;
    const os = fakeOs({
      ...powershellAnswers(),
      openFails: (p) => (p.includes('PhysicalDrive') && refusals-- > 0 ? 'EBUSY' : null),
    });
    const { platform } = windows({}, os);
    const drive = await platform.openDrive('\\\\.\\PhysicalDrive1', true);
    assert.deepEqual(os.calls.slice(13, 18), [
      'open \\\\.\\PhysicalDrive1 O_RDWR|O_DIRECT|O_DSYNC|O_EXLOCK -> EBUSY',
      'sleep 100',
      'open \\\\.\\PhysicalDrive1 O_RDWR|O_DIRECT|O_DSYNC|O_EXLOCK -> EBUSY',
      'sleep 200',
      'open \\\\.\\PhysicalDrive1 O_RDWR|O_DIRECT|O_DSYNC|O_EXLOCK = 3',
    ]);
    await drive.close();
  });

  test('after the copy the disk could not be asked to re-read: the note says to replug it', async () => {
    const { platform } = windows({ fails: { IOCTL_DISK_UPDATE_PROPERTIES: 5 } });
    await (await platform.openDrive('\\\\.\\PhysicalDrive1', true)).close();
    const r = await platform.afterCopy('\\\\.\\PhysicalDrive1', false);
    assert.match(
      r.note ?? '',
      /did not read its new partition table .*ERROR_ACCESS_DENIED.*plug it in again/,
    );
  });
});
