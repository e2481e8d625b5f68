// macOS: diskutil's plists read into the one picture of drives (system disk, removable,
// read-only, mounted), and the exact calls darwin.ts makes to open, prepare, write,
// flush and eject a drive, recorded against a fake OS. The fixtures are constructed
// from documentation, not captured (tests/fixtures/drives/macbook-air/README.md).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { classifyDrives, type DrivelistEntry } from '../../engine/drives/classify';
import { DISKUTIL, darwinPlatform } from '../../engine/drives/darwin';
import { bsdName, darwinSnapshot, dissenter } from '../../engine/drives/darwin-diskutil';
import { driveFacts } from '../../engine/drives/facts';
import { DriveError, useDrivePlatform } from '../../engine/drives/platform';
import { parsePlist } from '../../engine/drives/plist';
import { targetVerdict } from '../../engine/drives/safety';
import { mountpointsOf, systemDisks } from '../../engine/drives/topology';
import { type FakeOsAnswers, fakeOs } from '../helpers/fake-os';

const MAC = path.join(__dirname, '..', '..', '..', 'tests', 'fixtures', 'drives', 'macbook-air');
const read = (name: string): string => fs.readFileSync(path.join(MAC, name), 'utf8');
const DISKS = ['disk0', 'disk1', 'disk2', 'disk3', 'disk4', 'disk5'];

function snapshot() {
  const infos = Object.fromEntries(DISKS.map((d) => [d, read(`info-${d}.plist`)]));
  return darwinSnapshot(read('list.plist'), infos, read('info-root.plist'));
}

/** The answers diskutil gives on this MacBook, for the fake OS. */
function diskutilAnswers(more: FakeOsAnswers['run'] = () => ({})): FakeOsAnswers {
  return {
    run: (command, args, script) => {
      if (command === DISKUTIL && args[0] === 'list') return { stdout: read('list.plist') };
      if (command === DISKUTIL && args[0] === 'info') {
        return { stdout: read(args[2] === '/' ? 'info-root.plist' : `info-${args[2]}.plist`) };
      }
      return more(command, args, script);
    },
    geometry: { size: 30752636928, logicalSectorSize: 512, serial: null },
  };
}

/** The picture read before a drive is opened: without blocking ("run", not "read"). */
const SNAPSHOT_READS = [
  'run /usr/sbin/diskutil list -plist',
  ...DISKS.map((d) => `run /usr/sbin/diskutil info -plist ${d}`),
  'run /usr/sbin/diskutil info -plist /',
];

afterEach(() => useDrivePlatform(null));

