import { getAlignedBuffer } from '@ronomon/direct-io';

/** Alignment that satisfies O_DIRECT on every logical block size we accept. */
export const IO_ALIGNMENT = 4096;

/** A buffer that O_DIRECT accepts (Node's own Buffers are not aligned). Not zeroed. */
export function alignedBuffer(size: number): Buffer {
  const rounded = Math.ceil(size / IO_ALIGNMENT) * IO_ALIGNMENT;
  return getAlignedBuffer(rounded, IO_ALIGNMENT).subarray(0, size);
}

export function zeroedBuffer(size: number): Buffer {
  return alignedBuffer(size).fill(0);
}

/** The largest single I/O: a region or batch bigger than this is copied in pieces of it. */
export const MAX_IO_BYTES = 8 * 1024 * 1024;
/** The copy buffers of all I/Os in flight together: what bounds memory, whatever the region size. */
export const MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024;
