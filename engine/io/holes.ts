// Where a file holds data, asked of the file system, so the holes of a sparse image are
// never read (bmaptool's block map, without a map file): lseek(SEEK_DATA / SEEK_HOLE) on
// Linux and macOS — Node has no lseek: it is one libc call through koffi (prebuilt per
// platform in npm packages) — and FSCTL_QUERY_ALLOCATED_RANGES on Windows (holes-win32.ts).
// Wherever the file system can't say, everything counts as data and is read as before.

import { type Range, mergeRanges } from '../geometry';
import { allocatedRanges } from './holes-win32';
import { libc } from './libc';

type Lseek = (fd: number, offset: number, whence: number) => number;

interface Seeker {
  lseek: Lseek;
  /** errno after a failed call. */
  errno(): number;
  SEEK_DATA: number;
  SEEK_HOLE: number;
}

/** SEEK_DATA and SEEK_HOLE per system. */
const WHENCE: Partial<Record<NodeJS.Platform, { data: number; hole: number }>> = {
  linux: { data: 3, hole: 4 },
  darwin: { data: 4, hole: 3 },
};

/** The same on Linux and macOS. */
const ENXIO = 6;

let seeker: Seeker | null | undefined;

function load(): Seeker | null {
  if (seeker !== undefined) return seeker;
  seeker = null;
  const c = libc();
  const whence = WHENCE[process.platform];
  if (!c || !whence) return seeker;
  try {
    const lseek = c.func('int64_t lseek(int, int64_t, int)');
    seeker = {
      lseek: (fd, offset, w) => Number(lseek(fd, offset, w)),
      errno: c.errno,
      SEEK_DATA: whence.data,
      SEEK_HOLE: whence.hole,
    };
  } catch {
    // no lseek where expected: every byte is data
  }
  return seeker;
}

/**
 * The spans of the file holding data, in order, widened to `align` (the file system's
 * map is in its blocks): asked once, since every SEEK_HOLE may scan the file's page cache
 * up to the next hole (on tmpfs, all of a file without holes). Null when the file system
 * can't say; a file system without holes answers with one span, the whole file.
 */
export function dataMap(fd: number, file: string, size: number, align: number): Range[] | null {
  const spans = process.platform === 'win32' ? allocatedRanges(file, size) : seekedRanges(fd, size);
  return spans && widened(spans, size, align);
}

/** lseek's answer: the spans between each SEEK_DATA and the SEEK_HOLE after it. */
function seekedRanges(fd: number, size: number): Range[] | null {
  const s = load();
  if (!s) return null;
  const spans: Range[] = [];
  for (let at = 0; at < size;) {
    const data = s.lseek(fd, at, s.SEEK_DATA);
    // ENXIO: no data from here to the end of the file. Anything else: read it all.
    if (data < 0) {
      if (s.errno() === ENXIO) break;
      return null;
    }
    if (data >= size) break;
    const hole = s.lseek(fd, data, s.SEEK_HOLE);
    if (hole < 0) return null;
    spans.push({ offset: data, length: Math.min(size, hole) - data });
    at = hole;
  }
  return spans;
}

/** `spans` widened to `align` within the file, those that then touch merged. */
export function widened(spans: Range[], size: number, align: number): Range[] {
  return mergeRanges(
    spans.map(({ offset, length }) => {
      const from = offset - (offset % align);
      return {
        offset: from,
        length: Math.min(size, Math.ceil((offset + length) / align) * align) - from,
      };
    }),
  );
}

/** The spans of `map` within [offset, offset + length), clipped to it. */
export function dataIn(map: Range[], offset: number, length: number): Range[] {
  const end = offset + length;
  const out: Range[] = [];
  for (let k = firstEndingAfter(map, offset); k < map.length && map[k].offset < end; k++) {
    const from = Math.max(offset, map[k].offset);
    out.push({ offset: from, length: Math.min(end, map[k].offset + map[k].length) - from });
  }
  return out;
}

/** Where the next data at or after `offset` begins in `map`; `size` when none. */
export function nextData(map: Range[], offset: number, size: number): number {
  const k = firstEndingAfter(map, offset);
  return k < map.length ? Math.max(offset, map[k].offset) : size;
}

/** The index of the first span ending after `offset` (binary search). */
function firstEndingAfter(map: Range[], offset: number): number {
  let lo = 0;
  let hi = map.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (map[mid].offset + map[mid].length <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