describe('diskutil -plist read into the picture of drives', () => {
  test('the plist reader: nested dicts and arrays, escapes, empty and self-closed values', () => {
    const value = parsePlist(
      '<?xml version="1.0"?><!-- a note --><plist version="1.0"><dict><key>A &amp; B</key>' +
        '<array><integer>7</integer><true/><string></string><string> x </string></array>' +
        '<key>D</key><dict/><key>E</key><array/></dict></plist>',
    );
    assert.deepEqual(value, { 'A & B': [7, true, '', ' x '], D: {}, E: [] });
    assert.throws(() => parsePlist('<dict></dict>'), /no <plist>/);
  });

  test('the internal disk holds the system: / is a sealed snapshot on an APFS container on disk0s2', () => {
    const s = snapshot();
    assert.deepEqual([...systemDisks(s)].sort(), ['disk0']);
    const d3 = s.topology.nodes.get('disk3')!;
    assert.equal(d3.type, 'apfs-container');
    assert.deepEqual(d3.parents, ['disk0s2']);
    assert.deepEqual(s.topology.nodes.get('disk3s1s1')?.parents, ['disk3s1']);
    assert.ok(mountpointsOf(s, 'disk0').includes('/'));
    assert.ok(mountpointsOf(s, 'disk0').includes('/System/Volumes/Data'));
  });

  test('drivelist entries come out with system, removable, read-only and mounted facts', () => {
    const entry = (device: string): DrivelistEntry => ({
      device,
      raw: device.replace('/dev/disk', '/dev/rdisk'),
      description: 'from drivelist',
      size: 1,
      isRemovable: false,
      isReadOnly: false,
      mountpoints: [],
    });
    const drives = classifyDrives(
      // drivelist (DiskArbitration) lists APFS containers as whole disks too.
      ['/dev/disk0', '/dev/disk3', '/dev/disk4', '/dev/disk5'].map(entry),
      snapshot(),
    );
    const by = Object.fromEntries(drives.map((d) => [d.path, d]));
    assert.deepEqual(
      ['system', 'removable', 'readOnly', 'bus', 'size', 'name'].map(
        (k) => by['/dev/disk0'][k as 'system'],
      ),
      [true, false, false, 'fabric', 500277790720, 'APPLE SSD AP0512Z'],
    );
    assert.equal(by['/dev/disk3'].system, true, 'the container of / is on the system disk');
    assert.ok(by['/dev/disk3'].mountpoints.includes('/'));
    assert.equal(by['/dev/disk4'].system, false);
    assert.equal(by['/dev/disk4'].removable, true);
    assert.equal(by['/dev/disk4'].readOnly, false);
    assert.equal(by['/dev/disk4'].bus, 'usb');
    assert.deepEqual(by['/dev/disk4'].mountpoints, ['/Volumes/NO NAME']);
    assert.equal(by['/dev/disk5'].readOnly, true, 'the SD card is locked');
    assert.equal(by['/dev/disk5'].removable, true, 'the internal SD slot holds removable media');
    assert.equal(by['/dev/disk5'].bus, 'mmc');
    assert.deepEqual(by['/dev/disk5'].mountpoints, ['/Volumes/bootfs']);
    assert.equal(by['/dev/disk5'].logicalBlockSize, 512);
  });

  test('the safety rule says it in macOS terms: mounted drives are unmounted first', () => {
    useDrivePlatform(darwinPlatform(fakeOs()));
    const entry: DrivelistEntry = {
      device: '/dev/disk4',
      size: 1,
      isRemovable: true,
      isReadOnly: false,
      mountpoints: [],
    };
    const [stick] = classifyDrives([entry], snapshot());
    assert.equal(targetVerdict(driveFacts(stick)).level, 'refused');
    assert.deepEqual(targetVerdict(driveFacts(stick), { allowMounted: true }).reasons, [
      'everything on /dev/disk4 (SanDisk Cruzer Blade, 28.6 GiB) will be overwritten',
      '/dev/disk4 is mounted at /Volumes/NO NAME: it is unmounted before it is written — by force if a program keeps it busy (what that program has not saved on it is lost)',
    ]);
  });

  test('a real capture (Catalina, tests/fixtures/drives/macbook-catalina): / is disk1s5, in container disk1 on disk0s2', () => {
    const real = fs.readFileSync(
      path.join(
        __dirname,
        '..',
        '..',
        '..',
        'tests',
        'fixtures',
        'drives',
        'macbook-catalina',
        'info-disk1s5.plist',
      ),
      'utf8',
    );
    const parsed = parsePlist(real) as Record<string, unknown>;
    assert.equal(parsed.DeviceBlockSize, 4096);
    assert.equal(parsed.RemovableMediaOrExternalDevice, false);
    assert.deepEqual(parsed.SMARTDeviceSpecificKeysMayVaryNotGuaranteed, {});
    const s = darwinSnapshot(
      '<plist version="1.0"><dict><key>AllDisksAndPartitions</key><array></array><key>WholeDisks</key><array></array></dict></plist>',
      {},
      real,
    );
    assert.deepEqual(s.systemNodes, ['disk1s5', 'disk1', 'disk0s2']);
  });

  test('BSD names and the dissenter diskutil names', () => {
    assert.equal(bsdName('/dev/rdisk4'), 'disk4');
    assert.equal(bsdName('/dev/disk3s1s1'), 'disk3s1s1');
    assert.equal(bsdName('/dev/sda'), null);
    const out =
      'Unmount of disk4 failed: at least one volume could not be unmounted\n' +
      'Unmount was dissented by PID 47781 (/usr/bin/tail)\n' +
      'Dissenter parent PPID 47778 (/bin/zsh)\n';
    assert.equal(dissenter(out), 'tail (PID 47781, /usr/bin/tail)');
    assert.equal(dissenter('Volume is busy'), null);
  });
});

