// What a target holds now, in words for the confirmation: what a copy onto it erases.
import type { DriveContents } from '../../preload/events';
import { formatBytes } from './format';

const TABLES: Record<string, string> = { gpt: 'GPT', dos: 'MBR (DOS)' };

/** "ext4 “uxsource”" / "vfat, no label" / "no file system recognised". */
function filesystemWords(type: string | null, label: string | null): string {
  if (!type) return 'no file system recognised';
  return label ? `${type} “${label}”` : `${type}, no label`;
}

/**
 * One line per thing found: the partition table, then each partition (number, file
 * system, label, size); or the file system on the whole drive; or what could be seen.
 * "Blank" only when the backend proved it.
 */
export function contentsWords(c: DriveContents, kind: 'block' | 'file' = 'block'): string[] {
  const whole = kind === 'file' ? 'the whole image' : 'the whole drive';
  if (!c.examined)
    return [`Could not look inside (${c.why ?? 'unknown reason'}): assume all of it is erased.`];
  if (c.newFile) return ['A new file.'];
  if (c.partitionTable) {
    const table = TABLES[c.partitionTable] ?? c.partitionTable;
    const n = c.partitions.length;
    const head = `${table} partition table, ${n === 0 ? 'no partitions' : n === 1 ? '1 partition' : `${n} partitions`}${n > 0 ? ':' : '.'}`;
    return [
      head,
      ...c.partitions.map(
        (p) =>
          `Partition ${p.number}: ${filesystemWords(p.fsType, p.label)}, ${formatBytes(p.size)}${p.name ? ` (named “${p.name}”)` : ''}`,
      ),
    ];
  }
  if (c.filesystem) {
    return [
      `A file system on ${whole}: ${filesystemWords(c.filesystem.type, c.filesystem.label)}.`,
    ];
  }
  if (c.blank) return ['Blank: every byte is zero.'];
  return [
    c.dataSeen
      ? 'No partition table or file system recognised, but it holds data.'
      : 'No partition table or file system recognised; its first and last MiB are zeros (the rest was not read).',
  ];
}
