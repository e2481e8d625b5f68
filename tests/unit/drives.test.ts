import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import {
  classifyDrives,
  type Drive,
  type DrivelistEntry,
  imageFileDrive,
} from '../../engine/drives/classify';
import { busFromSysfsPath, devnoOf } from '../../engine/drives/linux';
import { formatDrivesTable } from '../../engine/drives/list';
import { verdictFor } from '../../engine/drives/safety';
import {
  blockInfoOf,
  findNode,
  parseLosetup,
  parseLsblk,
  parseMountinfo,
  parseSwaps,
  type SystemSnapshot,
  withBackingFiles,
} from '../../engine/drives/topology';
import { byPath } from '../helpers/drives';

// ---------------------------------------------------------------------------
// Captured outputs: tests/fixtures/drives/<machine>/ holds `lsblk -J -b -O`,
// `losetup --list --json`, /proc/self/mountinfo, /proc/swaps and drivelist.list()
// (on Linux drivelist runs lsblk and parses it with its own code; those files are
// what that code returns for the lsblk.json beside them).

const FIXTURES = path.join(__dirname, '..', '..', '..', 'tests', 'fixtures', 'drives');

function fixture(machine: string, file: string): string {
  const p = path.join(FIXTURES, machine, file);
  return fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : '';
}

function snapshotOf(machine: string): SystemSnapshot {
  const topology = withBackingFiles(
    parseLsblk(fixture(machine, 'lsblk.json')),
    parseLosetup(fixture(machine, 'losetup.json')),
  );
  const uses = [
    ...parseMountinfo(fixture(machine, 'mountinfo.txt')),
    ...parseSwaps(fixture(machine, 'swaps.txt')),
  ];
  return { topology, uses };
}

function drivelistOf(machine: string): DrivelistEntry[] {
  return JSON.parse(fixture(machine, 'drivelist.json')) as DrivelistEntry[];
}

function drivesOf(machine: string): Drive[] {
  return classifyDrives(drivelistOf(machine), snapshotOf(machine));
}

function infoOf(machine: string, p: string): ReturnType<typeof blockInfoOf> {
  const snapshot = snapshotOf(machine);
  const node = findNode(snapshot.topology, p);
  assert.ok(node, `${p} is in the fixture`);
  return blockInfoOf(snapshot, node);
}

