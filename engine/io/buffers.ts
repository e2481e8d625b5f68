import { getAlignedBuffer } from '@ronomon/direct-io';

/** Alignment that satisfies O_DIRECT on every logical block size we accept. */
export const IO_ALIGNMENT = 4096;

const MIB = 1024 * 1024;

// Memory is bounded in bytes, not in regions: a region may be 1 GiB. Large I/O is
// what reaches a drive's speed (the cost is per call), but past a few MiB per call
// nothing is gained, so a job longer than this is split into sub-jobs (kcopyd does).
/** The largest single read or write: a copy's sub-job, a verify piece, the zeros written at once. */
export const MAX_IO_BYTES = 8 * MIB;
/** The copy buffers of every batch in flight together (batches in flight = this / buffer size). */
export const MAX_IN_FLIGHT_BYTES = 32 * MIB;

/** A buffer that O_DIRECT accepts (Node's own Buffers are not aligned). Not zeroed. */
export function alignedBuffer(size: number): Buffer {
  const rounded = Math.ceil(size / IO_ALIGNMENT) * IO_ALIGNMENT;
  return getAlignedBuffer(rounded, IO_ALIGNMENT).subarray(0, size);
}

export function zeroedBuffer(size: number): Buffer {
  return alignedBuffer(size).fill(0);
}

/**
 * Copy and verify buffers are lent and given back, not allocated per job: MiBs
 * allocated and freed job after job leave the C heap fragmented, and a long-lived
 * engine's memory grew by tens of MiB per copy. Kept buffers are bounded in bytes.
 */
const KEPT_BYTES_LIMIT = MAX_IN_FLIGHT_BYTES;
const kept = new Map<number, Buffer[]>();
let keptBytes = 0;

/** An aligned buffer of `size` bytes (not zeroed), from those given back when one fits. */
export function borrowBuffer(size: number): Buffer {
  const free = kept.get(size)?.pop();
  if (!free) return alignedBuffer(size);
  keptBytes -= size;
  return free;
}

/** Buffers from borrowBuffer, no longer used. */
export function giveBack(buffers: Buffer[]): void {
  for (const buffer of buffers) {
    if (keptBytes + buffer.length > KEPT_BYTES_LIMIT) return;
    const list = kept.get(buffer.length) ?? [];
    list.push(buffer);
    kept.set(buffer.length, list);
    keptBytes += buffer.length;
  }
}

/** Nothing runs: the kept buffers go too (the engine host calls this when its last job ends). */
export function forgetKeptBuffers(): void {
  kept.clear();
  keptBytes = 0;
}
