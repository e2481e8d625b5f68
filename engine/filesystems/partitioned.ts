// The used space of a whole source, partition by partition, as partclone and
// Clonezilla copy a disk: each partition's file system read through its own allocation
// map (ext2/3/4, FAT12/16/32, NTFS, exFAT); a partition of a kind not read here copied
// whole; swap reduced to its header page (mkswap's UUID and label survive, its
// contents mean nothing after a reboot); a partition holding no data at all (a hole in
// a sparse image) skipped. What lies outside the partitions up to the last one's end
// — the MBR or GPT, boot code, the extended partition's tables, the gaps — is copied
// as it is, and so is a GPT's backup; the rest after the last partition belongs to
// none and is left out, as partclone-based tools do. A source with no partition table
// is read as one file system.

import type { Range, UsedArea } from '../events';
import { mergeRanges } from '../geometry';
import type { Device } from '../io/device';
import { type PartitionTable, readPartitionTable } from '../partitions/table';
import { usedEntries } from '../partitions/gpt';
import {
  FilesystemRefused,
  RangeList,
  readBytes,
  UsedSpaceRefused,
  type UsedSpace,
} from './common';
import { exfatUsedSpace } from './exfat';
import { extUsedSpace } from './ext';
import { fatUsedSpace } from './fat';
import { identifySource, swapHeader } from './identify';
import { ntfsUsedSpace } from './ntfs';
import { Slice } from './slice';

/** MBR types of an extended partition: a chain of tables, one per logical partition. */
const EXTENDED = new Set([0x05, 0x0f, 0x85]);
const MAX_LOGICAL = 128;

export interface SourceUsedSpace {
  table: 'gpt' | 'mbr' | 'none';
  /** Per partition (or the one file system), what is copied of it. */
  areas: UsedArea[];
  /** Byte ranges of the source to copy: sorted, merged, within its size. */
  used: Range[];
  /** Bytes outside every partition that are copied: the tables, boot code, gaps between partitions. */
  outsideBytes: number;
  /** Bytes after the last partition that belong to none (a GPT's backup aside): not copied. */
  afterLastBytes: number;
}

interface Part {
  number: number;
  offset: number;
  length: number;
}

/**
 * The file system on `device` read through its allocation map; null when it holds none
 * of ext2/3/4, NTFS, exFAT or FAT. Throws FilesystemRefused when it can't be trusted.
 */
export async function fileSystemUsedSpace(device: Device): Promise<UsedSpace | null> {
  if (device.size < 8192) return null;
  return (
    (await extUsedSpace(device)) ??
    (await ntfsUsedSpace(device)) ??
    (await exfatUsedSpace(device)) ??
    (await fatUsedSpace(device))
  );
}

/**
 * What a used-only copy of `source` reads; null when it holds neither a partition table
 * nor a file system read here. Throws UsedSpaceRefused (FilesystemRefused for a file
 * system, naming its partition) rather than guess.
 */
export async function sourceUsedSpace(source: Device): Promise<SourceUsedSpace | null> {
  const found = await readPartitionTable(source);
  if (found?.kind === 'damaged')
    throw new UsedSpaceRefused(
      `the partition table of ${source.path} can't be used: ${found.reason}`,
    );
  if (!found) {
    const u = await fileSystemUsedSpace(source);
    if (!u) return null;
    const area = { partition: 0, offset: 0, size: source.size, fs: u.fs, copy: 'used' as const };
    const areas = [{ ...area, bytes: total(u.used), note: null }];
    return { table: 'none', areas, used: u.used, outsideBytes: 0, afterLastBytes: 0 };
  }
  const parts = await partitionsOf(source, found);
  const used = new RangeList();
  const areas: UsedArea[] = [];
  for (const p of parts) {
    const where = `partition ${p.number} of ${source.path}`;
    if (p.offset + p.length > source.size)
      throw new UsedSpaceRefused(
        `${where} ends at byte ${p.offset + p.length}, past the end of the source (${source.size})`,
      );
    areas.push(await areaOf(source, p, where, used));
  }
  // The tables and the gaps between partitions: as they are.
  const outside = new RangeList();
  let at = 0;
  for (const r of mergeRanges(parts.map((p) => ({ offset: p.offset, length: p.length })))) {
    outside.add(at, r.offset - at);
    at = Math.max(at, r.offset + r.length);
  }
  const backup = found.backup && found.backup.offset >= at ? found.backup : null;
  if (backup) outside.add(backup.offset, backup.length);
  const copied = outside.result(source.size);
  for (const r of copied) used.add(r.offset, r.length);
  return {
    table: found.kind,
    areas,
    used: used.result(source.size),
    outsideBytes: total(copied),
    afterLastBytes: Math.max(0, source.size - at - (backup?.length ?? 0)),
  };
}

