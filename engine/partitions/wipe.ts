// Invariant 9: wipe first, table last. A new job zeroes the places where a destination's
// old partition tables lie — its first and last MiB, and wherever its old GPT says its
// backup is — before any region is copied (session/setup.ts says where, hydration/job.ts
// wipes them first thing and flushes); the source's tables are hydrated last. So a copy stopped half-way leaves
// a disk with no partition table at all: nothing a system could mount and write into
// (macOS and Windows mount what they find when a drive is closed or plugged in again,
// desktop Linux too), nothing a resume would trust. Raspberry Pi Imager zeroes the first
// and last MiB before writing for the same reason; etcher-sdk runs `diskpart clean`.
// A resumed or updated job never wipes: what it committed is on the destination.

import { mergeRanges, type Range } from '../geometry';
import { zeroedBuffer } from '../io/buffers';
import type { Device } from '../io/device';
import { entrySectors, parseGptHeader } from './gpt';
import { readBytes } from './table';

/** The start and the end of a disk that are zeroed: where MBR, GPT and their backups live. */
export const WIPED_BYTES = 1024 * 1024;
const GPT_SECTOR_SIZES = [512, 4096];

/** `range` widened to whole blocks of `block` bytes and clipped to [0, size). */
function wholeBlocks(range: Range, block: number, size: number): Range | null {
  const from = Math.floor(range.offset / block) * block;
  const to = Math.min(size, Math.ceil((range.offset + range.length) / block) * block);
  return to > from ? { offset: from, length: to - from } : null;
}

/** Where the old GPT's primary header (at LBA 1) says its backup entries and header lie. */
async function oldGptBackup(device: Device): Promise<Range | null> {
  for (const ss of GPT_SECTOR_SIZES) {
    if (2 * ss > device.size) continue;
    const header = parseGptHeader(await readBytes(device, ss, ss));
    if (!header) continue;
    const entries = entrySectors(header, ss);
    const first = header.alternateLba - entries;
    if (first <= 1) return null;
    return { offset: first * ss, length: (entries + 1) * ss };
  }
  return null;
}

/**
 * The byte ranges of `device` an old partition table may occupy, in whole logical
 * blocks: the first and last MiB, and an old GPT's backup wherever it points.
 */
export async function oldTableRanges(device: Device): Promise<Range[]> {
  const { size, logicalBlockSize: block } = device;
  const ranges = [
    { offset: 0, length: Math.min(WIPED_BYTES, size) },
    { offset: Math.max(0, size - WIPED_BYTES), length: Math.min(WIPED_BYTES, size) },
  ];
  const backup = await oldGptBackup(device).catch(() => null);
  if (backup) ranges.push(backup);
  return mergeRanges(
    ranges.map((r) => wholeBlocks(r, block, size)).filter((r): r is Range => r !== null),
  );
}

/**
 * Zeroes every range of `ranges` on `device`, then flushes it. Returns the bytes
 * written. Nothing is read or written for an empty list.
 */
export async function wipe(device: Device, ranges: Range[]): Promise<number> {
  let written = 0;
  const zeros = zeroedBuffer(WIPED_BYTES);
  for (const r of ranges) {
    for (let at = r.offset; at < r.offset + r.length;) {
      const length = Math.min(WIPED_BYTES, r.offset + r.length - at);
      await device.write(zeros.subarray(0, length), at);
      at += length;
      written += length;
    }
  }
  if (written > 0) await device.flush();
  return written;
}

/** `ranges` less the bytes of `kept` (regions a mapfile says are already on the destination). */
export function without(ranges: Range[], kept: Range[]): Range[] {
  let out = ranges.map((r) => ({ ...r }));
  for (const k of kept) {
    const kEnd = k.offset + k.length;
    out = out.flatMap((r) => {
      const end = r.offset + r.length;
      if (kEnd <= r.offset || k.offset >= end) return [r];
      const parts: Range[] = [];
      if (k.offset > r.offset) parts.push({ offset: r.offset, length: k.offset - r.offset });
      if (kEnd < end) parts.push({ offset: kEnd, length: end - kEnd });
      return parts;
    });
  }
  return out;
}
