// The MBR: sector 0 of a disk — boot code, a 32-bit disk signature at byte 440, four
// partition entries at 446 and 0x55 0xAA at 510. A GPT disk carries a protective MBR:
// one entry of type 0xEE from sector 1 over the disk, as far as 32 bits reach.

import { randomBytes } from 'node:crypto';

export const MBR_BYTES = 512;
const SIGNATURE_AT = 440;
const ENTRIES_AT = 446;
const ENTRY_BYTES = 16;
export const PROTECTIVE_TYPE = 0xee;
const MAX_SECTORS = 0xffffffff;

export interface MbrEntry {
  slot: number;
  type: number;
  firstLba: number;
  sectors: number;
}

export interface Mbr {
  diskSignature: number;
  /** The slots in use. */
  entries: MbrEntry[];
}

/** Sector 0 as a partition table, or null: no boot signature, a file system's boot sector, no partition. */
export function parseMbr(sector: Buffer): Mbr | null {
  if (sector.length < MBR_BYTES || sector[510] !== 0x55 || sector[511] !== 0xaa) return null;
  if (isVolumeBootRecord(sector)) return null;
  const entries: MbrEntry[] = [];
  for (let slot = 0; slot < 4; slot++) {
    const e = sector.subarray(
      ENTRIES_AT + slot * ENTRY_BYTES,
      ENTRIES_AT + (slot + 1) * ENTRY_BYTES,
    );
    // Boot code where entries should be: the status byte is 0x00 or 0x80 in every real table.
    if (e[0] !== 0x00 && e[0] !== 0x80) return null;
    const type = e[4];
    const firstLba = e.readUInt32LE(8);
    const sectors = e.readUInt32LE(12);
    if (type === 0) continue;
    if (sectors === 0 || firstLba === 0) return null;
    entries.push({ slot, type, firstLba, sectors });
  }
  if (entries.length === 0) return null;
  return { diskSignature: sector.readUInt32LE(SIGNATURE_AT), entries };
}

/** FAT, exFAT and NTFS boot sectors end in 0x55 0xAA too: a whole-disk file system, not a table. */
function isVolumeBootRecord(sector: Buffer): boolean {
  const at = (offset: number, text: string): boolean =>
    sector.toString('latin1', offset, offset + text.length) === text;
  return at(3, 'NTFS    ') || at(3, 'EXFAT   ') || at(54, 'FAT1') || at(82, 'FAT32   ');
}

export function isProtective(mbr: Mbr): boolean {
  return mbr.entries.some((e) => e.type === PROTECTIVE_TYPE);
}

/** Where the last partition ends, in bytes (an extended partition counts whole). */
export function mbrPartitionsEnd(mbr: Mbr, sectorSize: number): number {
  return Math.max(
    0,
    ...mbr.entries
      .filter((e) => e.type !== PROTECTIVE_TYPE)
      .map((e) => (e.firstLba + e.sectors) * sectorSize),
  );
}

/** Sector 0 with another disk signature: random, non-zero, not `old`. */
export function withNewSignature(
  sector: Buffer,
  old: number,
  bytes: (n: number) => Buffer = randomBytes,
): Buffer {
  let signature = 0;
  while (signature === 0 || signature === old) signature = bytes(4).readUInt32LE(0);
  const out = Buffer.from(sector.subarray(0, MBR_BYTES));
  out.writeUInt32LE(signature, SIGNATURE_AT);
  return out;
}

/**
 * A protective MBR resized to a disk of `sectors` sectors (tools warn of a mismatch
 * otherwise), or null when it is not a plain one (a hybrid MBR is left as it is).
 */
export function protectiveFor(sector: Buffer, sectors: number): Buffer | null {
  const mbr = parseMbr(sector);
  const only = mbr?.entries.length === 1 ? mbr.entries[0] : null;
  if (!only || only.type !== PROTECTIVE_TYPE || only.firstLba !== 1) return null;
  const out = Buffer.from(sector.subarray(0, MBR_BYTES));
  out.writeUInt32LE(Math.min(sectors - 1, MAX_SECTORS), ENTRIES_AT + only.slot * ENTRY_BYTES + 12);
  return out;
}