/** One partition: read, copied whole or skipped; what it uses is added to `used`. */
async function areaOf(source: Device, p: Part, where: string, used: RangeList): Promise<UsedArea> {
  const slice = new Slice(source, p.offset, p.length);
  const base = { partition: p.number, offset: p.offset, size: p.length };
  let u: UsedSpace | null;
  try {
    u = await fileSystemUsedSpace(slice);
  } catch (e) {
    throw e instanceof FilesystemRefused ? e.in(where) : e;
  }
  if (u) {
    for (const r of u.used) used.add(p.offset + r.offset, r.length);
    return { ...base, fs: u.fs, copy: 'used', bytes: total(u.used), note: null };
  }
  const swap = await swapHeader(slice);
  if (typeof swap === 'number') {
    used.add(p.offset, swap);
    const note = 'only its header is copied (what it holds means nothing after a restart)';
    return { ...base, fs: 'swap', copy: 'skipped', bytes: swap, note };
  }
  const data = slice.dataIn(0, p.length);
  if (data && data.length === 0) {
    return {
      ...base,
      fs: null,
      copy: 'skipped',
      bytes: 0,
      note: 'it holds no data (never written)',
    };
  }
  used.add(p.offset, p.length);
  const fs = swap === 'hibernation' ? 'swap' : await identifySource(slice);
  const note =
    swap === 'hibernation'
      ? 'it holds a hibernation image: copied whole'
      : fs
        ? `${fs} is not read here: copied whole`
        : 'no file system recognised: copied whole';
  return { ...base, fs, copy: 'whole', bytes: p.length, note };
}

/** The partitions the table lists: GPT entries, or MBR primaries and the logical ones. */
async function partitionsOf(source: Device, t: PartitionTable): Promise<Part[]> {
  const ss = t.sectorSize;
  if (t.kind === 'gpt') {
    return usedEntries(t.gpt!).map(({ slot, bytes }) => {
      const first = Number(bytes.readBigUInt64LE(32));
      const last = Number(bytes.readBigUInt64LE(40));
      if (last < first)
        throw new UsedSpaceRefused(`GPT entry ${slot + 1} of ${source.path} ends before it starts`);
      return { number: slot + 1, offset: first * ss, length: (last - first + 1) * ss };
    });
  }
  const out: Part[] = [];
  for (const e of t.mbr.entries) {
    if (!EXTENDED.has(e.type)) {
      out.push({ number: e.slot + 1, offset: e.firstLba * ss, length: e.sectors * ss });
      continue;
    }
    out.push(...(await logicalPartitions(source, e.firstLba, e.sectors, ss)));
  }
  return out;
}

/**
 * An extended partition's logical partitions, numbered from 5 as Linux does: each
 * table (EBR) names one, relative to itself, and the next table, relative to the
 * extended partition's start.
 */
async function logicalPartitions(
  source: Device,
  start: number,
  sectors: number,
  ss: number,
): Promise<Part[]> {
  const out: Part[] = [];
  const refuse = (why: string): never => {
    throw new UsedSpaceRefused(`the extended partition of ${source.path}: ${why}`);
  };
  for (let ebr = start, seen = 0; ; seen++) {
    if (seen > MAX_LOGICAL) refuse('its chain of logical partitions loops');
    const sector = await readBytes(source, ebr * ss, 512);
    if (!sector || sector.readUInt16LE(510) !== 0xaa55) refuse(`no table at sector ${ebr}`);
    const entry = (i: number): { type: number; first: number; count: number } => {
      const e = sector!.subarray(446 + 16 * i, 462 + 16 * i);
      return { type: e[4], first: e.readUInt32LE(8), count: e.readUInt32LE(12) };
    };
    const logical = entry(0);
    if (logical.type !== 0 && logical.count > 0) {
      const first = ebr + logical.first;
      if (first + logical.count > start + sectors)
        refuse(`logical partition ${5 + out.length} reaches past it`);
      out.push({ number: 5 + out.length, offset: first * ss, length: logical.count * ss });
    }
    const next = entry(1);
    if (next.type === 0 || next.count === 0) return out;
    ebr = start + next.first;
    if (next.first === 0 || ebr >= start + sectors) refuse(`a table points at sector ${ebr}`);
  }
}

const total = (ranges: Range[]): number => ranges.reduce((n, r) => n + r.length, 0);
