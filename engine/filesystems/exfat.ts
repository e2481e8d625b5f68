// exFAT: which clusters the allocation bitmap says are in use.
//
// Layout (Microsoft's exFAT specification): the main boot region (12 sectors: the boot
// sector, 8 extended boot sectors, OEM parameters, a reserved sector and a checksum
// sector), the backup boot region (12 more), the FAT(s) at FatOffset, and the cluster
// heap at ClusterHeapOffset, clusters numbered from 2. The root directory (a FAT
// chain from FirstClusterOfRootDirectory) holds an Allocation Bitmap entry (type 0x81):
// its first cluster and length; bit n of the bitmap is cluster n + 2. VolumeFlags bit
// 1 (VolumeDirty) is set while the volume is mounted for writing and cleared at a
// clean unmount; bit 2 (MediaFailure) says the medium reported errors.

import type { Device } from '../io/device';
import {
  FilesystemRefused,
  RangeList,
  READ_CHUNK,
  covers,
  mustFit,
  readBytes,
  setBitRuns,
  type RefusalKind,
  type UsedSpace,
} from './common';

const BOOT_REGION_SECTORS = 12;
const VOLUME_DIRTY = 0x0002;
const MEDIA_FAILURE = 0x0004;
const ENTRY = 32;
const BITMAP_ENTRY = 0x81;
const END_OF_DIRECTORY = 0x00;
const LAST_CLUSTER = 0xfffffff6;
const FAT_BLOCK = 64 * 1024;

export interface ExfatBoot {
  sectorSize: number;
  clusterSize: number;
  volumeSectors: number;
  fatOffset: number;
  fatLength: number;
  heapOffset: number;
  clusterCount: number;
  rootCluster: number;
  flags: number;
  fatCount: number;
}

const refuse = (kind: RefusalKind, why: string): never => {
  throw new FilesystemRefused('exfat', kind, why);
};

/** Parses the main boot sector; null without exFAT's signature. Throws on numbers that don't add up. */
export function parseExfatBoot(boot: Buffer): ExfatBoot | null {
  if (boot.length < 512 || boot.toString('latin1', 3, 11) !== 'EXFAT   ') return null;
  if (boot.readUInt16LE(510) !== 0xaa55) refuse('corrupt', 'its boot sector has no signature');
  if (boot.subarray(11, 64).some((b) => b !== 0))
    refuse('corrupt', 'its boot sector has FAT fields set');
  const sectorShift = boot[108];
  const clusterShift = boot[109];
  if (sectorShift < 9 || sectorShift > 12 || clusterShift > 25 - sectorShift)
    refuse('corrupt', `sectors of 2^${sectorShift} bytes, clusters of 2^${clusterShift} sectors`);
  const b: ExfatBoot = {
    sectorSize: 2 ** sectorShift,
    clusterSize: 2 ** (sectorShift + clusterShift),
    volumeSectors: Number(boot.readBigUInt64LE(72)),
    fatOffset: boot.readUInt32LE(80),
    fatLength: boot.readUInt32LE(84),
    heapOffset: boot.readUInt32LE(88),
    clusterCount: boot.readUInt32LE(92),
    rootCluster: boot.readUInt32LE(96),
    flags: boot.readUInt16LE(106),
    fatCount: boot[110],
  };
  if (b.fatCount !== 1 && b.fatCount !== 2) refuse('corrupt', `${b.fatCount} FATs`);
  if (
    b.fatOffset < 2 * BOOT_REGION_SECTORS ||
    b.heapOffset < b.fatOffset + b.fatCount * b.fatLength
  )
    refuse(
      'corrupt',
      `the FAT (sector ${b.fatOffset}) and the cluster heap (sector ${b.heapOffset}) overlap`,
    );
  const heapSectors = b.clusterCount * (b.clusterSize / b.sectorSize);
  if (
    b.clusterCount < 1 ||
    b.clusterCount > LAST_CLUSTER - 1 ||
    b.heapOffset + heapSectors > b.volumeSectors
  )
    refuse('corrupt', `${b.clusterCount} clusters don't fit its ${b.volumeSectors} sectors`);
  if (b.fatLength * b.sectorSize < (b.clusterCount + 2) * 4)
    refuse('corrupt', `a FAT of ${b.fatLength} sectors can't map ${b.clusterCount} clusters`);
  if (b.rootCluster < 2 || b.rootCluster > b.clusterCount + 1)
    refuse('corrupt', `the root directory at cluster ${b.rootCluster} lies outside the volume`);
  return b;
}

