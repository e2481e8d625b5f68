// macOS's platform module (platform.ts). The sequences follow etcher-sdk's
// lib/source-destination/block-device.ts (unmount the disk, open with O_EXLOCK, then
// F_NOCACHE; wait after closing before unmounting again), Raspberry Pi Imager's
// src/mac (the raw /dev/rdiskN node, F_NOCACHE) and Caligula (F_NOCACHE on macOS):
//
//   prepare  diskutil unmountDisk of every APFS container on the disk, then of the
//            disk (diskutil unmount for a partition), retried with force when a
//            program keeps it busy (the confirmation says so); a refusal of both names
//            the dissenter
//   open     /dev/rdiskN (the raw node: /dev/diskN goes through the buffer cache at a
//            few MB/s, Etcher #3102), O_RDWR | O_EXLOCK | O_NONBLOCK — O_EXLOCK
//            without O_NONBLOCK would wait for whoever holds the lock (devfs takes
//            advisory locks in the VFS, vfs_setlocklocal, so a device node has them;
//            they keep out other lockers, not a plain open); EPERM as root is macOS's
//            privacy control: Full Disk Access
//   uncache  F_NOCACHE (direct-io setF_NOCACHE)
//   geometry DKIOCGETBLOCKCOUNT and DKIOCGETBLOCKSIZE (direct-io getBlockDevice)
//   flush    fs.fdatasync, then ioctl(DKIOCSYNCHRONIZECACHE) — see flushNote below
//   after    closing the writer makes macOS read the partition table again and mount
//            what it finds; after 2 s (as etcher-sdk waits) diskutil unmountDisk, or
//            diskutil eject when asked — forced when refused (what macOS just mounted)

import * as fs from 'node:fs';
import { bsdName, darwinDevno, darwinSnapshot, dissenter, wholeDisks } from './darwin-diskutil';
import type { OsCalls } from './os-calls';
import type { CommandResult } from './os-calls';
import {
  DriveError,
  type DrivePlatform,
  keptSnapshot,
  openedDrive,
  type SnapshotReading,
} from './system';
import { type BlockNode, descendants, nodeByDevno, type SystemSnapshot } from './topology';

/*
 * flushNote — what fs.fdatasync does on macOS, read from the sources (not run on a Mac).
 * - Node 20 carries libuv 1.46 (process.versions.uv). Its src/unix/fs.c
 *   uv__fs_fdatasync calls uv__fs_fsync on Apple systems, which issues
 *   fcntl(F_FULLFSYNC), then fcntl(F_BARRIERFSYNC) if that fails, then fsync() if that
 *   fails too (libuv 23dc564f3, 2012; fallbacks c1c55ee1a, 5b0e1d75a, 9a4173194 in
 *   v1.30.0). So yes: Node's fdatasync already issues F_FULLFSYNC, and on an image
 *   file (APFS, HFS+) that is the durable flush; nothing more is needed there.
 * - On /dev/rdiskN it is not. XNU hands F_FULLFSYNC to the vnode's ioctl
 *   (bsd/kern/kern_descrip.c), specfs passes it to the disk driver (spec_ioctl), and
 *   IOStorageFamily's IOMediaBSDClient answers DKIOCSYNCHRONIZECACHE but sends any
 *   other ioctl to IOMediaBSDClient::ioctl, which returns ENOTTY. F_BARRIERFSYNC goes
 *   the same way; libuv then calls fsync(), and spec_fsync returns 0 at once for a
 *   character device. Caligula met the first half of this: its SyncDataFile::flush
 *   is a no-op on macOS because sync_data() (F_FULLFSYNC) on a disk gives "Inappropriate
 *   ioctl for device". So on a raw disk fdatasync succeeds, every write before it has
 *   reached the drive (F_NOCACHE, raw node: nothing waits in the buffer cache), but the
 *   drive's own volatile write cache is not flushed by it. That takes
 *   ioctl(DKIOCSYNCHRONIZECACHE), which IOMediaBSDClient turns into
 *   IOBlockStorageDriver::synchronizeCache (a SYNCHRONIZE CACHE to the drive), and which
 *   @ronomon/direct-io does not offer: it is called through koffi (os-calls.ts) after
 *   every fdatasync, so invariant 1 holds on macOS as on Linux, where fdatasync on a
 *   block device sends the drive a cache flush. A drive with no cache to flush answers
 *   ENOTTY/ENOTSUP, which is not an error. An eject flushes it as well
 *   (IOBlockStorageDriver::ejectMedia synchronizes a writable medium first).
 */