describe('macOS: open → prepare → write → flush → eject, as recorded', () => {
  test('a USB stick: unmountDisk, /dev/rdisk4 with O_EXLOCK, F_NOCACHE, fdatasync and the drive cache, eject', async () => {
    const os = fakeOs(diskutilAnswers());
    const mac = darwinPlatform(os);
    const drive = await mac.openDrive('/dev/disk4', true);
    assert.equal(drive.rawPath, '/dev/rdisk4');
    assert.equal(drive.size, 30752636928);
    await drive.write(Buffer.alloc(4096), 0);
    await drive.flush();
    await drive.close();
    assert.deepEqual(await mac.afterCopy('/dev/disk4', true), {
      safeToRemove: true,
      ejected: true,
      note: null,
    });
    assert.deepEqual(os.calls, [
      ...SNAPSHOT_READS,
      'run /usr/sbin/diskutil unmountDisk /dev/disk4',
      'open /dev/rdisk4 O_RDWR|O_EXLOCK|O_NONBLOCK = 3',
      'setF_NOCACHE 3 1',
      'getBlockDevice 3',
      'pwrite 3 0+4096',
      'fdatasync 3',
      'ioctl 3 DKIOCSYNCHRONIZECACHE',
      'close 3',
      'sleep 2000',
      'run /usr/sbin/diskutil eject /dev/disk4',
    ]);
  });

  test('not ejecting: what macOS mounted after the copy is unmounted again', async () => {
    const os = fakeOs(diskutilAnswers());
    assert.deepEqual(await darwinPlatform(os).afterCopy('/dev/disk5', false), {
      safeToRemove: true,
      ejected: false,
      note: null,
    });
    assert.deepEqual(os.calls, ['sleep 2000', 'run /usr/sbin/diskutil unmountDisk /dev/disk5']);
  });

  test('reading: /dev/rdiskN read-only and uncached, nothing unmounted', async () => {
    const os = fakeOs(diskutilAnswers());
    const drive = await darwinPlatform(os).openDrive('/dev/disk5', false);
    await drive.read(Buffer.alloc(512), 512);
    await drive.close();
    assert.deepEqual(os.calls.slice(SNAPSHOT_READS.length), [
      'open /dev/rdisk5 O_RDONLY = 3',
      'setF_NOCACHE 3 1',
      'getBlockDevice 3',
      'pread 3 512+512',
      'close 3',
    ]);
  });

  test('a disk with APFS containers: each container is unmounted before the disk', async () => {
    const os = fakeOs(diskutilAnswers());
    await (await darwinPlatform(os).openDrive('/dev/disk0', true)).close();
    assert.deepEqual(
      os.calls.filter((c) => c.includes('unmountDisk')),
      [
        'run /usr/sbin/diskutil unmountDisk /dev/disk1',
        'run /usr/sbin/diskutil unmountDisk /dev/disk3',
        'run /usr/sbin/diskutil unmountDisk /dev/disk2',
        'run /usr/sbin/diskutil unmountDisk /dev/disk0',
      ],
    );
  });

  test('an unmount refused: nothing is opened, and the message names the dissenter', async () => {
    const os = fakeOs(
      diskutilAnswers(() => ({
        code: 1,
        stderr:
          'Unmount of disk4 failed: at least one volume could not be unmounted\n' +
          'Unmount was dissented by PID 47781 (/usr/bin/tail)\n',
      })),
    );
    await assert.rejects(darwinPlatform(os).openDrive('/dev/disk4', true), (e: DriveError) => {
      assert.equal(e.code, 'EBUSY');
      assert.match(e.holder ?? '', /^tail \(PID 47781, \/usr\/bin\/tail\) has files open on it/);
      return true;
    });
    assert.ok(!os.calls.some((c) => c.startsWith('open')));
  });

  test('an unmount refused, then forced: the disk is written, the force in the sequence', async () => {
    let refusals = 1;
    const os = fakeOs(
      diskutilAnswers((_c, args) =>
        args[0] === 'unmountDisk' && refusals-- > 0
          ? { code: 1, stderr: 'Unmount was dissented by PID 47781 (/usr/bin/tail)\n' }
          : {},
      ),
    );
    await (await darwinPlatform(os).openDrive('/dev/disk4', true)).close();
    assert.deepEqual(os.calls.slice(SNAPSHOT_READS.length, SNAPSHOT_READS.length + 3), [
      'run /usr/sbin/diskutil unmountDisk /dev/disk4',
      'run /usr/sbin/diskutil unmountDisk force /dev/disk4',
      'open /dev/rdisk4 O_RDWR|O_EXLOCK|O_NONBLOCK = 3',
    ]);
  });

  test('after the copy, an eject refused: forced unmount, then eject again', async () => {
    let refusals = 1;
    const os = fakeOs({
      run: (_c, args) =>
        args[0] === 'eject' && refusals-- > 0
          ? { code: 1, stdout: 'Unmount was dissented by PID 412 (/usr/libexec/mds)\n' }
          : {},
    });
    assert.deepEqual(await darwinPlatform(os).afterCopy('/dev/disk4', true), {
      safeToRemove: true,
      ejected: true,
      note: null,
    });
    assert.deepEqual(os.calls, [
      'sleep 2000',
      'run /usr/sbin/diskutil eject /dev/disk4',
      'run /usr/sbin/diskutil unmountDisk force /dev/disk4',
      'run /usr/sbin/diskutil eject /dev/disk4',
    ]);
  });

  test('EPERM opening the raw disk as root: macOS wants Full Disk Access, and says so', async () => {
    const os = fakeOs({ ...diskutilAnswers(), openFails: () => 'EPERM' });
    await assert.rejects(darwinPlatform(os).openDrive('/dev/disk4', true), (e: DriveError) => {
      assert.equal(e.code, 'EPERM');
      assert.match(e.message, /Full Disk Access/);
      return true;
    });
  });

  test('a raw disk held by another writer: busy at once (O_NONBLOCK), not a wait', async () => {
    const os = fakeOs({ ...diskutilAnswers(), openFails: () => 'EAGAIN' });
    await assert.rejects(darwinPlatform(os).openDrive('/dev/disk4', true), /in use/);
  });

  test('after the copy, macOS mounted it again and something holds it: not safe to remove yet', async () => {
    const os = fakeOs({
      run: () => ({ code: 1, stdout: 'Unmount was dissented by PID 412 (/usr/libexec/mds)\n' }),
    });
    const removal = await darwinPlatform(os).afterCopy('/dev/disk4', true);
    assert.equal(removal.safeToRemove, false);
    assert.equal(removal.ejected, false);
    assert.match(removal.note ?? '', /mds \(PID 412.*eject it in Finder/);
  });
});
