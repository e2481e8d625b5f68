// The SHA-256 a download must have: given by the user (64 hexadecimal digits), or read
// from a `.sha256` file next to it, where the server has one (`sha256sum`'s format: the
// line naming the file, or the only hash in it).

import path from 'node:path';
import type { ExpectedHash } from '../source-file';
import { bodyOf, get } from './request';

/** A .sha256 file longer than this is not one. */
const MAX_BYTES = 64 * 1024;
/** Asked with a short patience: it is only a convenience. */
const TIMEOUT_MS = 10_000;

/** The URL's file name: its path's last segment. */
export function urlFileName(url: string): string {
  try {
    return decodeURIComponent(path.posix.basename(new URL(url).pathname));
  } catch {
    return '';
  }
}

/** The hash in `URL.sha256`, where there is such a file and it names one; else null. */
export async function checksumNextTo(url: string): Promise<ExpectedHash | null> {
  let at: URL;
  try {
    at = new URL(url);
  } catch {
    return null;
  }
  at.pathname += '.sha256';
  try {
    const answer = await get(at.href, {}, TIMEOUT_MS);
    try {
      if (answer.status !== 200) return null;
      const parts: Buffer[] = [];
      let length = 0;
      for await (const chunk of bodyOf(answer, TIMEOUT_MS)) {
        parts.push(chunk);
        length += chunk.length;
        if (length > MAX_BYTES) return null;
      }
      const hex = hashFor(Buffer.concat(parts).toString('utf8'), urlFileName(url));
      return hex === null ? null : { hex, from: at.href };
    } finally {
      answer.body.destroy();
    }
  } catch {
    return null; // no such file, or no answer: nothing is checked
  }
}

/** The hash in a sha256sum listing for `name`, or its only hash. */
export function hashFor(listing: string, name: string): string | null {
  const lines = listing
    .split(/\r?\n/)
    .map((line) => /^\s*([0-9a-fA-F]{64})(?:\s+\*?(.+?))?\s*$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null);
  const named = lines.find((m) => m[2] !== undefined && path.posix.basename(m[2]) === name);
  if (named) return named[1].toLowerCase();
  return lines.length === 1 ? lines[0][1].toLowerCase() : null;
}
