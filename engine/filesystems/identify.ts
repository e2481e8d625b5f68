// What the start of a device (a whole source, or one partition) holds, by signature:
// for messages, and to tell swap — whose contents need not be copied — from the rest.

import type { Device } from '../io/device';
import { readBytes } from './common';
import { parseExtSuperblock } from './ext';
import { fatKind } from './fat';

/**
 * What the start of the device holds: 'ext4', 'fat32', 'fat16', 'ntfs', 'exfat', 'xfs',
 * 'luks', 'bitlocker', 'swap', 'gpt', 'mbr', … or null.
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
  if (text(3, 8) === '-FVE-FS-') return 'bitlocker';
  if (text(0, 4) === 'XFSB') return 'xfs';
  if (text(0, 6) === 'LUKS\xba\xbe') return 'luks';
  if (text(32, 4) === 'NXSB') return 'apfs';
  if (text(1024, 2) === 'H+' || text(1024, 2) === 'HX') return 'hfs+';
  if (head.readUInt32LE(1024) === 0xf2f52010) return 'f2fs';
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

const PAGE_SIZES = [4096, 8192, 16384, 65536];
/** Signatures a hibernation image leaves where swap's own would be (Linux, uswsusp). */
const HIBERNATION = ['S1SUSPEND', 'S2SUSPEND', 'ULSUSPEND', 'LINHIB0001'];

/**
 * A Linux swap area's header page: its size when the device holds plain swap (the
 * signature ends its first page), 'hibernation' when a hibernation image is stored in
 * it, null when it is no swap.
 */
export async function swapHeader(device: Device): Promise<number | 'hibernation' | null> {
  for (const page of PAGE_SIZES) {
    const tail = page <= device.size ? await readBytes(device, page - 10, 10) : null;
    const text = tail?.toString('latin1') ?? '';
    if (text === 'SWAPSPACE2') return page;
    if (HIBERNATION.some((sig) => text.startsWith(sig))) return 'hibernation';
  }
  return null;
}
