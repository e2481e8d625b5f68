// A disk's partition table as the copy needs it: MBR or GPT, where its last partition
// ends, the least a smaller target must hold to take them all, and which bytes at the
// start hold the tables. Read from the head of the disk only (a compressed source is
// read as a stream), so the source's backup GPT is found where its header says.

import type { Range } from '../geometry';
import { type Device, STREAM_HEAD_BYTES, isStream, readSome } from '../io/device';
import { alignedBuffer } from '../io/buffers';
import {
  type Gpt,
  entriesCrcOk,
  entriesLength,
  entrySectors,
  gptPartitionsEnd,
  parseGptHeader,
} from './gpt';
import { MBR_BYTES, type Mbr, isProtective, mbrPartitionsEnd, parseMbr } from './mbr';

/**
 * Bytes read from the start: the MBR, a GPT header and its usual entry array fit many
 * times; as much of a stream as can be read again (the copy starts at 0 after the plan).
 */
const HEAD_BYTES = STREAM_HEAD_BYTES;
const SECTOR_SIZES = [512, 4096];

export interface PartitionTable {
  kind: 'gpt' | 'mbr';
  /** The table's sector (LBA) size. */
  sectorSize: number;
  /** Sector 0: the MBR, or a GPT's protective MBR. */
  sector0: Buffer;
  mbr: Mbr;
  gpt: Gpt | null;
  /** Where the last partition ends, in bytes. */
  partitionsEnd: number;
  /** The least a disk must hold for these partitions: their end, plus a GPT's backup after it. */
  fitSize: number;
  /** The start of the disk that holds the tables: the MBR (and boot code), a GPT and its entries. */
  head: Range;
  /** Where the source's backup GPT lies, as its primary header says. */
  backup: Range | null;
}

/** A table that can't be used: its GPT fails its checks. Copied as it is, never rewritten. */
export interface DamagedTable {
  kind: 'damaged';
  reason: string;
}

/**
 * The partition table at the start of `device` (a stream not yet past its kept head), or
 * null when there is none (a bare file system, random data, an MBR with no partition).
 */
export async function readPartitionTable(
  device: Device,
): Promise<PartitionTable | DamagedTable | null> {
  const head = alignedBuffer(Math.min(HEAD_BYTES, device.size));
  const got = await readSome(device, head, 0);
  const bytes = head.subarray(0, got);
  const mbr = parseMbr(bytes.subarray(0, MBR_BYTES));
  if (!mbr) return null;
  const sector0 = Buffer.from(bytes.subarray(0, MBR_BYTES));
  if (!isProtective(mbr)) {
    // An MBR counts in the drive's logical sectors; an image's are 512 bytes.
    const sectorSize = device.kind === 'block' ? device.logicalBlockSize : 512;
    const end = mbrPartitionsEnd(mbr, sectorSize);
    return {
      kind: 'mbr',
      sectorSize,
      sector0,
      mbr,
      gpt: null,
      partitionsEnd: end,
      fitSize: end,
      head: { offset: 0, length: MBR_BYTES },
      backup: null,
    };
  }
  for (const sectorSize of SECTOR_SIZES) {
    const header = parseGptHeader(bytes.subarray(sectorSize, 2 * sectorSize));
    if (!header) continue;
    const at = header.entriesLba * sectorSize;
    const entriesEnd = at + entrySectors(header, sectorSize) * sectorSize;
    let entries = bytes.subarray(at, entriesEnd);
    // An entry array placed past the head (rare) is read where the header says; not from a stream.
    if (entriesEnd > got && !isStream(device))
      entries = await readBytes(device, at, entriesEnd - at);
    const gpt = { header, entries: Buffer.from(entries) };
    if (entries.length < entriesLength(header) || !entriesCrcOk(gpt)) {
      return { kind: 'damaged', reason: 'its GPT entries fail their CRC check' };
    }
    const end = gptPartitionsEnd(gpt, sectorSize);
    const backupBytes = (entrySectors(header, sectorSize) + 1) * sectorSize;
    const backupEnd = (header.alternateLba + 1) * sectorSize;
    return {
      kind: 'gpt',
      sectorSize,
      sector0,
      mbr,
      gpt,
      partitionsEnd: end,
      fitSize: end + backupBytes,
      head: { offset: 0, length: Math.max(entriesEnd, 2 * sectorSize) },
      backup: { offset: backupEnd - backupBytes, length: backupBytes },
    };
  }
  return {
    kind: 'damaged',
    reason: 'its protective MBR announces a GPT whose header fails its checks',
  };
}

/** `length` bytes at `offset`, read in whole blocks into an aligned buffer (O_DIRECT drives). */
export async function readBytes(device: Device, offset: number, length: number): Promise<Buffer> {
  if (offset + length > device.size) return Buffer.alloc(0);
  const block = device.logicalBlockSize;
  const from = Math.floor(offset / block) * block;
  const buffer = alignedBuffer(Math.ceil((offset + length - from) / block) * block);
  await device.read(buffer, from);
  return buffer.subarray(offset - from, offset - from + length);
}
