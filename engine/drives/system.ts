// What every system's drive module (linux.ts, darwin.ts, win32.ts) provides — the
// DrivePlatform interface — and the pieces they share. platform.ts chooses one of them;
// the modules import only this file, so nothing here imports a system's module.

import type { Device } from '../io/device';
import type { CommandResult, OsCalls } from './os-calls';
import type { BlockNode, SystemSnapshot } from './topology';

/** The few facts about one drive the copy needs, cheaply. */
export interface BlockFacts {
  size: number;
  logicalBlockSize: number;
  /** Where the system says it; null where it does not (macOS). */
  serial: string | null;
  /** A Linux loop device's backing file. */
  backingFile: string | null;
}

/**
 * A drive opened by its system's sequence: a Device's geometry and I/O (io/device.ts),
 * where flush means on the drive (invariant 1; each module says how) and close also
 * gives back what preparing it took (Windows' volume locks).
 */
export type OpenedDrive = Pick<
  Device,
  'size' | 'logicalBlockSize' | 'read' | 'write' | 'flush' | 'close'
> & {
  /** What was opened: /dev/rdisk4 for /dev/disk4 on macOS, the path itself elsewhere. */
  readonly rawPath: string;
};

/** After a copy: may the drive be pulled out, and what was done about it. */
export interface Removal {
  safeToRemove: boolean;
  ejected: boolean;
  /** For the user: why it is not safe yet, or what the system does with it now. */
  note: string | null;
}

/**
 * Why a drive can't be opened or prepared, in words for the user: another program
 * holds it (code EBUSY; `holder` names it where the system can say), or the system
 * refuses us (EPERM: macOS wants Full Disk Access).
 */
export class DriveError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly holder: string | null = null,
  ) {
    super(message);
  }

  /** `what` is held by another program; `holder` says which, or what the system knows. */
  static busy(what: string, holder: string): DriveError {
    return new DriveError(`${what} is in use: ${holder}`, 'EBUSY', holder);
  }
}

/** A command a snapshot's reading runs, by full path. */
export interface Command {
  command: string;
  args: string[];
}

/**
 * Reading a system's picture of its drives, written once as the commands it needs:
 * it yields the commands of one step and gets their results back, in order. keptSnapshot
 * runs it waiting (the engine's plan, the CLI) or not (the app's drive list: its main
 * process must never wait on diskutil or PowerShell). Not waiting, the commands still
 * run one after another: starting a process blocks for a few milliseconds (fork, exec),
 * and eight started at once stalled the event loop for 60 ms here.
 */
export type SnapshotReading = Generator<Command[], SystemSnapshot, CommandResult[]>;

/**
 * A system's picture, kept for `ms`: one plan asks several times in a row, and diskutil
 * or PowerShell take a while to answer. `get` gives the kept one while it is fresh, else
 * reads it anew, waiting; `read` reads it anew without blocking (and keeps it).
 */
export function keptSnapshot(
  os: OsCalls,
  reading: () => SnapshotReading,
  ms: number,
): { get(): SystemSnapshot; read(): Promise<SystemSnapshot> } {
  let kept: { at: number; value: SystemSnapshot } | null = null;
  const keep = (value: SystemSnapshot): SystemSnapshot => {
    kept = { at: Date.now(), value };
    return value;
  };
  const fresh = (): SystemSnapshot => {
    const steps = reading();
    for (let step = steps.next([]); ;) {
      if (step.done) return keep(step.value);
      step = steps.next(step.value.map((c) => os.runSync(c.command, c.args)));
    }
  };
  return {
    get: () => (kept && Date.now() - kept.at < ms ? kept.value : fresh()),
    async read() {
      const steps = reading();
      for (let step = steps.next([]); ;) {
        if (step.done) return keep(step.value);
        const results: CommandResult[] = [];
        for (const c of step.value) results.push(await os.run(c.command, c.args));
        step = steps.next(results);
      }
    },
  };
}

export interface DrivePlatform {
  /** For messages and tests; callers never branch on it. */
  readonly system: 'linux' | 'darwin' | 'win32';
  /** afterCopy can eject a drive here. */
  readonly canEject: boolean;
  /** What writing a drive in use means here, as the safety rule words it once allowed. */
  readonly whenInUse: string;
  /** Disks, partitions, volumes and what is mounted on them, as the system says now. */
  readSnapshot(): SystemSnapshot;
  /** The same, read without blocking the event loop (the app's drive list). */
  snapshot(): Promise<SystemSnapshot>;
  /**
   * Reading the picture costs a PowerShell or 2 + N diskutil runs: the app then reads it
   * again only when drivelist's answer changed or the system said a drive changed.
   */
  readonly snapshotIsDear: boolean;
  /** Whether `p` names a drive that is there now (Windows looks in `snapshot`'s disks). */
  isDrive(p: string, snapshot?: () => SystemSnapshot): boolean;
  /** Whether `p` is spelled as a drive (one that is gone is never created as a file). */
  isDrivePath(p: string): boolean;
  /** The snapshot's node for the drive `p` names and the path it resolved to; throws when none. */
  driveNode(p: string, snapshot: SystemSnapshot): { node: BlockNode; real: string };
  /** The node under the file system that holds `file` (`dev`: its stat dev), if the snapshot knows it. */
  fileSystemNode(file: string, dev: bigint, snapshot: SystemSnapshot): BlockNode | null;
  /** Size, block size, serial, backing file: without opening the drive where possible. */
  blockFacts(p: string): BlockFacts;
  /** Reading: opened uncached. Writing: prepared, then opened exclusively and uncached. */
  openDrive(p: string, writable: boolean): Promise<OpenedDrive>;
  /** Once the copy closed it: the partition table read again, ejected when asked. */
  afterCopy(p: string, eject: boolean): Promise<Removal>;
  /** An exclusive lock on an image file the job writes, where the system has one. */
  lockFile(fd: number): Promise<void>;
}

/** An OpenedDrive over a descriptor: I/O and flush through `os`; `release` runs once it is closed. */
export function openedDrive(
  os: OsCalls,
  d: {
    path: string;
    rawPath: string;
    fd: number;
    size: number;
    logicalBlockSize: number;
    /** After fdatasync, the drive's own write cache too (macOS: fdatasync doesn't reach it). */
    syncCache?: boolean;
  },
  release: () => Promise<void> = async () => undefined,
): OpenedDrive {
  let closed = false;
  return {
    rawPath: d.rawPath,
    size: d.size,
    logicalBlockSize: d.logicalBlockSize,
    read: (buffer, offset) => os.read(d.fd, d.path, buffer, offset),
    write: (buffer, offset) => os.write(d.fd, d.path, buffer, offset),
    async flush() {
      await os.fdatasync(d.fd, d.path);
      if (d.syncCache) await os.syncCache(d.fd, d.path);
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await os.close(d.fd);
      } finally {
        await release();
      }
    },
  };
}
