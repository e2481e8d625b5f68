// What makes a drive or image "the same one" when a job resumes: its size and
// block size, plus whatever names it for good (serial, loop backing file, inode, a
// download's ETag and Last-Modified), and for a source a hash of its first MiB (of a
// download's first 64 KiB).

import crypto from 'node:crypto';
import fs from 'node:fs';
import { inodeOf } from './inode';
import { type Device, isStream } from './device';
import { alignedBuffer } from './buffers';
import type { Download } from './source-file';
import { blockFacts } from '../drives/platform';

export interface Identity {
  kind: Device['kind'];
  size: number;
  logicalBlockSize: number;
  serial?: string | null;
  backingFile?: string | null;
  /** dev:ino of an image file, or of a loop device's backing file. */
  inode?: string | null;
  headSha256?: string;
  /** A destination image the job emptied first: where nothing was written it reads zeros. */
  emptied?: boolean;
  /** A download: what the server said names this version of the file. */
  etag?: string | null;
  lastModified?: string | null;
  /** A download: the SHA-256 it must have (lowercase hex), and who said so ('given' or a URL). */
  sha256?: { hex: string; from: string } | null;
  /**
   * A destination of a --new-ids job: the random seed its new identifiers come from,
   * chosen once, so that a resume or an update writes the same ones again.
   */
  newIdSeed?: string;
}

const HEAD_BYTES = 1024 * 1024;

/** What names a drive or file for good, from its path alone: nothing is opened. */
export function identifyPath(
  p: string,
  facts: Pick<Identity, 'kind' | 'size' | 'logicalBlockSize'>,
): Identity {
  const id: Identity = {
    kind: facts.kind,
    size: facts.size,
    logicalBlockSize: facts.logicalBlockSize,
  };
  if (facts.kind === 'file') {
    id.inode = inodeOf(p);
  } else {
    const info = blockFacts(p);
    id.serial = info.serial;
    id.backingFile = info.backingFile;
    id.inode = info.backingFile ? inodeOf(info.backingFile) : null;
  }
  return id;
}

export async function identify(device: Device, withHead: boolean): Promise<Identity> {
  if (isStream(device)) {
    const { download } = device.file;
    if (download) return identifyDownload(download, device.compressedSize);
    return identifyFile(device.path, device.compressedSize, withHead);
  }
  const id = identifyPath(device.path, device);
  if (withHead) {
    const head = alignedBuffer(Math.min(HEAD_BYTES, device.size));
    await device.read(head, 0);
    id.headSha256 = crypto.createHash('sha256').update(head).digest('hex');
  }
  return id;
}

/** A compressed image is known by its own bytes: reading the stream here would consume it. */
function identifyFile(file: string, size: number, withHead: boolean): Identity {
  const id: Identity = { kind: 'file', size, logicalBlockSize: 512, inode: inodeOf(file) };
  if (withHead) {
    const head = Buffer.alloc(Math.min(HEAD_BYTES, size));
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, head, 0, head.length, 0);
    } finally {
      fs.closeSync(fd);
    }
    id.headSha256 = crypto.createHash('sha256').update(head).digest('hex');
  }
  return id;
}

/** A download is known by what its server says of it, and by its first bytes. */
function identifyDownload(download: Download, size: number): Identity {
  return {
    kind: 'file',
    size,
    logicalBlockSize: 512,
    etag: download.etag,
    lastModified: download.lastModified,
    headSha256: download.headSha256,
    sha256: download.sha256,
  };
}

/** Why `now` is not the device recorded as `then`, or null when it is. */
export function identityProblem(what: string, then: Identity, now: Identity): string | null {
  if (then.kind !== now.kind)
    return `${what} was a ${then.kind === 'block' ? 'drive' : 'file'} and is not any more`;
  // An image the job writes is its own: its length is the job's doing, its inode says which.
  const lengthMatters = then.kind === 'block' || then.headSha256 !== undefined;
  if (lengthMatters && then.size !== now.size)
    return `${what} changed size (was ${then.size} bytes, now ${now.size})`;
  if (then.logicalBlockSize !== now.logicalBlockSize) {
    return `${what} changed block size (was ${then.logicalBlockSize}, now ${now.logicalBlockSize})`;
  }
  if (then.serial && now.serial && then.serial !== now.serial) {
    return `${what} is another drive (serial ${now.serial}, the job's was ${then.serial})`;
  }
  // A source with the same size and first MiB is the same source, whichever file serves
  // it now: a drive plugged back in, a loop device attached again over a new mount.
  const sameHead = then.headSha256 !== undefined && then.headSha256 === now.headSha256;
  if (then.inode && now.inode && then.inode !== now.inode && !sameHead) {
    return `${what} is another file than the one the job started with`;
  }
  if (then.etag && now.etag && then.etag !== now.etag) {
    return `${what} changed on the server (its ETag was ${then.etag}, now ${now.etag})`;
  }
  if (then.lastModified && now.lastModified && then.lastModified !== now.lastModified) {
    return `${what} changed on the server (last modified ${then.lastModified}, now ${now.lastModified})`;
  }
  if (then.headSha256 && now.headSha256 && then.headSha256 !== now.headSha256) {
    return `${what} holds different data than when the job started`;
  }
  return null;
}