/** The boot checksum sector (11) must repeat the checksum of sectors 0–10, flags and use left out. */
function checksumOk(region: Buffer, sectorSize: number): boolean {
  let sum = 0;
  for (let i = 0; i < 11 * sectorSize; i++) {
    if (i === 106 || i === 107 || i === 112) continue;
    sum = (((sum & 1) << 31) | (sum >>> 1)) + region[i];
    sum >>>= 0;
  }
  const sector = region.subarray(11 * sectorSize, 12 * sectorSize);
  for (let at = 0; at < sectorSize; at += 4) if (sector.readUInt32LE(at) !== sum) return false;
  return true;
}

/** Reads FAT entries, 64 KiB of the active FAT at a time. */
class Fat {
  private block = -1;
  private data: Buffer | null = null;

  constructor(
    private readonly source: Device,
    private readonly b: ExfatBoot,
  ) {}

  async entry(c: number): Promise<number> {
    const b = this.b;
    const second = b.flags & 1 && b.fatCount === 2 ? b.fatLength : 0;
    const at = (b.fatOffset + second) * b.sectorSize + c * 4;
    const block = Math.floor(at / FAT_BLOCK);
    if (block !== this.block || !this.data) {
      const end = Math.min((block + 1) * FAT_BLOCK, this.source.size);
      this.data = await readBytes(this.source, block * FAT_BLOCK, end - block * FAT_BLOCK);
      if (!this.data || at + 4 > end)
        return refuse('corrupt', 'the FAT lies past the end of its space');
      this.block = block;
    }
    return this.data.readUInt32LE(at - block * FAT_BLOCK);
  }

  /**
   * The clusters of a chain from `first`, checked: inside the volume, no loop. With
   * `contiguous` clusters expected, a chain the FAT doesn't record (its first entry 0,
   * as Linux's exfat assumes for the bitmap) is those clusters in a row.
   */
  async chain(first: number, what: string, contiguous = 0): Promise<number[]> {
    const b = this.b;
    const inside = (c: number): void => {
      if (c < 2 || c > b.clusterCount + 1)
        refuse(
          'corrupt',
          `${what} at cluster ${c} lies outside the volume's ${b.clusterCount} clusters`,
        );
    };
    inside(first);
    if (contiguous > 0 && (await this.entry(first)) === 0) {
      inside(first + contiguous - 1);
      return Array.from({ length: contiguous }, (_, i) => first + i);
    }
    const out: number[] = [];
    for (let c = first; ;) {
      inside(c);
      if (out.length > b.clusterCount) refuse('corrupt', `${what}'s cluster chain loops`);
      out.push(c);
      const next = await this.entry(c);
      if (next === 0xffffffff) return out;
      c = next;
    }
  }
}

/** The Allocation Bitmap entry of the root directory (the active one, with two FATs). */
async function bitmapEntry(
  source: Device,
  b: ExfatBoot,
  fat: Fat,
): Promise<{ first: number; length: number }> {
  const clusters = await fat.chain(b.rootCluster, 'the root directory');
  const offsetOf = (c: number): number => b.heapOffset * b.sectorSize + (c - 2) * b.clusterSize;
  for (const c of clusters) {
    const dir = await readBytes(source, offsetOf(c), b.clusterSize);
    if (!dir) return refuse('corrupt', 'the root directory lies past the end of its space');
    for (let at = 0; at < dir.length; at += ENTRY) {
      const type = dir[at];
      if (type === END_OF_DIRECTORY) break;
      if (type === BITMAP_ENTRY && (dir[at + 1] & 1) === (b.fatCount === 2 ? b.flags & 1 : 0))
        return { first: dir.readUInt32LE(at + 20), length: Number(dir.readBigUInt64LE(at + 24)) };
    }
  }
  return refuse('corrupt', 'the root directory has no allocation bitmap');
}

