// FAT12, FAT16 and FAT32: which bytes the file allocation table says are in use.
//
// Layout: the boot sector (BPB) and the rest of the reserved sectors (FSInfo, the
// backup boot sector on FAT32), then the FAT copies, then (FAT12/16) the fixed root
// directory, then the data clusters numbered from 2. A cluster is free when its FAT
// entry (12, 16 or 28 bits) is 0. Clean state: FAT[1]'s top bit (Windows: clean
// shutdown) and the one below it (no hard error) on FAT16/32, and bit 0 of the boot
// sector's state byte (Linux: dirty) — 0x25 on FAT12/16, 0x41 on FAT32.

import type { Device } from '../io/device';
import {
  FilesystemRefused,
  RangeList,
  READ_CHUNK,
  mustFit,
  readBytes,
  type UsedSpace,
} from './common';

type FatFs = 'fat12' | 'fat16' | 'fat32';

const BOOT_STATE_DIRTY = 0x01;

/** Per kind: the bits of an entry, the first end-of-chain value, FAT[1]'s clean and no-error bits. */
const KINDS: Record<FatFs, { bits: number; end: number; clean: number; noError: number }> = {
  fat12: { bits: 12, end: 0xff8, clean: 0, noError: 0 },
  fat16: { bits: 16, end: 0xfff8, clean: 0x8000, noError: 0x4000 },
  fat32: { bits: 32, end: 0x0ffffff8, clean: 0x08000000, noError: 0x04000000 },
};

export interface FatBootSector {
  fs: FatFs;
  bytesPerSector: number;
  clusterSize: number;
  reservedSectors: number;
  fatCount: number;
  fatSectors: number;
  totalSectors: number;
  /** FAT32: the root directory's first cluster; 0 on FAT12/16 (a fixed root directory). */
  rootCluster: number;
  /** Index of the FAT in use (FAT32 with mirroring off), else 0. */
  activeFat: number;
  /** Linux's dirty flag in the boot sector. */
  bootDirty: boolean;
  /** Byte offset of cluster 2. */
  dataStart: number;
  clusterCount: number;
}

/**
 * The kind of FAT a boot sector describes, or null when it is no FAT boot sector.
 * FAT32 as Linux decides it: a BPB with no 16-bit FAT size and no fixed root directory;
 * FAT12 or FAT16 by the count of clusters.
 */
export function fatKind(boot: Buffer): FatFs | null {
  if (boot.length < 512 || boot.readUInt16LE(510) !== 0xaa55) return null;
  if (!(boot[0] === 0xeb || boot[0] === 0xe9)) return null;
  const bps = boot.readUInt16LE(11);
  const spc = boot[13];
  const powerOf2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
  if (!powerOf2(bps) || bps < 512 || bps > 4096 || !powerOf2(spc)) return null;
  if (boot.readUInt16LE(14) === 0 || boot[16] === 0) return null;
  const fat16Size = boot.readUInt16LE(22);
  const rootEntries = boot.readUInt16LE(17);
  if (fat16Size === 0 && rootEntries === 0 && boot.readUInt32LE(36) !== 0) return 'fat32';
  if (fat16Size === 0) return null;
  const total = boot.readUInt16LE(19) || boot.readUInt32LE(32);
  const rootSectors = Math.ceil((rootEntries * 32) / bps);
  const clusters = Math.floor(
    (total - boot.readUInt16LE(14) - boot[16] * fat16Size - rootSectors) / spc,
  );
  return clusters < 4085 ? 'fat12' : 'fat16';
}

