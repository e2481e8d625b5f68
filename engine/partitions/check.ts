// Verify's own look at a destination's rewritten partition table: the bytes there are
// the destination's, not the source's, so instead of comparing them it checks that the
// table is whole (CRCs, a backup GPT in the last sector that the primary points at),
// describes the source's partitions, and carries new identifiers exactly when asked.

import { type Geometry, type Range, regionsOf } from '../geometry';
import type { Device } from '../io/device';
import {
  type Gpt,
  entriesCrcOk,
  entrySectors,
  parseGptHeader,
  partitionGuid,
  usedEntries,
} from './gpt';
import type { Mbr } from './mbr';
import type { Patch, TableWrites } from './rewrite';
import { type PartitionTable, readBytes, readPartitionTable } from './table';

/** Why `dest`'s table is not the source's as rewritten for it, or null when it is. */
export async function tableProblem(
  source: PartitionTable,
  dest: Device,
  newIds: boolean,
): Promise<string | null> {
  const found = await readPartitionTable(dest);
  if (!found) return 'it holds no partition table';
  if (found.kind === 'damaged') return `its partition table is damaged: ${found.reason}`;
  if (found.kind !== source.kind)
    return `its partition table is ${found.kind}, the source's ${source.kind}`;
  if (source.kind === 'mbr') return mbrProblem(source.mbr, found.mbr, newIds);
  return (await backupProblem(found, dest)) ?? entriesProblem(source.gpt!, found.gpt!, newIds);
}

function mbrProblem(source: Mbr, found: Mbr, newIds: boolean): string | null {
  const text = (m: Mbr): string => JSON.stringify(m.entries);
  if (text(found) !== text(source)) return 'its MBR partitions differ from the source’s';
  if (newIds === (found.diskSignature === source.diskSignature)) {
    return newIds
      ? 'its MBR disk signature is still the source’s'
      : 'its MBR disk signature differs';
  }
  return null;
}

/** The primary header points at a backup in the last sector, and the backup is whole and agrees. */
async function backupProblem(found: PartitionTable, dest: Device): Promise<string | null> {
  const { header } = found.gpt!;
  const ss = found.sectorSize;
  const lastLba = Math.floor(dest.size / ss) - 1;
  if (header.alternateLba !== lastLba) {
    return `its GPT header places the backup at sector ${header.alternateLba}, not in its last sector (${lastLba})`;
  }
  if (header.lastUsableLba !== lastLba - entrySectors(header, ss) - 1) {
    return `its GPT's last usable sector is ${header.lastUsableLba}, not the last before the backup`;
  }
  const backup = parseGptHeader(await readBytes(dest, lastLba * ss, ss));
  if (!backup || backup.myLba !== lastLba || backup.alternateLba !== header.myLba) {
    return 'its backup GPT header is missing or damaged';
  }
  const entries = await readBytes(dest, backup.entriesLba * ss, entrySectors(backup, ss) * ss);
  if (!entriesCrcOk({ header: backup, entries }) || backup.entriesCrc !== header.entriesCrc) {
    return 'its backup GPT entries are damaged or differ from the primary ones';
  }
  if (!backup.diskGuid.equals(header.diskGuid)) return 'its two GPT headers name different disks';
  return null;
}

/** The same partitions as the source's; their GUIDs and the disk's new exactly when asked. */
function entriesProblem(source: Gpt, found: Gpt, newIds: boolean): string | null {
  const theirs = usedEntries(source);
  const mine = usedEntries(found);
  const sameGuid = (a: Buffer, b: Buffer): boolean => partitionGuid(a).equals(partitionGuid(b));
  const withoutGuid = (e: Buffer): Buffer => Buffer.concat([e.subarray(0, 16), e.subarray(32)]);
  if (
    mine.length !== theirs.length ||
    mine.some(
      (e, i) =>
        e.slot !== theirs[i].slot || !withoutGuid(e.bytes).equals(withoutGuid(theirs[i].bytes)),
    )
  ) {
    return 'its GPT partitions differ from the source’s';
  }
  const guidsKept = mine.filter((e, i) => sameGuid(e.bytes, theirs[i].bytes)).length;
  const diskKept = found.header.diskGuid.equals(source.header.diskGuid);
  if (newIds && (diskKept || guidsKept > 0)) return 'it still carries GUIDs of the source';
  if (!newIds && (!diskKept || guidsKept < mine.length))
    return 'its GPT GUIDs differ from the source’s';
  return null;
}

/** A destination as the job holds it: its device and what it gets instead of the source's tables. */
interface TableTarget {
  device: Device;
  tables?: TableWrites;
}

/** Where an MBR's signature starts: the boot code before it is always the source's, and compared. */
const BOOT_CODE_BYTES = 440;

/** The bytes of `patches`, but the boot code: what is checked apart instead of compared. */
export function ownRanges(patches: Patch[]): Range[] {
  return patches.flatMap((p) => {
    const offset = Math.max(p.offset, BOOT_CODE_BYTES);
    const end = p.offset + p.bytes.length;
    return offset < end ? [{ offset, length: end - offset }] : [];
  });
}

/** Per destination path: the bytes that are its own (its rewritten tables), compared apart. */
export function rewrittenRanges(targets: TableTarget[]): Record<string, Range[]> {
  return Object.fromEntries(targets.map((t) => [t.device.path, ownRanges(t.tables?.inCopy ?? [])]));
}

/** The regions that hold the tables on some destination: the source's head, and every rewrite. */
export function tableRegions(
  g: Geometry,
  partitions: PartitionTable | null,
  targets: TableTarget[],
): number[] {
  const ranges = [
    ...(partitions ? [partitions.head] : []),
    ...Object.values(rewrittenRanges(targets)).flat(),
  ];
  const out = new Set<number>();
  for (const r of ranges) {
    const { first, count } = regionsOf(g, r);
    for (let i = first; i < first + count && i < g.regionCount; i++) out.add(i);
  }
  return [...out];
}

/** Per destination path whose tables are the job's doing: why they are wrong, or null. */
export async function checkTables(
  partitions: PartitionTable | null,
  targets: TableTarget[],
  newIds: boolean,
): Promise<Record<string, string | null>> {
  const out: Record<string, string | null> = {};
  for (const t of targets) {
    if (!partitions || !t.tables) continue;
    out[t.device.path] = await tableProblem(partitions, t.device, newIds).catch(
      (e: Error) => `its partition table could not be read back: ${e.message}`,
    );
  }
  return out;
}