/** What the allocation bitmap of an exFAT volume says is used; null when the source holds none. */
export async function exfatUsedSpace(source: Device): Promise<UsedSpace | null> {
  if (source.size < 8192) return null;
  const head = await readBytes(source, 0, 512);
  const b = head && parseExfatBoot(head);
  if (!b) return null;
  const fsSize = b.volumeSectors * b.sectorSize;
  mustFit('exfat', fsSize, source.size);
  const region = await readBytes(source, 0, BOOT_REGION_SECTORS * b.sectorSize);
  if (!region || !checksumOk(region, b.sectorSize)) refuse('corrupt', 'its boot checksum is wrong');
  if (b.flags & VOLUME_DIRTY)
    refuse(
      'unclean',
      'the volume is marked dirty: not cleanly unmounted, or mounted now (run fsck.exfat)',
    );
  if (b.flags & MEDIA_FAILURE)
    refuse('unclean', 'the volume recorded a media failure (run fsck.exfat)');

  const fat = new Fat(source, b);
  const bitmap = await bitmapEntry(source, b, fat);
  const bitmapBytes = Math.ceil(b.clusterCount / 8);
  if (bitmap.length < bitmapBytes)
    refuse(
      'corrupt',
      `its allocation bitmap maps ${bitmap.length * 8} clusters of ${b.clusterCount}`,
    );
  const clusters = await fat.chain(
    bitmap.first,
    'the allocation bitmap',
    Math.ceil(bitmap.length / b.clusterSize),
  );
  if (clusters.length * b.clusterSize < bitmapBytes)
    refuse('corrupt', 'the allocation bitmap’s cluster chain is shorter than the bitmap');

  const heap = b.heapOffset * b.sectorSize;
  const used = new RangeList();
  used.add(0, heap); // both boot regions, the FAT(s), what lies before the heap
  // The bitmap's clusters in runs of adjacent ones, read up to 4 MiB at a time.
  const perRead = Math.max(1, Math.floor(READ_CHUNK / b.clusterSize));
  for (let i = 0, bit = 0; i < clusters.length && bit < b.clusterCount;) {
    let n = 1;
    while (i + n < clusters.length && n < perRead && clusters[i + n] === clusters[i] + n) n++;
    const bytes = Math.min(n * b.clusterSize, bitmapBytes - bit / 8);
    const data = await readBytes(source, heap + (clusters[i] - 2) * b.clusterSize, bytes);
    if (!data) return refuse('corrupt', 'the allocation bitmap lies past the end of its space');
    const base = bit;
    setBitRuns(data, Math.min(bytes * 8, b.clusterCount - base), (first, count) =>
      used.add(heap + (base + first) * b.clusterSize, count * b.clusterSize),
    );
    bit += n * b.clusterSize * 8;
    i += n;
  }
  const ranges = used.result(source.size);
  for (const c of clusters) {
    const at = heap + (c - 2) * b.clusterSize;
    if (!covers(ranges, at, b.clusterSize))
      refuse('corrupt', `the allocation bitmap calls its own cluster ${c} free`);
  }
  // Past the cluster heap, and past the volume: not ours to judge, so copied.
  const heapEnd = heap + b.clusterCount * b.clusterSize;
  used.add(heapEnd, source.size - heapEnd);
  return {
    fs: 'exfat',
    blockSize: b.clusterSize,
    size: source.size,
    fsSize,
    used: used.result(source.size),
  };
}
