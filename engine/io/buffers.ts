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
