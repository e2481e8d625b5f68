// Linux's platform module (platform.ts): the block layer from /sys/class/block, mounts
// from /proc/self/mountinfo, swap areas from /proc/swaps, one device's facts from its
// own sysfs node — all handed to topology.ts as plain data — and how a drive is opened,
// flushed and let go of.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { OsCalls } from './os-calls';
import { type BlockFacts, type DrivePlatform, openedDrive } from './system';
import {
  addNode,
  blockInfoOf,
  type BlockInfo,
  type BlockNode,
  type BlockTopology,
  findNode,
  isAnonymous,
  nodeByDevno,
  parseMountinfo,
  parseSwaps,
  type SystemSnapshot,
  text,
} from './topology';

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function readTrimmed(file: string): string | null {
  return text(readText(file));
}

function readDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** glibc's major()/minor() of a dev_t. */
export function devnoOf(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** The bus from where a block device sits in /sys/devices. */
export function busFromSysfsPath(devicePath: string): string | null {
  if (/\/usb\d*\//.test(devicePath)) return 'usb';
  if (devicePath.includes('/nvme')) return 'nvme';
  if (devicePath.includes('/mmc_host/') || /\/mmc\d+\//.test(devicePath)) return 'mmc';
  if (/\/virtio\d+\//.test(devicePath)) return 'virtio';
  if (/\/ata\d+\//.test(devicePath)) return 'sata';
  if (/\/host\d+\/target/.test(devicePath)) return 'scsi';
  if (/\/virtual\/block\/loop\d+/.test(devicePath)) return 'loop';
  return null;
}

function dmType(uuid: string | null): string {
  if (uuid?.startsWith('CRYPT-')) return 'crypt';
  if (uuid?.startsWith('LVM-')) return 'lvm';
  return 'dm';
}

/** A USB drive's serial is on its USB device, some levels above the block device. */
function usbSerial(devicePath: string, sys: string): string | null {
  for (
    let dir = devicePath;
    dir.startsWith(path.join(sys, 'devices')) && dir !== '/';
    dir = path.dirname(dir)
  ) {
    if (fs.existsSync(path.join(dir, 'idVendor'))) return readTrimmed(path.join(dir, 'serial'));
  }
  return null;
}

/** lsblk's HOTPLUG: a device on the way up is marked "removable" (USB ports, card slots). */
function hotpluggable(devicePath: string, sys: string): boolean {
  for (
    let dir = devicePath;
    dir.startsWith(path.join(sys, 'devices')) && dir !== '/';
    dir = path.dirname(dir)
  ) {
    if (readTrimmed(path.join(dir, 'removable')) === 'removable') return true;
  }
  return false;
}

/** The picture of the block layer from /sys/class/block. */
export function readSysfsTopology(sys = '/sys'): BlockTopology {
  const topology: BlockTopology = { nodes: new Map() };
  const classDir = path.join(sys, 'class', 'block');
  for (const name of readDir(classDir)) {
    let real: string;
    try {
      real = fs.realpathSync(path.join(classDir, name));
    } catch {
      continue;
    }
    const isPartition = fs.existsSync(path.join(real, 'partition'));
    const whole = isPartition ? path.dirname(real) : real;
    const dmName = readTrimmed(path.join(real, 'dm', 'name'));
    const isLoop = /^loop\d+$/.test(name);
    let type = 'disk';
    if (isPartition) type = 'part';
    else if (isLoop) type = 'loop';
    else if (dmName !== null) type = dmType(readTrimmed(path.join(real, 'dm', 'uuid')));
    else if (name.startsWith('md')) type = 'raid';
    else if (name.startsWith('sr')) type = 'rom';
    const aliases = [`/dev/${name}`];
    if (dmName) aliases.unshift(`/dev/mapper/${dmName}`);
    const serialFiles = ['device/serial', 'serial', 'device/wwid', 'wwid'].map((f) =>
      path.join(whole, f),
    );
    const serial = isLoop
      ? null
      : (serialFiles.map(readTrimmed).find((s) => s !== null) ?? usbSerial(whole, sys));
    const bus = busFromSysfsPath(whole);
    addNode(topology, {
      name,
      path: aliases[0],
      aliases,
      devno: readTrimmed(path.join(real, 'dev')),
      type,
      parents: isPartition ? [path.basename(whole)] : readDir(path.join(real, 'slaves')),
      size: Number(readTrimmed(path.join(real, 'size')) ?? 0) * 512,
      logicalBlockSize: Number(readTrimmed(path.join(whole, 'queue', 'logical_block_size'))) || 512,
      readOnly: readTrimmed(path.join(real, 'ro')) === '1',
      removable:
        readTrimmed(path.join(whole, 'removable')) === '1' ||
        bus === 'usb' ||
        hotpluggable(whole, sys),
      bus,
      vendor: readTrimmed(path.join(whole, 'device', 'vendor')),
      model:
        readTrimmed(path.join(whole, 'device', 'model')) ??
        readTrimmed(path.join(whole, 'device', 'name')),
      serial: dmName !== null ? null : serial,
      backingFile: isLoop ? readTrimmed(path.join(real, 'loop', 'backing_file')) : null,
    });
  }
  return topology;
}

/** Topology, mounts and swap areas as they are now. */
export function readSystemSnapshot(): SystemSnapshot {
  const topology = readSysfsTopology();
  const uses = [
    ...parseMountinfo(readText('/proc/self/mountinfo') ?? ''),
    ...parseSwaps(readText('/proc/swaps') ?? ''),
  ];
  // An anonymous devno (btrfs) or a swap area names its device by path: make it a devno.
  for (const use of uses) {
    if (!isAnonymous(use.devno) || !use.source.startsWith('/')) continue;
    try {
      const st = fs.statSync(use.source, { bigint: true });
      if (st.isBlockDevice()) use.devno = devnoOf(st.rdev);
    } catch {
      // a source that is gone, or a swap file: nothing to resolve
    }
  }
  return { topology, uses };
}

/** The node of the block device at `p` (any path to it), and its real path. */
export function nodeOfBlockDevice(
  p: string,
  snapshot: SystemSnapshot,
): { node: BlockNode; real: string } {
  const real = fs.realpathSync(p);
  const st = fs.statSync(real, { bigint: true });
  if (!st.isBlockDevice()) throw new Error(`${p} is not a block device`);
  const devno = devnoOf(st.rdev);
  const node = nodeByDevno(snapshot.topology, devno);
  if (!node) throw new Error(`${p} (${devno}) is not in /sys/class/block`);
  return { node, real };
}

/** The few facts about one block device that the copy needs, read straight from its sysfs node (cheap). */
export function blockFacts(p: string): BlockFacts {
  const st = fs.statSync(p, { bigint: true });
  if (!st.isBlockDevice()) throw new Error(`${p} is not a block device`);
  const node = fs.realpathSync(`/sys/dev/block/${devnoOf(st.rdev)}`);
  const whole = fs.existsSync(path.join(node, 'partition')) ? path.dirname(node) : node;
  const serialFiles = ['device/serial', 'serial', 'device/wwid', 'wwid'];
  return {
    size: Number(readTrimmed(path.join(node, 'size')) ?? 0) * 512,
    logicalBlockSize: Number(readTrimmed(path.join(whole, 'queue', 'logical_block_size'))) || 512,
    serial:
      serialFiles.map((f) => readTrimmed(path.join(whole, f))).find((x) => x !== null) ?? null,
    backingFile: readTrimmed(path.join(node, 'loop', 'backing_file')),
  };
}

/** What /sys and /proc say about a block device (any path to it: a symlink, /dev/disk/by-id/...). */
export function describeBlockDevice(p: string): BlockInfo {
  const snapshot = readSystemSnapshot();
  const { node, real } = nodeOfBlockDevice(p, snapshot);
  return blockInfoOf(snapshot, node, real);
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/** On the /dev filesystem itself (not on /dev/shm and the like mounted there): a drive's path. */
export function isDevicePath(p: string): boolean {
  const resolved = path.resolve(p);
  if (!resolved.startsWith('/dev/')) return false;
  let folder = path.dirname(resolved);
  while (folder !== '/dev' && !statOrNull(folder)) folder = path.dirname(folder);
  return statOrNull(folder)?.dev === statOrNull('/dev')?.dev;
}

/** The block device holding the filesystem of a file whose stat says `dev`. */
export function filesystemNode(dev: bigint, snapshot: SystemSnapshot): BlockNode | null {
  const devno = devnoOf(dev);
  if (!isAnonymous(devno)) return nodeByDevno(snapshot.topology, devno) ?? null;
  // readSystemSnapshot already turned resolvable anonymous devnos into real ones; what
  // is left (tmpfs, overlay) is on no block device. Match the source path all the same.
  const use = snapshot.uses.find((u) => u.devno === devno);
  return use ? (findNode(snapshot.topology, use.source) ?? null) : null;
}

/**
 * The kernel told to read `p`'s new partition table; a note for the user when it could
 * not (a partition of it in use), else null. A partition, or a loop device without
 * partition scanning, has no table of its own to read (EINVAL): nothing to say.
 */
async function rereadTable(os: OsCalls, p: string): Promise<string | null> {
  let fd: number;
  try {
    fd = await os.open(p, ['O_RDONLY']);
  } catch {
    return null; // gone: nothing to re-read
  }
  try {
    const failed = await os.rereadPartitions(fd);
    if (failed === null || failed === 'EINVAL' || failed === 'ENOTTY') return null;
    return `Linux kept its old partitions of ${p} (${failed}): run "partprobe ${p}" or unplug it and plug it in again`;
  } finally {
    await os.close(fd);
  }
}

/**
 * Linux, as DriveTwin always did it:
 *   open   O_RDWR | O_EXCL | O_DIRECT (reading: O_RDONLY | O_DIRECT)
 *   prepare  nothing: O_EXCL fails (EBUSY) while the drive or a partition of it is
 *            mounted or held, and keeps everyone else out while we hold it
 *   geometry from sysfs (direct-io's ioctls insist on a SCSI device, which loop devices are not)
 *   flush  fdatasync: the block layer sends the drive a cache flush
 *   after  ioctl(BLKRRPART) on the closed disk, opened again read-only: the kernel reads
 *          the new partition table (systemd-udevd does it too when a writer closes a
 *          disk, where it runs); `eject` only when asked
 * `facts`: sysfs, or what a test says.
 */
export function linuxPlatform(os: OsCalls, facts = blockFacts): DrivePlatform {
  return {
    system: 'linux',
    canEject: true,
    whenInUse: 'it will be written while in use',
    readSnapshot: readSystemSnapshot,
    // sysfs and /proc: a few milliseconds, read again at every poll.
    snapshot: async () => readSystemSnapshot(),
    snapshotIsDear: false,
    isDrive: (p) => statOrNull(p)?.isBlockDevice() === true,
    isDrivePath: isDevicePath,
    driveNode: nodeOfBlockDevice,
    fileSystemNode: (_file, dev, snapshot) => filesystemNode(dev, snapshot),
    blockFacts: facts,
    async openDrive(p, writable) {
      // O_DIRECT with aligned buffers: buffered device writes double-cache and stall in writeback.
      const fd = await os.open(
        p,
        writable ? ['O_RDWR', 'O_EXCL', 'O_DIRECT'] : ['O_RDONLY', 'O_DIRECT'],
      );
      try {
        return openedDrive(os, { path: p, rawPath: p, fd, ...facts(p) });
      } catch (e) {
        await os.close(fd);
        throw e;
      }
    },
    async afterCopy(p, eject) {
      const note = await rereadTable(os, p);
      if (!eject) return { safeToRemove: true, ejected: false, note };
      const done = await os.run('/usr/bin/eject', [p]);
      const why = done.stderr.trim() || `eject exited with ${done.code}`;
      return done.code === 0
        ? { safeToRemove: true, ejected: true, note }
        : {
            safeToRemove: true,
            ejected: false,
            note: [note, `not ejected: ${why}`].filter(Boolean).join('; '),
          };
    },
    lockFile: (fd) => os.flock(fd),
  };
}