describe('parsers', () => {
  test('mountinfo: optional fields, octal escapes, the source after the separator', () => {
    const uses = parseMountinfo(
      [
        '30 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/vgubuntu-root rw,errors=remount-ro',
        '517 30 8:1 / /media/alice/Alice\\040USB rw,nosuid shared:450 master:3 - vfat /dev/sda1 rw',
        '65 94 0:33 /home /home rw,relatime - btrfs /dev/nvme0n1p3 rw,subvol=/home',
        'garbage',
        '',
      ].join('\n'),
    );
    assert.deepEqual(uses, [
      { devno: '253:1', mountpoint: '/', fstype: 'ext4', source: '/dev/mapper/vgubuntu-root' },
      { devno: '8:1', mountpoint: '/media/alice/Alice USB', fstype: 'vfat', source: '/dev/sda1' },
      { devno: '0:33', mountpoint: '/home', fstype: 'btrfs', source: '/dev/nvme0n1p3' },
    ]);
  });

  test('swaps: partitions and files, header skipped', () => {
    assert.deepEqual(parseSwaps(fixture('ubuntu-laptop', 'swaps.txt')), [
      { devno: null, source: '/dev/dm-2', mountpoint: '[SWAP]', fstype: 'swap' },
    ]);
    assert.deepEqual(parseSwaps('Filename\tType\tSize\tUsed\tPriority\n'), []);
  });

  test('lsblk: old versions (strings for numbers and flags, --paths names)', () => {
    const topology = parseLsblk(
      JSON.stringify({
        blockdevices: [
          {
            name: '/dev/sdc',
            kname: '/dev/sdc',
            'maj:min': '8:32',
            rm: '1',
            ro: '0',
            size: '16008609792',
            type: 'disk',
            tran: 'usb',
            'log-sec': '512',
            model: 'Ultra Fit       ',
            vendor: 'SanDisk ',
            children: [
              {
                name: '/dev/sdc1',
                kname: '/dev/sdc1',
                'maj:min': '8:33',
                rm: '1',
                ro: '0',
                size: '16007561216',
                type: 'part',
                mountpoint: null,
              },
            ],
          },
        ],
      }),
    );
    const disk = findNode(topology, '/dev/sdc');
    assert.ok(disk);
    assert.equal(disk.size, 16008609792);
    assert.equal(disk.removable, true);
    assert.equal(disk.readOnly, false);
    assert.equal(disk.bus, 'usb');
    assert.equal(disk.model, 'Ultra Fit');
    assert.deepEqual(findNode(topology, 'sdc1')?.parents, ['sdc']);
  });

  test('losetup: backing files by device; no output when nothing is set up', () => {
    const backing = parseLosetup(fixture('ubuntu-laptop', 'losetup.json'));
    assert.equal(backing.get('/dev/loop0'), '/var/lib/snapd/snaps/core22_1380.snap');
    assert.equal(backing.size, 2);
    assert.equal(parseLosetup('').size, 0);
  });

  test('bus from where the device sits in /sys/devices', () => {
    const cases: Array<[string, string | null]> = [
      [
        '/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda',
        'usb',
      ],
      ['/sys/devices/pci0000:00/0000:00:1d.0/0000:02:00.0/nvme/nvme0/nvme0n1', 'nvme'],
      ['/sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda', 'sata'],
      ['/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda', 'virtio'],
      ['/sys/devices/pci0000:00/0000:00:14.5/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0', 'mmc'],
      ['/sys/devices/virtual/block/loop3', 'loop'],
      ['/sys/devices/virtual/block/dm-0', null],
    ];
    for (const [sysPath, bus] of cases) assert.equal(busFromSysfsPath(sysPath), bus, sysPath);
  });

  test('major:minor of a dev_t, large minors included', () => {
    const makedev = (major: bigint, minor: bigint): bigint =>
      ((major & 0xfffn) << 8n) |
      ((major & ~0xfffn) << 32n) |
      (minor & 0xffn) |
      ((minor & ~0xffn) << 12n);
    assert.equal(devnoOf(1792n), '7:0');
    assert.equal(devnoOf(makedev(259n, 6n)), '259:6');
    assert.equal(devnoOf(makedev(7n, 300n)), '7:300');
  });
});