/** By its full path: the elevated engine must not run whatever a PATH finds first. */
export const DISKUTIL = '/usr/sbin/diskutil';
/** How long a snapshot answers again: one plan asks several times in a row. */
const SNAPSHOT_MS = 1000;
/** After the writer closed: time for macOS to read the disk again and mount it (etcher-sdk's 2 s). */
const SETTLE_MS = 2000;

/** diskutil's XML, or why it failed. */
function diskutilXml(args: string[], r: CommandResult): string {
  if (r.code !== 0) throw new Error(`diskutil ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The picture: `diskutil list -plist`, then `diskutil info -plist` of every whole disk and of `/`. */
export function* diskutilReading(diskutil = DISKUTIL): SnapshotReading {
  const listArgs = ['list', '-plist'];
  const [listed] = yield [{ command: diskutil, args: listArgs }];
  const list = diskutilXml(listArgs, listed);
  const disks = wholeDisks(list);
  const asked = [...disks, '/'].map((d) => ({ command: diskutil, args: ['info', '-plist', d] }));
  const answers = yield asked;
  const infos: Record<string, string> = {};
  disks.forEach((disk, i) => (infos[disk] = diskutilXml(asked[i].args, answers[i])));
  const rootAnswer = answers[disks.length];
  // Without it the mounts still say where / is.
  const root = rootAnswer.code === 0 ? rootAnswer.stdout : null;
  return withDevnos(darwinSnapshot(list, infos, root));
}

/** Fills each node's devno from its /dev node, so files are traced to their volume. */
function withDevnos(snapshot: SystemSnapshot): SystemSnapshot {
  for (const node of snapshot.topology.nodes.values()) {
    try {
      node.devno = darwinDevno(fs.statSync(node.path, { bigint: true }).rdev);
    } catch {
      // gone since diskutil listed it
    }
  }
  return snapshot;
}

/** The first line diskutil printed, for a message. */
function firstLine(out: string, fallback: string): string {
  return out.trim().split('\n')[0]?.trim() || fallback;
}

/** `diskutil`: its path (tests give a slow fake). */
export function darwinPlatform(os: OsCalls, diskutil = DISKUTIL): DrivePlatform {
  const snapshots = keptSnapshot(os, () => diskutilReading(diskutil), SNAPSHOT_MS);
  const readSnapshot = snapshots.get;

  const driveNode = (p: string, snapshot: SystemSnapshot): { node: BlockNode; real: string } => {
    let real = p;
    try {
      real = fs.realpathSync(p);
    } catch {
      // not there: named as given
    }
    const name = bsdName(real);
    const node = name ? snapshot.topology.nodes.get(name) : undefined;
    if (!node) throw new Error(`${p} is not a disk diskutil lists`);
    return { node, real: node.path };
  };

  /**
   * `diskutil unmount(Disk) target`, again with `force` when a program keeps it busy (a
   * Terminal cd'd into it, Spotlight), as the confirmation warned; a DriveError naming
   * who refused when even that fails.
   */
  const unmount = async (p: string, target: BlockNode): Promise<void> => {
    const verb =
      target.type === 'disk' || target.type === 'apfs-container' ? 'unmountDisk' : 'unmount';
    const plain = await os.run(diskutil, [verb, target.path]);
    if (plain.code === 0) return;
    const forced = await os.run(diskutil, [verb, 'force', target.path]);
    if (forced.code === 0) return;
    const out = `${plain.stdout}\n${plain.stderr}\n${forced.stdout}\n${forced.stderr}`;
    const who = dissenter(out);
    const said = firstLine(
      `${forced.stdout}\n${forced.stderr}`,
      `diskutil ${verb} force exited with ${forced.code}`,
    );
    const holder = who
      ? `${who} has files open on it (${said})`
      : `macOS did not unmount it, even by force: ${said}`;
    throw DriveError.busy(p, holder);
  };

  /** `diskutil args`, and once more after `diskutil unmountDisk force` of the disk when the first is refused. */
  const runForcing = async (args: string[], disk: string): Promise<CommandResult> => {
    const first = await os.run(diskutil, args);
    if (first.code === 0) return first;
    const forced = await os.run(diskutil, ['unmountDisk', 'force', disk]);
    if (forced.code !== 0) return first;
    return args[0] === 'eject' ? os.run(diskutil, args) : forced;
  };

  return {
    system: 'darwin',
    canEject: true,
    whenInUse:
      'it is unmounted before it is written — by force if a program keeps it busy (what that program has not saved on it is lost)',
    readSnapshot,
    snapshot: snapshots.read,
    snapshotIsDear: true,
    isDrive(p) {
      if (!bsdName(p)) return false;
      try {
        const st = fs.statSync(p);
        return st.isBlockDevice() || st.isCharacterDevice();
      } catch {
        return false;
      }
    },
    isDrivePath: (p) => bsdName(p) !== null,
    driveNode,
    fileSystemNode: (_file, dev, snapshot) =>
      nodeByDevno(snapshot.topology, darwinDevno(dev)) ?? null,
    blockFacts(p) {
      const { node } = driveNode(p, readSnapshot());
      return {
        size: node.size,
        logicalBlockSize: node.logicalBlockSize,
        serial: null,
        backingFile: null,
      };
    },
    async openDrive(p, writable) {
      const snapshot = await snapshots.read(); // what is mounted now, without blocking
      const { node } = driveNode(p, snapshot);
      const raw = `/dev/r${node.name}`;
      if (writable) {
        // An APFS container's volumes sit on a synthesized disk of their own: unmounted first.
        const containers = descendants(snapshot.topology, node.name).filter(
          (n) => n.type === 'apfs-container',
        );
        for (const container of containers) await unmount(p, container);
        await unmount(p, node);
      }
      let fd: number;
      try {
        fd = await os.open(raw, writable ? ['O_RDWR', 'O_EXLOCK', 'O_NONBLOCK'] : ['O_RDONLY']);
      } catch (e) {
        throw openRefusal(p, raw, e as NodeJS.ErrnoException);
      }
      try {
        await os.setNoCache(fd);
        const g = await os.geometry(fd);
        return openedDrive(os, {
          path: p,
          rawPath: raw,
          fd,
          size: g.size,
          logicalBlockSize: g.logicalSectorSize,
          syncCache: true,
        });
      } catch (e) {
        await os.close(fd);
        throw e;
      }
    },
    async afterCopy(p, eject) {
      const name = bsdName(p);
      if (!name) return { safeToRemove: true, ejected: false, note: null };
      await os.sleep(SETTLE_MS);
      const disk = name.replace(/s\d+$/, '');
      const args = eject
        ? ['eject', `/dev/${disk}`]
        : [name === disk ? 'unmountDisk' : 'unmount', `/dev/${name}`];
      const r = await runForcing(args, `/dev/${disk}`);
      if (r.code === 0) return { safeToRemove: true, ejected: eject, note: null };
      const out = `${r.stdout}\n${r.stderr}`;
      const who = dissenter(out);
      const said = who
        ? `${who} has files open on it`
        : firstLine(out, `diskutil exited with ${r.code}`);
      return {
        safeToRemove: false,
        ejected: false,
        note: `macOS mounted what was written and could not ${eject ? 'eject' : 'unmount'} it (${said}): eject it in Finder before removing it`,
      };
    },
    lockFile: (fd) => os.flock(fd),
  };
}

/** Why the raw node did not open, in words: busy, or macOS's privacy control. */
function openRefusal(p: string, raw: string, e: NodeJS.ErrnoException): Error {
  if (e.code === 'EBUSY' || e.code === 'EAGAIN' || e.code === 'EWOULDBLOCK') {
    const holder = `another program has ${raw} open exclusively`;
    return DriveError.busy(p, holder);
  }
  if (e.code === 'EPERM') {
    // Not EACCES (the node's mode: not administrator), EPERM even as root: privacy control.
    return new DriveError(
      `macOS refused to open ${raw} (EPERM): allow DriveTwin in System Settings → Privacy & Security → Full Disk Access, then try again`,
      'EPERM',
    );
  }
  return e;
}
