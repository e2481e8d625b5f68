// Used space of a source's file systems (dm-clone's discard): regions holding no used
// byte can be marked hydrated without being copied. ext2/3/4, FAT12/16/32, NTFS and
// exFAT, on the whole source or partition by partition (partitioned.ts).

import type { Device } from '../io/device';
import type { FsKind } from './common';
import { extState } from './ext';
import { fatState } from './fat';
import { fileSystemUsedSpace } from './partitioned';

export { FilesystemRefused, UsedSpaceRefused, freeRegions } from './common';
export type { FsKind, RefusalKind, UsedSpace } from './common';
export { identifySource } from './identify';
export { sourceUsedSpace, type SourceUsedSpace } from './partitioned';

/**
 * The file system on the whole device, read through its allocation map in aligned
 * 4096-byte multiples. Null when it holds none read here (a partition table among
 * them: see sourceUsedSpace). Throws FilesystemRefused when the filesystem is
 * unclean, uses a feature we can't read, or looks corrupt. Whether it is mounted is
 * the caller's check.
 */
export const usedSpace = fileSystemUsedSpace;

export interface FilesystemState {
  fs: FsKind;
  clean: boolean;
  /** Why it is not clean. */
  reason?: string;
}

/** The clean-unmount verdict of the ext or FAT filesystem on the source; null when neither. */
export async function filesystemState(source: Device): Promise<FilesystemState | null> {
  if (source.size < 8192) return null;
  return (await extState(source)) ?? (await fatState(source));
}
