// What a path names (a drive, an image, a backup, nothing yet), and opening one for
// reading. Nothing here writes.

import fs from 'node:fs';
import { drivePlatform } from '../drives/platform';
import { BlockDevice } from './block-device';
import { type Device, DeviceError } from './device';
import { isUrl } from './http/url';
import { IMAGE_BLOCK_SIZE, ImageFile } from './image-file';
import type { ExpectedHash } from './source-file';

/** A refused request: a check said no, and nothing was written. */
export class Refused extends Error {}

/** A destination written as a compressed, resumable backup. */
export const isZstPath = (p: string): boolean => /\.zst$/i.test(p);

export interface Probe {
  path: string;
  kind: 'block' | 'file' | 'zst' | 'missing';
  size: number;
  logicalBlockSize: number;
}

export function probe(p: string): Probe {
  const platform = drivePlatform();
  // Asked first: a Windows drive (\\.\PhysicalDriveN) is no file stat can describe.
  if (platform.isDrive(p)) {
    const info = platform.blockFacts(p);
    return { path: p, kind: 'block', size: info.size, logicalBlockSize: info.logicalBlockSize };
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return { path: p, kind: 'missing', size: 0, logicalBlockSize: IMAGE_BLOCK_SIZE };
  }
  if (st.isFile()) {
    const kind = isZstPath(p) ? 'zst' : 'file';
    return { path: p, kind, size: st.size, logicalBlockSize: IMAGE_BLOCK_SIZE };
  }
  throw new Refused(`${p} is neither a drive nor an image file`);
}

/**
 * Opens a drive, image, compressed image or URL for reading only; `role` names it in
 * messages. `sha256`, for a URL: the hash it must have, null for none, undefined for the
 * one in a .sha256 file next to it (io/http/open-url.ts).
 */
export async function openReadable(
  p: string,
  role = 'source',
  how: { sha256?: ExpectedHash | null } = {},
): Promise<Device> {
  if (isUrl(p)) return openDownload(p, role, how.sha256);
  const found = probe(p);
  if (found.kind === 'missing') throw new Refused(`${role} ${p} does not exist`);
  try {
    if (found.kind === 'block') return await BlockDevice.open(p, false);
    const { detectCompression, openCompressedSource } = await import('./compressed/index');
    if (detectCompression(p)) return await openCompressedSource(p);
    const device = ImageFile.open(p, false);
    if (device.size === 0) throw new Refused(`${role} ${p} is empty`);
    return device;
  } catch (e) {
    if (e instanceof Refused) throw e;
    throw new Refused(`${role} ${p} can't be read: ${(e as Error).message}`);
  }
}

async function openDownload(
  url: string,
  role: string,
  sha256: ExpectedHash | null | undefined,
): Promise<Device> {
  const { openUrl } = await import('./http/open-url');
  let source: Device;
  try {
    source = await openUrl(url, sha256);
  } catch (e) {
    if (e instanceof DeviceError && e.op === 'open' && e.message.startsWith(url)) {
      throw new Refused(`${role} ${e.message}`);
    }
    throw new Refused(`${role} ${url} can't be read: ${(e as Error).message}`);
  }
  if (source.size === 0) {
    await source.close();
    throw new Refused(`${role} ${url} is empty`);
  }
  return source;
}

/** Closes every device, whatever fails. */
export async function closeAll(devices: Array<Device | null | undefined>): Promise<void> {
  await Promise.all(devices.map((d) => d?.close().catch(() => undefined)));
}