describe('classification: Ubuntu laptop (LVM on LUKS on NVMe, hot-plugged NVMe, USB stick, SD card, loops)', () => {
  const drives = drivesOf('ubuntu-laptop');
  const drivelist = drivelistOf('ubuntu-laptop');

  test('drivelist drives and loop devices with a backing file, sorted by path', () => {
    assert.deepEqual(
      drives.map((d) => d.path),
      ['/dev/loop0', '/dev/loop1', '/dev/mmcblk0', '/dev/nvme0n1', '/dev/nvme1n1', '/dev/sda'],
    );
    assert.ok(
      !drivelist.some((d) => d.device.startsWith('/dev/loop')),
      'drivelist leaves loops out',
    );
  });

  test('the mounted system disk: / on LVM on LUKS on a partition, /boot and /boot/efi beside it', () => {
    assert.deepEqual(byPath(drives, '/dev/nvme0n1'), {
      path: '/dev/nvme0n1',
      name: 'Samsung SSD 980 PRO 1TB',
      size: 1000204886016,
      logicalBlockSize: 512,
      bus: 'nvme',
      removable: false,
      readOnly: false,
      mountpoints: ['/', '/boot', '/boot/efi', '[SWAP]'],
      holders: ['/dev/mapper/nvme0n1p3_crypt'],
      system: true,
      kind: 'block',
      serial: 'S5GXNF0R803217W',
      backingFile: null,
    });
    // drivelist looks one level down only: it never sees / on the LVM volume.
    const listed = drivelist.find((d) => d.device === '/dev/nvme0n1');
    assert.ok(listed && !listed.mountpoints.some((m) => m.path === '/'));
  });

  test('the hot-plugged second NVMe is internal but not the system (drivelist says system)', () => {
    const drive = byPath(drives, '/dev/nvme1n1');
    assert.equal(drive.system, false);
    assert.equal(drive.removable, false);
    assert.deepEqual(drive.mountpoints, []);
    assert.equal(drive.name, 'WD_BLACK SN770 500GB');
    assert.equal(drive.serial, '22310K801234');
    assert.equal(drivelist.find((d) => d.device === '/dev/nvme1n1')?.isSystem, true);
    assert.equal(verdictFor(drive, 'target').level, 'confirm');
  });

  test('the mounted USB stick: removable, its partition mounted (a space in the path)', () => {
    const drive = byPath(drives, '/dev/sda');
    assert.equal(drive.name, 'SanDisk Cruzer Blade');
    assert.equal(drive.bus, 'usb');
    assert.equal(drive.removable, true);
    assert.equal(drive.system, false);
    assert.deepEqual(drive.mountpoints, ['/media/alice/Alice USB']);
    assert.equal(drive.serial, '4C530001230827110514');
  });

  test('the read-only SD card', () => {
    const drive = byPath(drives, '/dev/mmcblk0');
    assert.equal(drive.readOnly, true);
    assert.equal(drive.removable, true);
    assert.equal(drive.bus, 'mmc');
    assert.equal(drive.size, 31914983424);
    assert.equal(drive.system, false);
    assert.equal(drive.name, 'Disk (mmc)');
  });

  test('loop devices: backing file, name, the snap mounted read-only, partitions not listed', () => {
    const snap = byPath(drives, '/dev/loop0');
    assert.equal(snap.name, 'core22_1380.snap (loop device)');
    assert.equal(snap.backingFile, '/var/lib/snapd/snaps/core22_1380.snap');
    assert.equal(snap.readOnly, true);
    assert.deepEqual(snap.mountpoints, ['/snap/core22/1380']);
    assert.equal(snap.bus, 'loop');
    assert.equal(snap.serial, null);
    const image = byPath(drives, '/dev/loop1');
    assert.equal(image.backingFile, '/home/alice/Downloads/2023-12-05-raspios-bookworm-arm64.img');
    assert.equal(image.size, 4194304000);
    assert.equal(image.system, false);
    assert.ok(!drives.some((d) => d.path === '/dev/loop1p1'));
  });

  test('block info: partitions, holders, mountpoints through device-mapper, whole disk', () => {
    const disk = infoOf('ubuntu-laptop', '/dev/nvme0n1');
    assert.deepEqual(disk.partitions, ['/dev/nvme0n1p1', '/dev/nvme0n1p2', '/dev/nvme0n1p3']);
    assert.deepEqual(disk.holders, ['/dev/mapper/nvme0n1p3_crypt']);
    assert.equal(disk.wholeDisk, '/dev/nvme0n1');
    const luks = infoOf('ubuntu-laptop', '/dev/nvme0n1p3');
    assert.equal(luks.wholeDisk, '/dev/nvme0n1');
    assert.deepEqual(luks.mountpoints, ['/', '[SWAP]']);
    assert.deepEqual(luks.holders, ['/dev/mapper/nvme0n1p3_crypt']);
    assert.equal(luks.system, true);
    assert.equal(luks.devno, '259:3');
    const root = infoOf('ubuntu-laptop', '/dev/dm-1');
    assert.deepEqual(root.mountpoints, ['/']);
    assert.equal(root.system, true);
    const scratch = infoOf('ubuntu-laptop', '/dev/nvme1n1p1');
    assert.equal(scratch.system, false);
    assert.equal(scratch.serial, '22310K801234');
    const loop = infoOf('ubuntu-laptop', '/dev/loop1');
    assert.deepEqual(loop.partitions, ['/dev/loop1p1', '/dev/loop1p2']);
    assert.equal(loop.backingFile, '/home/alice/Downloads/2023-12-05-raspios-bookworm-arm64.img');
    assert.equal(loop.serial, null);
  });
});

