// What a copy of only the used space reads, in words: the whole, and each partition —
// read through its file system, copied whole, or skipped — as the engine planned it.
import type { UsedArea, UsedSpaceInfo } from '../../preload/events';
import { formatBytes } from './format';

/** "1.20 GiB of 4.00 GiB to copy". */
export function usedSpaceTotal(u: UsedSpaceInfo): string {
  return `${formatBytes(u.bytesToCopy)} of ${formatBytes(u.bytesTotal)} to copy`;
}

/** One line per partition (or the file system on the whole source). */
export function areaWords(a: UsedArea): string {
  const name = a.partition === 0 ? 'The file system' : `Partition ${a.partition}`;
  const what = `${a.fs ?? 'unknown'}, ${formatBytes(a.size)}`;
  if (a.copy === 'used') return `${name} (${what}): ${formatBytes(a.bytes)} used`;
  return `${name} (${what}): ${a.note ?? (a.copy === 'whole' ? 'copied whole' : 'skipped')}`;
}

/** What lies outside the partitions: kept as it is, and what after the last one is left out. */
export function outsideWords(u: UsedSpaceInfo): string | null {
  if (u.table === 'none') return null;
  const after = u.afterLastBytes
    ? `; the ${formatBytes(u.afterLastBytes)} after the last partition, in none, is left out`
    : '';
  return `Outside the partitions: ${formatBytes(u.outsideBytes)} copied as it is (the partition table, gaps)${after}`;
}
