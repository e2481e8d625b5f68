// A job belongs to the process holding its lock, never to a pid (invariant 7): a file
// per job in a folder beside the database, locked (flock; on Windows, opened with share
// mode 0) while the job runs or verifies. The kernel lets go of it when the process
// ends, however it ends — a pid can't say as much: a zombie that init reaps late keeps
// it alive, and a new process may get it.

import fs from 'node:fs';
import path from 'node:path';
import { hasFlock, tryFlock } from '../io/flock';

/** Windows' share mode 0 (libuv's UV_FS_O_EXLOCK): a second open fails while one is held. */
const O_EXLOCK = 0x10000000;
const HELD_CODES = new Set(['EBUSY', 'EPERM', 'EACCES']);

export class JobLocks {
  /** Descriptors of the locks this process holds, by job. */
  private readonly mine = new Map<number, number>();

  constructor(private readonly database: string) {}

  /** The lock file of job `id`. */
  fileOf(id: number): string {
    return path.join(`${this.database}.locks`, `job-${id}`);
  }

  /** Takes job `id` for this process; false when it is held already, here or elsewhere. */
  take(id: number): boolean {
    if (this.mine.has(id)) return false;
    const file = this.fileOf(id);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const { O_RDWR, O_CREAT } = fs.constants;
    const fd = open(file, O_RDWR | O_CREAT | (hasFlock() ? 0 : O_EXLOCK));
    if (fd === null) return false;
    if (hasFlock() && !tryFlock(fd, 'exclusive')) {
      fs.closeSync(fd);
      return false;
    }
    this.mine.set(id, fd);
    return true;
  }

  /** Lets go of job `id` (when this process holds it). */
  release(id: number): void {
    const fd = this.mine.get(id);
    if (fd === undefined) return;
    this.mine.delete(id);
    try {
      fs.closeSync(fd);
    } catch {
      // closing can't fail in a way that keeps the lock
    }
  }

  /** Whether some process, this one included, holds job `id` now. */
  isHeld(id: number): boolean {
    if (this.mine.has(id)) return true;
    const file = this.fileOf(id);
    // Never locked: no DriveTwin that takes job locks ran it.
    if (!fs.existsSync(file)) return false;
    const fd = open(file, fs.constants.O_RDONLY | (hasFlock() ? 0 : O_EXLOCK));
    if (fd === null) return true;
    try {
      return hasFlock() ? !tryFlock(fd, 'shared') : false;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The job is forgotten: its lock file goes too. */
  forget(id: number): void {
    if (!this.isHeld(id)) fs.rmSync(this.fileOf(id), { force: true });
  }
}

/** Opens `file`; null when another holder's share mode refuses it (Windows). */
function open(file: string, flags: number): number | null {
  try {
    return fs.openSync(file, flags, 0o644);
  } catch (e) {
    if (!hasFlock() && HELD_CODES.has((e as NodeJS.ErrnoException).code ?? '')) return null;
    throw e;
  }
}
