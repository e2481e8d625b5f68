// Reads the source and every destination side by side and compares region
// hashes (xxHash64: far faster than the disks, so reading stays the bottleneck).

import { createXXHash64, type IHasher } from 'hash-wasm';
import { type Device, readSome } from './io/device';
import { alignedBuffer } from './io/buffers';
import { type Geometry, type Range, mergeRanges, regionRange } from './geometry';

export interface VerifyResult {
  /** Per destination path: the byte ranges (whole regions) that differ. */
  mismatches: Record<string, Range[]>;
  /** Per destination path: the indices of the regions that differ. */
  mismatchedRegions: Record<string, number[]>;
  /** Source ranges that could not be read, so were not compared. */
  skipped: Range[];
  bytesCompared: number;
}

export interface VerifyOptions {
  /** Source ranges known unreadable (written as zeros): differences there don't count. */
  unreadable?: Range[];
  /** Regions not to compare (e.g. free space in a used-only clone). */
  skipRegion?: (region: number) => boolean;
  onProgress?: (bytesDone: number) => void;
  /** Regions read per I/O. */
  batch?: number;
}

const IN_FLIGHT = 4;

export async function verify(
  source: Device,
  destinations: Device[],
  geometry: Geometry,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const result: VerifyResult = {
    mismatches: {},
    mismatchedRegions: Object.fromEntries(destinations.map((d) => [d.path, []])),
    skipped: [],
    bytesCompared: 0,
  };
  const batch = options.batch ?? 8;
  const unreadable = options.unreadable ?? [];
  const overlapsUnreadable = (r: Range): boolean =>
    unreadable.some((s) => s.offset < r.offset + r.length && r.offset < s.offset + s.length);
  let next = 0;

  /** The next run of regions to compare, never crossing a skipped region. */
  const take = (): { first: number; count: number } | null => {
    while (next < geometry.regionCount && options.skipRegion?.(next)) next += 1;
    if (next >= geometry.regionCount) return null;
    const first = next;
    while (
      next < geometry.regionCount &&
      next - first < batch &&
      !(next > first && options.skipRegion?.(next))
    ) {
      next += 1;
    }
    return { first, count: next - first };
  };

  const worker = async (): Promise<void> => {
    const bytes = batch * geometry.regionSize;
    const buffers = [source, ...destinations].map(() => alignedBuffer(bytes));
    const hasher = await createXXHash64();
    for (let run = take(); run; run = take()) {
      const range = regionRange(geometry, run.first, run.count);
      const views = buffers.map((b) => b.subarray(0, range.length));
      const [sourceRead, ...destReads] = await Promise.allSettled([
        readSome(source, views[0], range.offset),
        ...destinations.map((d, i) => d.read(views[i + 1], range.offset)),
      ]);
      if (sourceRead.status === 'rejected') {
        result.skipped.push(range);
        continue;
      }
      // A stream that ends early: compare what it had; nothing after it.
      const end = range.offset + sourceRead.value;
      if (sourceRead.value < range.length) next = geometry.regionCount;
      for (let r = run.first; r < run.first + run.count; r++) {
        const whole = regionRange(geometry, r);
        const region = { offset: whole.offset, length: Math.min(whole.length, end - whole.offset) };
        if (region.length <= 0) break;
        const at = region.offset - range.offset;
        const want = hashOf(hasher, views[0].subarray(at, at + region.length));
        destinations.forEach((dest, i) => {
          const got =
            destReads[i].status === 'fulfilled'
              ? hashOf(hasher, views[i + 1].subarray(at, at + region.length))
              : null;
          if (got !== want && !overlapsUnreadable(region)) {
            result.mismatchedRegions[dest.path].push(r);
          }
        });
      }
      result.bytesCompared += end - range.offset;
      options.onProgress?.(result.bytesCompared);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  for (const dest of destinations) {
    const regions = result.mismatchedRegions[dest.path].sort((a, b) => a - b);
    result.mismatches[dest.path] = mergeRanges(regions.map((r) => regionRange(geometry, r)));
  }
  result.skipped = mergeRanges(result.skipped);
  return result;
}

function hashOf(hasher: IHasher, data: Buffer): string {
  hasher.init();
  hasher.update(data);
  return hasher.digest('hex');
}
