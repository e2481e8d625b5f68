// Used space of a source's filesystem (dm-clone's discard): regions holding no used
// byte can be marked hydrated without being copied. ext2/3/4 and FAT32 on the whole
// source; a partitioned disk is out of scope (usedSpace returns null; identifySource
// says what it holds).

import type { Device } from '../io/device';
import { readBytes, type FsKind, type UsedSpace } from './common';
import { extState, extUsedSpace, parseExtSuperblock } from './ext';
import { fatKind, fatState, fatUsedSpace } from './fat';

export { FilesystemRefused, freeRegions } from './common';
export type { FsKind, RefusalKind, UsedSpace } from './common';

/**
 * Reads the superblock and the allocation bitmaps (or FAT) through the device, in
 * aligned 4096-byte multiples. Null when the source holds neither ext2/3/4 nor FAT32
 * at its start (a partition table among them). Throws FilesystemRefused when the
 * filesystem is unclean, uses a feature we can't read, or looks corrupt. Whether it
 * is mounted is the caller's check.
 */
export async function usedSpace(source: Device): Promise<UsedSpace | null> {
  if (source.size < 8192) return null;
  return (await extUsedSpace(source)) ?? (await fatUsedSpace(source));
}

export interface FilesystemState {
  fs: FsKind;
  clean: boolean;
  /** Why it is not clean. */
  reason?: string;
}

/** The clean-unmount verdict of the filesystem on the source; null when neither ext nor FAT32. */
export async function filesystemState(source: Device): Promise<FilesystemState | null> {
  if (source.size < 8192) return null;
  return (await extState(source)) ?? (await fatState(source));
}

/**
 * What the start of the source holds, for messages when usedSpace returns null:
 * 'ext4', 'fat32', 'fat16', 'ntfs', 'exfat', 'xfs', 'luks', 'gpt', 'mbr', … or null.
 */
export async function identifySource(source: Device): Promise<string | null> {
  if (source.size < 8192) return null;
  const head = await readBytes(source, 0, 8192);
  if (!head) return null;
  try {
    const ext = parseExtSuperblock(head.subarray(1024, 2048));
    if (ext) return ext.fs;
  } catch {
    return 'ext (damaged superblock)';
  }
  const text = (at: number, n: number): string => head.toString('latin1', at, at + n);
  if (text(512, 8) === 'EFI PART' || text(4096, 8) === 'EFI PART') return 'gpt';
  if (text(3, 8) === 'NTFS    ') return 'ntfs';
  if (text(3, 8) === 'EXFAT   ') return 'exfat';
  if (text(0, 4) === 'XFSB') return 'xfs';
  if (text(0, 6) === 'LUKS\xba\xbe') return 'luks';
  if (text(4086, 10) === 'SWAPSPACE2') return 'swap';
  const fat = fatKind(head.subarray(0, 512));
  if (fat) return fat;
  if (head.readUInt16LE(510) === 0xaa55) {
    const entries = [0, 1, 2, 3].map((i) => head.subarray(446 + 16 * i, 462 + 16 * i));
    if (entries.every((e) => e[0] === 0 || e[0] === 0x80) && entries.some((e) => e[4] !== 0))
      return 'mbr';
  }
  return null;
}