/** Parses a FAT boot sector; null when it is not one. Throws on one whose numbers don't add up. */
export function parseFatBootSector(boot: Buffer): FatBootSector | null {
  const fs = fatKind(boot);
  if (!fs) return null;
  const corrupt = (why: string): never => {
    throw new FilesystemRefused(fs, 'corrupt', why);
  };
  const fat32 = fs === 'fat32';
  const bytesPerSector = boot.readUInt16LE(11);
  const clusterSize = bytesPerSector * boot[13];
  const reservedSectors = boot.readUInt16LE(14);
  const fatCount = boot[16];
  const fatSectors = fat32 ? boot.readUInt32LE(36) : boot.readUInt16LE(22);
  const totalSectors = boot.readUInt16LE(19) || boot.readUInt32LE(32);
  const rootSectors = fat32 ? 0 : Math.ceil((boot.readUInt16LE(17) * 32) / bytesPerSector);
  const dataSector = reservedSectors + fatCount * fatSectors + rootSectors;
  if (totalSectors <= dataSector) corrupt(`${totalSectors} sectors leave no room for data`);
  if (clusterSize > 256 * 1024) corrupt(`cluster size ${clusterSize}`);
  const clusterCount = Math.floor((totalSectors - dataSector) / (clusterSize / bytesPerSector));
  // The highest cluster number (count + 1) must stay below the bad-cluster mark (end − 1).
  if (clusterCount < 1 || clusterCount + 1 >= KINDS[fs].end - 1)
    corrupt(`${clusterCount} clusters`);
  if (Math.floor((fatSectors * bytesPerSector * 8) / KINDS[fs].bits) < clusterCount + 2)
    corrupt(`a FAT of ${fatSectors} sectors can't map ${clusterCount} clusters`);
  const extFlags = fat32 ? boot.readUInt16LE(40) : 0;
  const activeFat = extFlags & 0x80 ? extFlags & 0x0f : 0;
  if (activeFat >= fatCount) corrupt(`active FAT ${activeFat} of ${fatCount}`);
  const rootCluster = fat32 ? boot.readUInt32LE(44) : 0;
  if (fat32 && (rootCluster < 2 || rootCluster > clusterCount + 1))
    corrupt(`root directory cluster ${rootCluster} is out of range`);
  return {
    fs,
    bytesPerSector,
    clusterSize,
    reservedSectors,
    fatCount,
    fatSectors,
    totalSectors,
    rootCluster,
    activeFat,
    bootDirty: (boot[fat32 ? 0x41 : 0x25] & BOOT_STATE_DIRTY) !== 0,
    dataStart: dataSector * bytesPerSector,
    clusterCount,
  };
}

/** Why the volume is not cleanly unmounted, or null when it is. */
export function fatUncleanReason(bs: FatBootSector, fat1: number): string | null {
  const { clean, noError } = KINDS[bs.fs];
  if (bs.bootDirty || (fat1 & clean) !== clean)
    return 'the dirty bit is set: the volume was not cleanly unmounted, or is mounted (run fsck.vfat)';
  if ((fat1 & noError) !== noError) return 'the volume recorded a disk I/O error (run fsck.vfat)';
  return null;
}

/** Reads FAT entries in 4 MiB chunks (a FAT12's whole table at once), keeping the last chunk. */
class FatReader {
  private chunkIndex = -1;
  private chunk: Buffer | null = null;
  /** Entries per chunk: a FAT12 entry may straddle bytes, so its (small) table is one chunk. */
  readonly perChunk: number;

  constructor(
    private readonly source: Device,
    private readonly bs: FatBootSector,
  ) {
    const bits = KINDS[bs.fs].bits;
    this.perChunk = bits === 12 ? bs.clusterCount + 2 : (READ_CHUNK * 8) / bits;
  }

  private get offset(): number {
    const bs = this.bs;
    return (bs.reservedSectors + bs.activeFat * bs.fatSectors) * bs.bytesPerSector;
  }

  async chunkOf(n: number): Promise<{ data: Buffer; first: number; count: number }> {
    const index = Math.floor(n / this.perChunk);
    const first = index * this.perChunk;
    const count = Math.min(this.perChunk, this.bs.clusterCount + 2 - first);
    if (index !== this.chunkIndex || !this.chunk) {
      const bits = KINDS[this.bs.fs].bits;
      const start = (first * bits) / 8;
      const data = await readBytes(this.source, this.offset + start, Math.ceil((count * bits) / 8));
      if (!data) throw new FilesystemRefused(this.bs.fs, 'corrupt', 'the FAT lies past the volume');
      this.chunk = data;
      this.chunkIndex = index;
    }
    return { data: this.chunk, first, count };
  }

