// FAT32: which bytes the file allocation table says are in use.
//
// Layout: the boot sector (BPB) and the rest of the reserved sectors (FSInfo, the
// backup boot sector), then the FAT copies, then the data clusters numbered from 2.
// A cluster is free when its FAT entry (28 bits) is 0. Clean state: FAT[1] bit 27
// (Windows: clean shutdown) and bit 26 (no hard error), and bit 0 of the boot
// sector's byte 0x41 (Linux: dirty).

import type { Device } from '../io/device';
import { FilesystemRefused, RangeList, readBytes, type FsKind, type UsedSpace } from './common';

const ENTRY_MASK = 0x0fffffff;
const FAT1_CLEAN = 0x08000000;
const FAT1_NO_HARD_ERROR = 0x04000000;
const BOOT_STATE_DIRTY = 0x01;

export interface FatBootSector {
  fs: 'fat32';
  bytesPerSector: number;
  clusterSize: number;
  reservedSectors: number;
  fatCount: number;
  fatSectors: number;
  totalSectors: number;
  rootCluster: number;
  /** Index of the FAT in use (mirroring off), else 0. */
  activeFat: number;
  /** Linux's dirty flag in the boot sector. */
  bootDirty: boolean;
  /** Byte offset of cluster 2. */
  dataStart: number;
  clusterCount: number;
}

/**
 * The kind of FAT a boot sector describes, or null when it is no FAT boot sector.
 * FAT32 as Linux decides it: a BPB with no 16-bit FAT size and no fixed root directory.
 */
