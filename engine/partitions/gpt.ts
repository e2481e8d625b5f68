// The GUID partition table: a header at LBA 1 and an array of entries (usually 128 of
// 128 bytes from LBA 2), each with a CRC-32, and the same again at the end of the disk
// in the other order — the backup entries, then the backup header in the last sector.
// Each header says where it lies (my LBA), where the other one lies (alternate LBA) and
// which sectors partitions may use (first and last usable LBA).

import { randomBytes } from 'node:crypto';
import { crc32 } from './crc32';

const SIGNATURE = 'EFI PART';
const MIN_HEADER_BYTES = 92;
const GUID_BYTES = 16;

export interface GptHeader {
  /** The header's bytes (its header size), as read or as built. */
  raw: Buffer;
  myLba: number;
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: Buffer;
  entriesLba: number;
  entryCount: number;
  entryBytes: number;
  entriesCrc: number;
}

/** A GPT: its header and its entry array. */
export interface Gpt {
  header: GptHeader;
  entries: Buffer;
}

/** The header in `sector`, when its signature and CRC are right; else null. */
export function parseGptHeader(sector: Buffer): GptHeader | null {
  if (sector.length < MIN_HEADER_BYTES || sector.toString('latin1', 0, 8) !== SIGNATURE) {
    return null;
  }
  const size = sector.readUInt32LE(12);
  if (size < MIN_HEADER_BYTES || size > sector.length) return null;
  const raw = Buffer.from(sector.subarray(0, size));
  if (headerCrc(raw) !== raw.readUInt32LE(16)) return null;
  const lba = (at: number): number => Number(raw.readBigUInt64LE(at));
  const header: GptHeader = {
    raw,
    myLba: lba(24),
    alternateLba: lba(32),
    firstUsableLba: lba(40),
    lastUsableLba: lba(48),
    diskGuid: Buffer.from(raw.subarray(56, 72)),
    entriesLba: lba(72),
    entryCount: raw.readUInt32LE(80),
    entryBytes: raw.readUInt32LE(84),
    entriesCrc: raw.readUInt32LE(88),
  };
  const sane = header.entryBytes >= 128 && header.entryCount > 0 && header.entryCount <= 65536;
  return sane ? header : null;
}

function headerCrc(raw: Buffer): number {
  const copy = Buffer.from(raw);
  copy.writeUInt32LE(0, 16);
  return crc32(copy);
}

export function entriesLength(h: GptHeader): number {
  return h.entryCount * h.entryBytes;
}

/** Sectors the entry array takes. */
export function entrySectors(h: GptHeader, sectorSize: number): number {
  return Math.ceil(entriesLength(h) / sectorSize);
}

export function entriesCrcOk(gpt: Gpt): boolean {
  return crc32(gpt.entries.subarray(0, entriesLength(gpt.header))) === gpt.header.entriesCrc;
}

/** The entries in use (a type GUID that is not all zeros), with their slot. */
export function usedEntries(gpt: Gpt): Array<{ slot: number; bytes: Buffer }> {
  const out: Array<{ slot: number; bytes: Buffer }> = [];
  const { entryCount, entryBytes } = gpt.header;
  for (let slot = 0; slot < entryCount; slot++) {
    const bytes = gpt.entries.subarray(slot * entryBytes, (slot + 1) * entryBytes);
    if (bytes.subarray(0, GUID_BYTES).some((b) => b !== 0)) out.push({ slot, bytes });
  }
  return out;
}

/** A used entry's unique partition GUID. */
export function partitionGuid(entry: Buffer): Buffer {
  return entry.subarray(16, 32);
}

export function lastLbaOf(entry: Buffer): number {
  return Number(entry.readBigUInt64LE(40));
}

/** Where the last partition ends, in bytes. */
export function gptPartitionsEnd(gpt: Gpt, sectorSize: number): number {
  return Math.max(0, ...usedEntries(gpt).map((e) => (lastLbaOf(e.bytes) + 1) * sectorSize));
}

/** Where new identifiers' bytes come from: random, or a job's seeded stream. */
export type IdBytes = (n: number) => Buffer;

/** A random (version 4) GUID, as GPT stores it (the first three fields little-endian). */
export function newGuid(bytes: IdBytes = randomBytes): Buffer {
  const g = bytes(GUID_BYTES);
  g[7] = (g[7] & 0x0f) | 0x40;
  g[8] = (g[8] & 0x3f) | 0x80;
  return g;
}

/** The entries with a fresh unique GUID for every partition. */
export function withNewPartitionGuids(gpt: Gpt, bytes: IdBytes = randomBytes): Buffer {
  const entries = Buffer.from(gpt.entries);
  const fresh = { ...gpt, entries };
  for (const e of usedEntries(fresh)) newGuid(bytes).copy(e.bytes, 16);
  return entries;
}

/**
 * Both tables of a disk whose last sector is `lastLba`, from `source`'s: the primary
 * header at LBA 1 points at the backup in the last sector, the backup's entries fill
 * the sectors just before it, and partitions may use everything in between.
 */
export function gptFor(
  source: Gpt,
  lastLba: number,
  sectorSize: number,
  ids: { diskGuid: Buffer; entries: Buffer },
): { primary: Buffer; backup: Buffer; backupEntriesLba: number; lastUsableLba: number } {
  const h = source.header;
  const backupEntriesLba = lastLba - entrySectors(h, sectorSize);
  const lastUsableLba = backupEntriesLba - 1;
  const entriesCrc = crc32(ids.entries.subarray(0, entriesLength(h)));
  const build = (myLba: number, alternateLba: number, entriesLba: number): Buffer => {
    const raw = Buffer.from(h.raw);
    raw.writeBigUInt64LE(BigInt(myLba), 24);
    raw.writeBigUInt64LE(BigInt(alternateLba), 32);
    raw.writeBigUInt64LE(BigInt(lastUsableLba), 48);
    ids.diskGuid.copy(raw, 56);
    raw.writeBigUInt64LE(BigInt(entriesLba), 72);
    raw.writeUInt32LE(entriesCrc, 88);
    raw.writeUInt32LE(headerCrc(raw), 16);
    const sector = Buffer.alloc(sectorSize);
    raw.copy(sector);
    return sector;
  };
  return {
    primary: build(1, lastLba, h.entriesLba),
    backup: build(lastLba, 1, backupEntriesLba),
    backupEntriesLba,
    lastUsableLba,
  };
}
