// Checks on a used-space scan (engine/filesystems) of an image file: the scan itself,
// its ranges well formed and covering what they must, and a copy of only those ranges.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { usedSpace, type UsedSpace } from '../../engine/filesystems';
import type { Range } from '../../engine/geometry';
import { ImageFile } from '../../engine/io/image-file';
import { writeRandomFile } from './files';

const MiB = 1024 * 1024;

export async function scan(image: string): Promise<UsedSpace | null> {
  const dev = ImageFile.open(image, false);
  try {
    return await usedSpace(dev);
  } finally {
    await dev.close();
  }
}

export async function withDevice<T>(image: string, fn: (dev: ImageFile) => Promise<T>): Promise<T> {
  const dev = ImageFile.open(image, false);
  try {
    return await fn(dev);
  } finally {
    await dev.close();
  }
}

export const total = (ranges: Range[]): number => ranges.reduce((n, r) => n + r.length, 0);

/** Sorted, merged, within the size. */
export function assertWellFormed(u: UsedSpace): void {
  let end = -1;
  for (const r of u.used) {
    assert.ok(r.length > 0 && r.offset > end, `ranges sorted and merged at ${r.offset}`);
    end = r.offset + r.length;
  }
  assert.ok(end <= u.size);
}

/** [offset, offset + length) lies inside the used ranges. */
export function assertInside(used: Range[], offset: number, length: number, what: string): void {
  let lo = 0;
  let hi = used.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (used[mid].offset <= offset) lo = mid;
    else hi = mid - 1;
  }
  const r = used[lo];
  assert.ok(
    r && r.offset <= offset && offset + length <= r.offset + r.length,
    `${what}: bytes ${offset}+${length} are not marked used`,
  );
}

/** A destination full of random bytes with only the used ranges copied from the source. */
export function copyUsed(source: string, dest: string, u: UsedSpace, garbage: boolean): void {
  if (garbage) writeRandomFile(dest, u.size, 999);
  else {
    fs.rmSync(dest, { force: true });
    fs.writeFileSync(dest, '');
    fs.truncateSync(dest, u.size);
  }
  const src = fs.openSync(source, 'r');
  const dst = fs.openSync(dest, 'r+');
  const buf = Buffer.alloc(4 * MiB);
  try {
    for (const r of u.used) {
      for (let pos = r.offset; pos < r.offset + r.length; pos += buf.length) {
        const n = Math.min(buf.length, r.offset + r.length - pos);
        assert.equal(fs.readSync(src, buf, 0, n, pos), n);
        fs.writeSync(dst, buf, 0, n, pos);
      }
    }
  } finally {
    fs.closeSync(src);
    fs.closeSync(dst);
  }
}
