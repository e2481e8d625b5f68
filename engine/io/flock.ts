// flock(2), taken without waiting: the lock the kernel lets go of when its holder's
// descriptor closes — however the process ends, a kill -9 included, and whatever pid
// a zombie or a new process shows meanwhile. Through libc (io/libc.ts), synchronous:
// a job list asks it of every running job. Null where there is no flock (Windows).

import { libc } from './libc';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
/** EWOULDBLOCK: Linux 11, macOS 35. */
const WOULD_BLOCK = new Set([11, 35]);

type FlockCall = (fd: number, operation: number) => number;

let call: FlockCall | null | undefined;

function flockCall(): FlockCall | null {
  if (call === undefined) {
    const lib = libc();
    call = lib ? (lib.func('int flock(int, int)') as FlockCall) : null;
  }
  return call;
}

/** Whether flock exists here. */
export function hasFlock(): boolean {
  return flockCall() !== null;
}

/**
 * Takes a lock on `fd` without waiting: true when taken, false when another descriptor
 * holds a conflicting one. Throws on any other failure, or where there is no flock.
 */
export function tryFlock(fd: number, how: 'shared' | 'exclusive'): boolean {
  const flock = flockCall();
  if (!flock) throw new Error(`flock does not exist on ${process.platform}`);
  if (flock(fd, (how === 'shared' ? LOCK_SH : LOCK_EX) | LOCK_NB) === 0) return true;
  const errno = libc()!.errno();
  if (WOULD_BLOCK.has(errno)) return false;
  throw Object.assign(new Error(`flock failed (errno ${errno})`), { errno });
}