describe('classification: Fedora desktop (btrfs root, internal SATA data disk, unmounted USB stick, zram)', () => {
  const drives = drivesOf('fedora-desktop');
  const drivelist = drivelistOf('fedora-desktop');

  test('the system disk is found through btrfs, whose mounts carry an anonymous 0:N device', () => {
    const drive = byPath(drives, '/dev/nvme0n1');
    assert.equal(drive.system, true);
    assert.deepEqual(drive.mountpoints, ['/', '/boot', '/boot/efi', '/home']);
  });

  test('an internal, mounted data disk is not the system (drivelist says system)', () => {
    const drive = byPath(drives, '/dev/sda');
    assert.equal(drive.system, false);
    assert.equal(drive.name, 'ST2000DM008-2FR102');
    assert.equal(drive.bus, 'sata');
    assert.deepEqual(drive.mountpoints, ['/mnt/data']);
    assert.equal(drivelist.find((d) => d.device === '/dev/sda')?.isSystem, true);
  });

  test('the unmounted USB stick: removable, nothing mounted, writable after confirmation', () => {
    const drive = byPath(drives, '/dev/sdb');
    assert.equal(drive.name, 'Kingston DataTraveler 3.0');
    assert.equal(drive.removable, true);
    assert.deepEqual(drive.mountpoints, []);
    const verdict = verdictFor(drive, 'target');
    assert.equal(verdict.level, 'confirm');
    assert.match(
      verdict.reasons[0],
      /\/dev\/sdb \(Kingston DataTraveler 3\.0, 57\.7 GiB\) will be overwritten/,
    );
  });

  test('zram swap: in use, not the system, 4096-byte sectors; no loop devices', () => {
    const drive = byPath(drives, '/dev/zram0');
    assert.deepEqual(drive.mountpoints, ['[SWAP]']);
    assert.equal(drive.system, false);
    assert.equal(drive.logicalBlockSize, 4096);
    assert.deepEqual(verdictFor(drive, 'target').reasons, ['/dev/zram0 is in use as swap']);
    assert.ok(!drives.some((d) => d.bus === 'loop'));
  });
});

describe('classification: this machine, captured', () => {
  const drives = drivesOf('this-machine');

  test('the disk mounted at / (no partition table) is the system; zram is not', () => {
    const root = parseMountinfo(fixture('this-machine', 'mountinfo.txt')).find(
      (u) => u.mountpoint === '/',
    );
    assert.ok(root);
    const system = drives.filter((d) => d.system);
    assert.equal(system.length, 1);
    assert.ok(system[0].mountpoints.includes('/'));
    assert.ok(
      drives.some((d) => !d.system),
      'something else is listed and is not the system',
    );
  });
});

