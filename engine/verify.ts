// Reads the source and every destination region by region and compares them.

import type { Device } from './io/device';
import { alignedBuffer } from './io/buffers';
import { type Geometry, type Range, mergeRanges, regionRange } from './geometry';

export interface VerifyResult {
  /** Per destination path: the byte ranges (whole regions) that differ. */
  mismatches: Record<string, Range[]>;
  /** Source ranges that could not be read, so were not compared. */
  skipped: Range[];
}

const IN_FLIGHT = 4;

export async function verify(
  source: Device,
  destinations: Device[],
  geometry: Geometry,
  onProgress?: (bytesDone: number) => void,
  skip: Range[] = [],
): Promise<VerifyResult> {
  const result: VerifyResult = {
    mismatches: Object.fromEntries(destinations.map((d) => [d.path, []])),
    skipped: [],
  };
  let next = 0;
  let done = 0;
  const overlapsSkip = (r: Range): boolean =>
    skip.some((s) => s.offset < r.offset + r.length && r.offset < s.offset + s.length);

  const worker = async (): Promise<void> => {
    const want = alignedBuffer(geometry.regionSize);
    const got = alignedBuffer(geometry.regionSize);
    while (next < geometry.regionCount) {
      const range = regionRange(geometry, next++);
      const a = want.subarray(0, range.length);
      try {
        await source.read(a, range.offset);
      } catch {
        result.skipped.push(range);
        continue;
      }
      for (const dest of destinations) {
        const b = got.subarray(0, range.length);
        await dest.read(b, range.offset);
        // Unreadable source blocks were written as zeros: compare the readable rest only.
        if (!a.equals(b) && !overlapsSkip(range)) result.mismatches[dest.path].push(range);
      }
      done += range.length;
      onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  for (const path of Object.keys(result.mismatches)) {
    result.mismatches[path] = mergeRanges(result.mismatches[path]);
  }
  result.skipped = mergeRanges(result.skipped);
  return result;
}