export function fatKind(boot: Buffer): 'fat12' | 'fat16' | 'fat32' | null {
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

/** Parses a FAT32 boot sector; null when it is not one. */
export function parseFatBootSector(boot: Buffer): FatBootSector | null {
  if (fatKind(boot) !== 'fat32') return null;
  const corrupt = (why: string): never => {
    throw new FilesystemRefused('fat32', 'corrupt', why);
  };
  const bytesPerSector = boot.readUInt16LE(11);
  const clusterSize = bytesPerSector * boot[13];
  const reservedSectors = boot.readUInt16LE(14);
  const fatCount = boot[16];
  const fatSectors = boot.readUInt32LE(36);
  const totalSectors = boot.readUInt16LE(19) || boot.readUInt32LE(32);
  const extFlags = boot.readUInt16LE(40);
  const rootCluster = boot.readUInt32LE(44);
  const dataSector = reservedSectors + fatCount * fatSectors;
  if (totalSectors <= dataSector) corrupt(`${totalSectors} sectors leave no room for data`);
  if (clusterSize > 256 * 1024) corrupt(`cluster size ${clusterSize}`);
  const clusterCount = Math.floor((totalSectors - dataSector) / (clusterSize / bytesPerSector));
  if (clusterCount < 1 || clusterCount > ENTRY_MASK - 10) corrupt(`${clusterCount} clusters`);
  if ((fatSectors * bytesPerSector) / 4 < clusterCount + 2)
    corrupt(`a FAT of ${fatSectors} sectors can't map ${clusterCount} clusters`);
  const activeFat = extFlags & 0x80 ? extFlags & 0x0f : 0;
  if (activeFat >= fatCount) corrupt(`active FAT ${activeFat} of ${fatCount}`);
  if (rootCluster < 2 || rootCluster > clusterCount + 1)
    corrupt(`root directory cluster ${rootCluster} is out of range`);
  return {
    fs: 'fat32',
    bytesPerSector,
    clusterSize,
    reservedSectors,
    fatCount,
    fatSectors,
    totalSectors,
    rootCluster,
    activeFat,
    bootDirty: boot[0x41] !== undefined && (boot[0x41] & BOOT_STATE_DIRTY) !== 0,
    dataStart: dataSector * bytesPerSector,
    clusterCount,
  };
}

/** Why the volume is not cleanly unmounted, or null when it is. */
export function fatUncleanReason(bs: FatBootSector, fat1: number): string | null {
  if (bs.bootDirty || (fat1 & FAT1_CLEAN) === 0)
    return 'the dirty bit is set: the volume was not cleanly unmounted, or is mounted (run fsck.vfat)';
  if ((fat1 & FAT1_NO_HARD_ERROR) === 0)
    return 'the volume recorded a disk I/O error (run fsck.vfat)';
  return null;
}

const FAT_CHUNK = 4 << 20;

/** Reads FAT entries in 4 MiB chunks, keeping the last chunk. */
class FatReader {
  private chunkIndex = -1;
  private chunk: Buffer | null = null;

  constructor(
    private readonly source: Device,
    private readonly offset: number,
    private readonly entries: number,
  ) {}

  async chunkOf(n: number): Promise<{ data: Buffer; first: number }> {
    const index = Math.floor((n * 4) / FAT_CHUNK);
    if (index !== this.chunkIndex || !this.chunk) {
      const start = index * FAT_CHUNK;
      const length = Math.min(FAT_CHUNK, this.entries * 4 - start);
      const data = await readBytes(this.source, this.offset + start, length);
      if (!data) throw new FilesystemRefused('fat32', 'corrupt', 'the FAT lies past the source');
      this.chunk = data;
      this.chunkIndex = index;
    }
    return { data: this.chunk, first: index * (FAT_CHUNK / 4) };
  }

  async entry(n: number): Promise<number> {
    const { data, first } = await this.chunkOf(n);
    return data.readUInt32LE((n - first) * 4) & ENTRY_MASK;
  }
}

async function readBoot(source: Device): Promise<FatBootSector | null> {
  if (source.size < 4096) return null;
  const boot = await readBytes(source, 0, 512);
  return boot && parseFatBootSector(boot);
}

function fatReader(source: Device, bs: FatBootSector): FatReader {
  const fatOffset = (bs.reservedSectors + bs.activeFat * bs.fatSectors) * bs.bytesPerSector;
  return new FatReader(source, fatOffset, bs.clusterCount + 2);
}

/** What the FAT of a FAT32 volume says is used; null when the source holds no FAT32. */
export async function fatUsedSpace(source: Device): Promise<UsedSpace | null> {
  const bs = await readBoot(source);
  if (!bs) return null;
  const refuse = (kind: 'unclean' | 'corrupt', why: string): never => {
    throw new FilesystemRefused('fat32', kind, why);
  };
  const fsSize = bs.totalSectors * bs.bytesPerSector;
  if (fsSize > source.size)
    refuse(
      'corrupt',
      `the volume says it is ${fsSize} bytes but the source holds only ${source.size}`,
    );
  const fat = fatReader(source, bs);
  const unclean = fatUncleanReason(bs, await fat.entry(1));
  if (unclean) refuse('unclean', unclean);

  const used = new RangeList();
  // Boot sector, FSInfo, backup boot sector, every FAT copy.
  used.add(0, bs.dataStart);
  const cluster = (c: number, n: number): void =>
    used.add(bs.dataStart + (c - 2) * bs.clusterSize, n * bs.clusterSize);

  // The root directory must be a chain of allocated clusters ending in end-of-chain.
  let c = bs.rootCluster;
  for (let steps = 0; ; steps++) {
    if (steps > bs.clusterCount) refuse('corrupt', 'the root directory chain loops');
    const next = await fat.entry(c);
    if (next === 0) refuse('corrupt', `root directory cluster ${c} is marked free`);
    if (next >= 0x0ffffff8) break;
    if (next < 2 || next > bs.clusterCount + 1)
      refuse('corrupt', `the root directory chain leads to cluster ${next}`);
    c = next;
  }

  // Every cluster whose entry is not 0 (allocated, end of chain, bad, reserved).
  const last = bs.clusterCount + 1;
  for (let n = 2; n <= last;) {
    const { data, first } = await fat.chunkOf(n);
    const end = Math.min(last + 1, first + data.length / 4);
    let runStart = -1;
    for (; n < end; n++) {
      const allocated = (data.readUInt32LE((n - first) * 4) & ENTRY_MASK) !== 0;
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
    fs: 'fat32',
    blockSize: bs.clusterSize,
    size: source.size,
    fsSize,
    used: used.result(source.size),
  };
}

/** The volume's verdict on cleanliness; null when the source holds no FAT32. */
export async function fatState(
  source: Device,
): Promise<{ fs: FsKind; clean: boolean; reason?: string } | null> {
  const bs = await readBoot(source);
  if (!bs) return null;
  const reason = fatUncleanReason(bs, await fatReader(source, bs).entry(1));
  return reason ? { fs: 'fat32', clean: false, reason } : { fs: 'fat32', clean: true };
}
