// Which compression a file uses: by its first bytes, else by its name.

import fs from 'node:fs';
import path from 'node:path';
import { DeviceError } from '../device';
import { isSkippable, ZSTD_MAGIC } from '../zst-frames';
import { preadSync } from './file';
import { CompressedSourceError, type Compression } from './source';

const NAME_SUFFIXES: Array<[RegExp, Compression]> = [
  [/\.(gz|gzip)$/i, 'gzip'],
  [/\.xz$/i, 'xz'],
  [/\.(zst|zstd)$/i, 'zstd'],
  [/\.(bz2|bzip2)$/i, 'bzip2'],
  [/\.zip$/i, 'zip'],
];

export const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const BZIP2_BLOCK_MAGIC = Buffer.from([0x31, 0x41, 0x59, 0x26, 0x53, 0x59]);
const BZIP2_END_MAGIC = Buffer.from([0x17, 0x72, 0x45, 0x38, 0x50, 0x90]);

/** By content (magic bytes) first, by name second; null for a plain image. Synchronous, reads a few bytes. */
export function detectCompression(path: string): Compression | null {
  let byContent: Compression | null = null;
  try {
    byContent = contentOf(path);
  } catch {
    // Unreadable here: opening it will say why. The name may still tell.
  }
  return byContent ?? detectByName(path);
}

/**
 * The compression to open `file` with, or null for a plain image. Stricter than
 * detectCompression: the file must be readable, and only a zip may be known by its name
 * alone (its directory is at the end, after whatever a self-extractor puts first).
 */
export function compressionOf(file: string): Compression | null {
  let byContent: Compression | null;
  try {
    byContent = contentOf(file);
  } catch (e) {
    throw new DeviceError('open', file, 0, 0, e as NodeJS.ErrnoException);
  }
  return byContentOrName(file, path.basename(file), byContent);
}

/**
 * The compression of a download whose first bytes are `head` (a URL's last path segment
 * is its `name`), by compressionOf's rule.
 */
export function compressionOfHead(url: string, name: string, head: Buffer): Compression | null {
  const read = (at: number, n: number): Buffer => head.subarray(at, at + n);
  return byContentOrName(url, name, detectByContent(read));
}

function byContentOrName(
  file: string,
  name: string,
  byContent: Compression | null,
): Compression | null {
  const compression = byContent ?? detectByName(name);
  if (byContent === null && compression !== null && compression !== 'zip') {
    throw new CompressedSourceError(
      'open',
      file,
      0,
      0,
      'ECORRUPT',
      `named like a ${compression} file, but it does not start like one`,
    );
  }
  return compression;
}

function contentOf(file: string): Compression | null {
  const fd = fs.openSync(file, 'r');
  try {
    return detectByContent((at, n) => preadSync(fd, at, n));
  } finally {
    fs.closeSync(fd);
  }
}

function detectByName(name: string): Compression | null {
  return NAME_SUFFIXES.find(([suffix]) => suffix.test(path.basename(name)))?.[1] ?? null;
}

/** `read(at, n)`: up to n bytes at `at` (fewer past the end). */
function detectByContent(read: (at: number, n: number) => Buffer): Compression | null {
  const head = read(0, 16);
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 8) return 'gzip';
  if (head.length >= 6 && head.subarray(0, 6).equals(XZ_MAGIC)) return 'xz';
  if (
    head.length >= 10 &&
    head.toString('latin1', 0, 3) === 'BZh' &&
    head[3] >= 0x31 &&
    head[3] <= 0x39 &&
    (head.subarray(4, 10).equals(BZIP2_BLOCK_MAGIC) || head.subarray(4, 10).equals(BZIP2_END_MAGIC))
  ) {
    return 'bzip2';
  }
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b) {
    // A local file header, or the end record of an empty archive.
    if ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6)) return 'zip';
  }
  // zstd: a frame, possibly after skippable frames (which LZ4 shares: look past them).
  let at = 0;
  let buf = head;
  for (let i = 0; i < 16 && buf.length >= 4; i++) {
    const magic = buf.readUInt32LE(0);
    if (magic === ZSTD_MAGIC) return 'zstd';
    if (!isSkippable(magic) || buf.length < 8) return null;
    at += 8 + buf.readUInt32LE(4);
    buf = read(at, 8);
  }
  return null;
}
