// `drivetwin verify SOURCE DEST…` of a partitioned source, without the job that made the
// copy: a destination smaller than the source is compared up to the end of the last
// partition (a fitted copy); the bytes a clone may have rewritten (the tables, for the
// destination's size or with new identifiers) are left out of the compare, and each
// destination's table is checked on its own (check.ts), with new identifiers expected
// when its disk GUID or signature is not the source's.

import type { Range } from '../geometry';
import { type Device, isStream } from '../io/device';
import { ownRanges, tableProblem } from './check';
import { tableWrites } from './rewrite';
import { type PartitionTable, readPartitionTable } from './table';

export interface TablesVerify {
  /** Bytes compared: the source's size, or where its partitions end when a destination is smaller. */
  length: number;
  /** Per destination path: bytes a clone rewrote there, not compared. */
  rewritten: Record<string, Range[]>;
  /** Per destination path: why its table is wrong, or null. */
  check(): Promise<Record<string, string | null>>;
}

/**
 * How to verify `dests` against a partitioned `source` of `size` bytes; null when the
 * source has no usable table, a device is a stream, or a destination can't hold its
 * partitions: then the plain comparison, and its refusal, apply.
 */
export async function tablesVerify(
  source: Device,
  dests: Device[],
  size: number,
): Promise<TablesVerify | null> {
  // A compressed backup keeps the source's tables as they are: compared like any byte.
  if (isStream(source) || dests.some(isStream)) return null;
  const table = await readPartitionTable(source);
  if (!table || table.kind === 'damaged') return null;
  const fitted = dests.some((d) => d.size < size);
  if (fitted && dests.some((d) => d.size < table.fitSize)) return null;
  const length = fitted ? table.partitionsEnd : size;
  // With new identifiers a clone rewrites the most: every place one may differ.
  const rewritten = Object.fromEntries(
    dests.map((d) => [d.path, ownRanges(tableWrites(table, length, d.size, true).inCopy)]),
  );
  return {
    length,
    rewritten,
    async check() {
      const out: Record<string, string | null> = {};
      for (const d of dests) {
        out[d.path] = await tableProblem(table, d, await hasNewIds(table, d)).catch(
          (e: Error) => `its partition table could not be read back: ${e.message}`,
        );
      }
      return out;
    },
  };
}

/** Whether `dest`'s disk identifier is not the source's: the copy was given new ones. */
async function hasNewIds(source: PartitionTable, dest: Device): Promise<boolean> {
  const found = await readPartitionTable(dest);
  if (!found || found.kind === 'damaged' || found.kind !== source.kind) return false;
  if (source.gpt && found.gpt) return !found.gpt.header.diskGuid.equals(source.gpt.header.diskGuid);
  return found.mbr.diskSignature !== source.mbr.diskSignature;
}
