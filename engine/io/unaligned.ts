// Reads and writes at any byte offset and length on a Device. An image file takes them
// as they are; a drive is opened O_DIRECT, which takes whole logical blocks from aligned
// memory only: the blocks around the range go through an aligned buffer, and a write
// that covers a block only in part reads it first (read-modify-write — the caller makes
// sure nobody else writes those blocks meanwhile).

import { borrowBuffer, giveBack } from './buffers';
import type { Device } from './device';

/** The whole logical blocks around a byte range: a drive opened O_DIRECT takes nothing less. */
function blocksAround(device: Device, offset: number, length: number): [number, number] {
  const block = device.logicalBlockSize;
  return [Math.floor(offset / block) * block, Math.ceil((offset + length) / block) * block];
}

/** An aligned buffer of at least `bytes` (sizes rounded up to a power of two, so the pool reuses them). */
function borrowAtLeast(bytes: number): Buffer {
  return borrowBuffer(2 ** Math.ceil(Math.log2(Math.max(bytes, 4096))));
}

/** Reads `out.length` bytes at `offset`; a drive through an aligned buffer, in whole blocks. */
export async function readInto(device: Device, out: Buffer, offset: number): Promise<void> {
  if (device.kind === 'file') return device.read(out, offset);
  const [start, end] = blocksAround(device, offset, out.length);
  const held = borrowAtLeast(end - start);
  try {
    await device.read(held.subarray(0, end - start), start);
    held.copy(out, 0, offset - start, offset - start + out.length);
  } finally {
    giveBack([held]);
  }
}

/** Writes `data` at `offset`; a drive through an aligned buffer, in whole blocks (see above). */
export async function writeFrom(device: Device, data: Buffer, offset: number): Promise<void> {
  if (device.kind === 'file') return device.write(data, offset);
  const [start, end] = blocksAround(device, offset, data.length);
  const block = device.logicalBlockSize;
  const held = borrowAtLeast(end - start);
  const buffer = held.subarray(0, end - start);
  try {
    if (start < offset) await device.read(buffer.subarray(0, block), start);
    if (offset + data.length < end && (end - block > start || start === offset)) {
      await device.read(buffer.subarray(end - start - block), end - block);
    }
    data.copy(buffer, offset - start);
    await device.write(buffer, start);
  } finally {
    giveBack([held]);
  }
}
