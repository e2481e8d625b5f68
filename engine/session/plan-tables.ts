// The partition-aware part of a plan: the source's partition table, where the copy
// ends (the end of the last partition with --fit, else the source's end), the size an
// image file destination gets, and what the size rule of drives/safety.ts needs to
// know of the partitions. Reads only; a request that can't be met throws Refused.

import type { Range } from '../geometry';
import { type Device, knownSize } from '../io/device';
import { Refused, isZstPath, openReadable } from '../io/open';
import type { JobOptions } from '../options';
import { type PartitionTable, readPartitionTable } from '../partitions/table';

export interface PlannedTables {
  table: PartitionTable;
  /** Where the copy ends: the source's end, or with --fit its last partition's. */
  copyEnd: number;
  /** The size an image file destination gets: the copy's, plus a GPT's backup after a fitted one. */
  imageSize: number;
}

/**
 * Where the partitions of the disk or image at `path` end, and the least a drive must
 * hold to take them, for the size rule (the app's offer); null when it has no usable
 * table or can't be read here (an unprivileged front end: the engine checks again).
 */
export async function partitionsOf(path: string): Promise<PartitionsEnd | null> {
  try {
    const device = await openReadable(path);
    try {
      return await partitionsIn(device);
    } finally {
      await device.close();
    }
  } catch {
    return null;
  }
}

export interface PartitionsEnd {
  end: number;
  fitSize: number;
}

/** partitionsOf a device already open (a download, say); throws what reading it throws. */
export async function partitionsIn(device: Device): Promise<PartitionsEnd | null> {
  const found = await readPartitionTable(device);
  return found && found.kind !== 'damaged'
    ? { end: found.partitionsEnd, fitSize: found.fitSize }
    : null;
}

/**
 * What the clone does with the source's partition table: `partitions` (for the size
 * rule and the app's offer) and `tables` (what is rewritten; null when nothing is). A
 * source without one, or with a damaged one, is copied as it is, and --fit and
 * --new-ids are refused for it.
 */
export async function planTables(
  source: Device,
  options: JobOptions,
  destinations: string[],
): Promise<{ partitions: PartitionTable | null; tables: PlannedTables | null }> {
  const found = await readPartitionTable(source);
  const asked = options.fit ? '--fit' : options.newIds ? '--new-ids' : null;
  if (!found || found.kind === 'damaged') {
    if (!asked) return { partitions: null, tables: null };
    const why = found
      ? `its partition table can't be used (${found.reason})`
      : 'it holds no MBR or GPT partition table';
    throw new Refused(`${asked}: ${source.path} is not a partitioned disk: ${why}`);
  }
  const backup = destinations.find(isZstPath);
  if (asked && backup) {
    throw new Refused(
      `${asked}: ${backup} is a compressed backup: it keeps the source's image as it is`,
    );
  }
  const size = knownSize(source);
  if (size !== null && found.partitionsEnd > size) {
    if (asked) {
      throw new Refused(
        `${asked}: the partitions of ${source.path} end past its end (${found.partitionsEnd} > ${size} bytes): the image is cut short`,
      );
    }
    return { partitions: null, tables: null };
  }
  if (!options.fit && size === null) {
    // Where the copy ends is only known once the stream is read: the tables go as they are.
    if (asked)
      throw new Refused(
        `--new-ids: the size of ${source.path} is not known before it is read; add --fit`,
      );
    return { partitions: found, tables: null };
  }
  const tables = {
    table: found,
    copyEnd: options.fit ? found.partitionsEnd : size!,
    imageSize: options.fit ? found.fitSize : size!,
  };
  return { partitions: found, tables };
}

/**
 * The bytes whose regions a clone hydrates last: the start of the disk (the boot sector,
 * the MBR or GPT) and, where the copy holds it, the source's backup GPT — so that a copy
 * stopped early carries no new table anywhere. A stream's backup is not held back: it
 * would be read twice, the whole stream over.
 */
export function heldBack(
  plan: { partitions: PartitionTable | null; tables: PlannedTables | null },
  stream: boolean,
): Range[] {
  const { partitions, tables } = plan;
  if (!partitions) return [];
  const backup = partitions.backup;
  const copyEnd = tables?.copyEnd ?? null;
  const inCopy = backup && copyEnd !== null && backup.offset + backup.length <= copyEnd;
  return !stream && inCopy ? [partitions.head, backup] : [partitions.head];
}
