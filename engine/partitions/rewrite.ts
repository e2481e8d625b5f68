// What one destination gets instead of the source's bytes where its partition table
// is rewritten — for its own size (a GPT's backup moves to its end, the primary header
// says so), with new identifiers when asked — and what is written past the copy: zeros
// over the end of the disk, where an older table's backup or another signature may
// linger, and a GPT's backup in its last sectors.

import type { Range } from '../geometry';
import { alignedBuffer } from '../io/buffers';
import type { Device } from '../io/device';
import { type IdBytes, gptFor, newGuid, withNewPartitionGuids } from './gpt';
import { protectiveFor, withNewSignature } from './mbr';
import type { PartitionTable } from './table';

/** Bytes at `offset`. */
export interface Patch {
  offset: number;
  bytes: Buffer;
}

export interface TableWrites {
  /** Within the copy: this destination's bytes instead of the source's. */
  inCopy: Patch[];
  /** Past the copy, up to the destination's end. */
  pastCopy: Patch[];
}

/** The end of a disk that is cleared when the copy stops short of it. */
export const TAIL_CLEARED = 1024 * 1024;

export const NO_TABLE_WRITES: TableWrites = { inCopy: [], pastCopy: [] };

/**
 * The table writes for a destination of `size` bytes when the copy spans
 * [0, copyEnd). Nothing when the source's tables already fit it and its identifiers stay.
 * `newIds`: new identifiers, random (true) or from the given bytes (a job's seed).
 */
export function tableWrites(
  table: PartitionTable,
  copyEnd: number,
  size: number,
  newIds: boolean | IdBytes,
): TableWrites {
  const writes: Patch[] = [];
  if (size > copyEnd) {
    const from = Math.max(copyEnd, size - TAIL_CLEARED);
    writes.push({ offset: from, bytes: Buffer.alloc(size - from) });
  }
  if (table.gpt) writes.push(...gptWrites(table, copyEnd, size, newIds));
  else if (newIds) {
    writes.push({
      offset: 0,
      bytes: withNewSignature(table.sector0, table.mbr.diskSignature, idBytes(newIds)),
    });
  }
  return layOut(writes, copyEnd);
}

function idBytes(newIds: true | IdBytes): IdBytes | undefined {
  return newIds === true ? undefined : newIds;
}

function gptWrites(
  table: PartitionTable,
  copyEnd: number,
  size: number,
  newIds: boolean | IdBytes,
): Patch[] {
  const gpt = table.gpt!;
  const { sectorSize: ss } = table;
  const sectors = Math.floor(size / ss);
  const lastLba = sectors - 1;
  // The copy carries the source's backup to where this disk's belongs: nothing to rewrite.
  if (lastLba === gpt.header.alternateLba && size <= copyEnd && !newIds) return [];
  const entries = newIds ? withNewPartitionGuids(gpt, idBytes(newIds)) : gpt.entries;
  const diskGuid = newIds ? newGuid(idBytes(newIds)) : gpt.header.diskGuid;
  const built = gptFor(gpt, lastLba, ss, { diskGuid, entries });
  const writes: Patch[] = [];
  // The source's backup, where the copy puts it: cleared (unless this disk's lies there too).
  const stale = table.backup;
  if (stale && stale.offset + stale.length <= copyEnd) {
    writes.push({ offset: stale.offset, bytes: Buffer.alloc(stale.length) });
  }
  const sector0 = protectiveFor(table.sector0, sectors);
  if (sector0) writes.push({ offset: 0, bytes: sector0 });
  writes.push({ offset: ss, bytes: built.primary });
  writes.push({ offset: gpt.header.entriesLba * ss, bytes: entries });
  writes.push({ offset: built.backupEntriesLba * ss, bytes: entries });
  writes.push({ offset: lastLba * ss, bytes: built.backup });
  return writes;
}

/**
 * Joins overlapping writes into spans (a later write wins where two overlap), cut at
 * the copy's end, each in its own aligned buffer (drives are written with O_DIRECT).
 */
function layOut(writes: Patch[], copyEnd: number): TableWrites {
  const spans: Range[] = [];
  for (const w of [...writes].sort((a, b) => a.offset - b.offset)) {
    const last = spans[spans.length - 1];
    const end = w.offset + w.bytes.length;
    if (last && w.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, end - last.offset);
    } else spans.push({ offset: w.offset, length: end - w.offset });
  }
  const out: TableWrites = { inCopy: [], pastCopy: [] };
  for (const span of spans.flatMap((s) => cut(s, copyEnd))) {
    const bytes = alignedBuffer(span.length).fill(0);
    for (const w of writes) {
      const from = Math.max(w.offset, span.offset);
      const to = Math.min(w.offset + w.bytes.length, span.offset + span.length);
      if (from < to) w.bytes.copy(bytes, from - span.offset, from - w.offset, to - w.offset);
    }
    (span.offset < copyEnd ? out.inCopy : out.pastCopy).push({ offset: span.offset, bytes });
  }
  return out;
}

/** `span` split where the copy ends. */
function cut(span: Range, at: number): Range[] {
  const end = span.offset + span.length;
  if (at <= span.offset || at >= end) return [span];
  return [
    { offset: span.offset, length: at - span.offset },
    { offset: at, length: end - at },
  ];
}

/**
 * Lays a destination's own bytes over `data`, the copy's bytes at `offset`; returns
 * the source's bytes they replaced, to put back, or null when none lie there.
 */
export function overlay(data: Buffer, offset: number, patches: Patch[]): Patch[] | null {
  const saved: Patch[] = [];
  for (const p of patches) {
    const from = Math.max(p.offset, offset);
    const to = Math.min(p.offset + p.bytes.length, offset + data.length);
    if (from >= to) continue;
    saved.push({ offset: from, bytes: Buffer.from(data.subarray(from - offset, to - offset)) });
    p.bytes.copy(data, from - offset, from - p.offset, to - p.offset);
  }
  return saved.length > 0 ? saved : null;
}

/** Writes each patch where it belongs. */
export async function writePatches(device: Device, patches: Patch[]): Promise<void> {
  for (const p of patches) await device.write(p.bytes, p.offset);
}