  /** Entry `i` of a chunk (its index within the chunk). */
  decode(data: Buffer, i: number): number {
    switch (this.bs.fs) {
      case 'fat32':
        return data.readUInt32LE(i * 4) & 0x0fffffff;
      case 'fat16':
        return data.readUInt16LE(i * 2);
      case 'fat12': {
        const at = (i * 3) >> 1;
        const pair = data[at] | (data[at + 1] << 8);
        return i & 1 ? pair >> 4 : pair & 0xfff;
      }
    }
  }

  async entry(n: number): Promise<number> {
    const { data, first } = await this.chunkOf(n);
    return this.decode(data, n - first);
  }
}

async function readBoot(source: Device): Promise<FatBootSector | null> {
  if (source.size < 4096) return null;
  const boot = await readBytes(source, 0, 512);
  return boot && parseFatBootSector(boot);
}

/** What the FAT of a FAT12/16/32 volume says is used; null when the source holds none. */
export async function fatUsedSpace(source: Device): Promise<UsedSpace | null> {
  const bs = await readBoot(source);
  if (!bs) return null;
  const refuse = (kind: 'unclean' | 'corrupt', why: string): never => {
    throw new FilesystemRefused(bs.fs, kind, why);
  };
  const fsSize = bs.totalSectors * bs.bytesPerSector;
  mustFit(bs.fs, fsSize, source.size);
  const fat = new FatReader(source, bs);
  const unclean = fatUncleanReason(bs, await fat.entry(1));
  if (unclean) refuse('unclean', unclean);

  const used = new RangeList();
  // Boot sector, FSInfo, backup boot sector, every FAT copy, a FAT12/16 root directory.
  used.add(0, bs.dataStart);
  const cluster = (c: number, n: number): void =>
    used.add(bs.dataStart + (c - 2) * bs.clusterSize, n * bs.clusterSize);

  // A FAT32 root directory must be a chain of allocated clusters ending in end-of-chain.
  const end = KINDS[bs.fs].end;
  for (let c = bs.rootCluster, steps = 0; c !== 0; steps++) {
    if (steps > bs.clusterCount) refuse('corrupt', 'the root directory chain loops');
    const next = await fat.entry(c);
    if (next === 0) refuse('corrupt', `root directory cluster ${c} is marked free`);
    if (next >= end) break;
    if (next < 2 || next > bs.clusterCount + 1)
      refuse('corrupt', `the root directory chain leads to cluster ${next}`);
    c = next;
  }

  // Every cluster whose entry is not 0 (allocated, end of chain, bad, reserved).
  const last = bs.clusterCount + 1;
  for (let n = 2; n <= last;) {
    const { data, first, count } = await fat.chunkOf(n);
    const stop = Math.min(last + 1, first + count);
    let runStart = -1;
    for (; n < stop; n++) {
      const allocated = fat.decode(data, n - first) !== 0;
      if (allocated && runStart < 0) runStart = n;
      else if (!allocated && runStart >= 0) {
        cluster(runStart, n - runStart);
        runStart = -1;
      }
    }
    if (runStart >= 0) cluster(runStart, n - runStart);
  }

  // Past the volume's end: not ours to judge, so copied.
  used.add(fsSize, source.size - fsSize);
  return {
    fs: bs.fs,
    blockSize: bs.clusterSize,
    size: source.size,
    fsSize,
    used: used.result(source.size),
  };
}

/** The volume's verdict on cleanliness; null when the source holds no FAT. */
export async function fatState(
  source: Device,
): Promise<{ fs: FatFs; clean: boolean; reason?: string } | null> {
  const bs = await readBoot(source);
  if (!bs) return null;
  const reason = fatUncleanReason(bs, await new FatReader(source, bs).entry(1));
  return reason ? { fs: bs.fs, clean: false, reason } : { fs: bs.fs, clean: true };
}