describe('verdicts', () => {
  const ubuntu = drivesOf('ubuntu-laptop');

  test('the system disk as target: refused, or confirm when the system and mounts are allowed', () => {
    const drive = byPath(ubuntu, '/dev/nvme0n1');
    const refused = verdictFor(drive, 'target');
    assert.equal(refused.level, 'refused');
    assert.ok(refused.reasons.includes('/dev/nvme0n1 holds the running system'));
    assert.ok(
      refused.reasons.includes(
        '/dev/nvme0n1 is mounted at /, /boot, /boot/efi and is in use as swap',
      ),
      refused.reasons.join(' | '),
    );
    assert.equal(verdictFor(drive, 'target', { allowSystem: true }).level, 'refused');
    const allowed = verdictFor(drive, 'target', { allowSystem: true, allowMounted: true });
    assert.equal(allowed.level, 'confirm');
    assert.equal(allowed.reasons.length, 3);
    assert.equal(verdictFor(drive, 'source').level, 'usable');
  });

  test('a mounted stick: refused as target unless mounts are allowed; a usable source', () => {
    const drive = byPath(ubuntu, '/dev/sda');
    assert.deepEqual(verdictFor(drive, 'target'), {
      level: 'refused',
      reasons: ['/dev/sda is mounted at /media/alice/Alice USB'],
    });
    const allowed = verdictFor(drive, 'target', { allowMounted: true });
    assert.equal(allowed.level, 'confirm');
    assert.match(
      allowed.reasons[0],
      /everything on \/dev\/sda \(SanDisk Cruzer Blade, 28\.6 GiB\)/,
    );
    assert.equal(verdictFor(drive, 'source').level, 'usable');
  });

  test('a read-only card: refused as target, usable as source', () => {
    const drive = byPath(ubuntu, '/dev/mmcblk0');
    assert.deepEqual(verdictFor(drive, 'target'), {
      level: 'refused',
      reasons: ['/dev/mmcblk0 is read-only'],
    });
    assert.deepEqual(verdictFor(drive, 'source'), { level: 'usable', reasons: [] });
  });

  test('the chosen source itself, a partition of it, a loop over its image: refused', () => {
    const nvme1 = byPath(ubuntu, '/dev/nvme1n1');
    assert.deepEqual(verdictFor(nvme1, 'target', { sourcePath: '/dev/nvme1n1' }).reasons, [
      '/dev/nvme1n1 is the source',
    ]);
    assert.deepEqual(verdictFor(nvme1, 'target', { sourcePath: '/dev/nvme1n1p1' }).reasons, [
      'the source /dev/nvme1n1p1 is a partition of /dev/nvme1n1',
    ]);
    assert.equal(verdictFor(nvme1, 'target', { sourcePath: '/dev/nvme0n1p1' }).level, 'confirm');
    const loop = byPath(ubuntu, '/dev/loop1');
    const image = '/home/alice/Downloads/2023-12-05-raspios-bookworm-arm64.img';
    assert.deepEqual(verdictFor(loop, 'target', { sourcePath: image }), {
      level: 'refused',
      reasons: [`/dev/loop1 is a loop device backed by the source image ${image}`],
    });
  });

  test('a target smaller than the source, and a drive with no medium', () => {
    const nvme1 = byPath(ubuntu, '/dev/nvme1n1');
    const verdict = verdictFor(nvme1, 'target', { sourceSize: 1000204886016 });
    assert.equal(verdict.level, 'refused');
    assert.match(verdict.reasons[0], /is smaller than the source \(931\.5 GiB\)/);
    const empty: Drive = { ...nvme1, path: '/dev/sdz', size: 0 };
    assert.equal(verdictFor(empty, 'source').level, 'refused');
    assert.equal(verdictFor(empty, 'target').level, 'refused');
  });

  test('image files: usable; a missing or empty source file is refused', (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-verdict-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const image = path.join(dir, 'disk.img');
    fs.writeFileSync(image, Buffer.alloc(4096, 1));
    const drive = imageFileDrive(image);
    assert.equal(drive.kind, 'file');
    assert.equal(drive.size, 4096);
    assert.deepEqual(verdictFor(drive, 'source'), { level: 'usable', reasons: [] });
    assert.equal(verdictFor(drive, 'target').level, 'usable');
    assert.equal(verdictFor(drive, 'target', { sourcePath: image }).level, 'refused');
    const fresh = imageFileDrive(path.join(dir, 'new.img'));
    assert.deepEqual(verdictFor(fresh, 'target'), { level: 'usable', reasons: [] });
    assert.deepEqual(verdictFor(fresh, 'source').reasons, [`${fresh.path} does not exist`]);
    fs.writeFileSync(path.join(dir, 'empty.img'), '');
    assert.deepEqual(
      verdictFor(imageFileDrive(path.join(dir, 'empty.img')), 'source').level,
      'refused',
    );
  });
});

test('the drives table: aligned columns, binary units, one row a drive', () => {
  const drives = drivesOf('ubuntu-laptop');
  const lines = formatDrivesTable(drives).split('\n');
  assert.equal(lines.length, drives.length + 1);
  const header = lines[0];
  assert.match(header, /^PATH +NAME +SIZE +BLOCK +RM +RO +SYSTEM +MOUNTPOINTS$/);
  const nameAt = header.indexOf('NAME');
  const sizeEnd = header.indexOf('SIZE') + 'SIZE'.length;
  const mountsAt = header.indexOf('MOUNTPOINTS');
  drives.forEach((drive, i) => {
    const line = lines[i + 1];
    assert.equal(line.indexOf(drive.name), nameAt, line);
    assert.equal(line.slice(mountsAt), drive.mountpoints.join(', ') || '-', line);
    assert.equal(line[sizeEnd - 1] !== ' ' && line[sizeEnd] === ' ', true, line);
    assert.equal(line, line.trimEnd());
  });
  const nvme = lines.find((l) => l.startsWith('/dev/nvme0n1 '));
  assert.ok(nvme);
  assert.match(nvme, /931\.5 GiB +512 +no +no +yes +\/, \/boot, \/boot\/efi, \[SWAP\]$/);
});
