// Regions: the unit of progress. A power of two bytes, a multiple of every
// device's logical block size; the last region may be short.

import type { Range } from './events';

export const MIN_REGION_SIZE = 4 * 1024;
export const MAX_REGION_SIZE = 1024 * 1024 * 1024;
export const DEFAULT_REGION_SIZE = 1024 * 1024;

export interface Geometry {
  size: number;
  regionSize: number;
  regionCount: number;
}

export type { Range };

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** Why a region size can't serve these devices, or null when it can. */
export function regionSizeProblem(regionSize: number, blockSizes: number[]): string | null {
  if (!isPowerOfTwo(regionSize)) return `region size ${regionSize} is not a power of two`;
  if (regionSize < MIN_REGION_SIZE || regionSize > MAX_REGION_SIZE) {
    return `region size ${regionSize} is outside 4K–1G`;
  }
  const misfit = blockSizes.find((b) => !(b > 0) || regionSize % b !== 0);
  if (misfit !== undefined)
    return `region size ${regionSize} is not a multiple of the ${misfit}-byte blocks`;
  return null;
}

export function makeGeometry(size: number, regionSize: number): Geometry {
  return { size, regionSize, regionCount: Math.ceil(size / regionSize) };
}

export function regionRange(g: Geometry, first: number, count = 1): Range {
  const offset = first * g.regionSize;
  return { offset, length: Math.min((first + count) * g.regionSize, g.size) - offset };
}

/** Regions touched by a byte range. */
export function regionsOf(g: Geometry, range: Range): { first: number; count: number } {
  const first = Math.floor(range.offset / g.regionSize);
  const last = Math.floor((range.offset + range.length - 1) / g.regionSize);
  return { first, count: last - first + 1 };
}

/** Sorted, with overlapping and touching ranges joined. */
export function mergeRanges(ranges: Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length >= r.offset) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else out.push({ ...r });
  }
  return out;
}
