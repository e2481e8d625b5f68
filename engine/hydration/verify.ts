// Reads the source and every destination side by side, all at once, and compares
// their bytes where they sit in memory (memcmp: far faster than hashing both sides,
// so reading stays the bottleneck, as for cmp).
//
// Memory is bounded in bytes whatever the region size: the devices are read in
// pieces of at most MAX_IO_BYTES, a few pieces in flight, and each region is judged
// piece by piece. Pieces are read in ascending order on every device and compared
// in that order, so streams (a compressed source, a backup read back by
// decompressing it) are read as streams must be.

import { type Device, isStream } from '../io/device';
import {
  IO_ALIGNMENT,
  MAX_IN_FLIGHT_BYTES,
  MAX_IO_BYTES,
  borrowBuffer,
  giveBack,
} from '../io/buffers';
import { ZstImage } from '../io/zst-image';
import { type Geometry, type Range, mergeRanges, regionRange } from '../geometry';

/**
 * Per destination path. A region of a destination is equal, differs, or could not be
 * read back. `mismatches` holds every region not found equal — both kinds, so a caller
 * that looks only there never calls an unreadable destination equal; `unreadable` says
 * which of them could not be read, to be told as "could not be read", not "differs".
 */
export interface VerifyResult {
  /** Per destination path: the byte ranges (whole regions) not found equal. */
  mismatches: Record<string, Range[]>;
  /** Per destination path: the indices of the regions not found equal. */
  mismatchedRegions: Record<string, number[]>;
  /** Per destination path: the byte ranges (whole regions) that could not be read back. */
  unreadable: Record<string, Range[]>;
  /** Per destination path: the indices of the regions that could not be read back. */
  unreadableRegions: Record<string, number[]>;
  /** Per destination path that could not be read somewhere: the first read error's message. */
  readErrors: Record<string, string>;
  /** Source ranges (whole regions) that could not be read, so were not compared. */
  skipped: Range[];
  bytesCompared: number;
  /** False when it was stopped before the end: nothing past bytesCompared was compared. */
  finished: boolean;
}

export interface VerifyOptions {
  /** Source ranges known unreadable (written as zeros): differences there don't count. */
  unreadable?: Range[];
  /** Regions not to compare (e.g. free space in a used-only clone). */
  skipRegion?: (region: number) => boolean;
  onProgress?: (bytesDone: number) => void;
  /** Largest read per device (default: what the memory bound allows, at most MAX_IO_BYTES). */
  pieceBytes?: number;
  /** Asked before each piece: true stops the compare there (result.finished false). */
  stopped?: () => boolean;
  /**
   * Per destination path: bytes that are its own, not the source's (its rewritten
   * partition tables, checked apart by engine/partitions/check.ts): not compared.
   */
  rewritten?: Record<string, Range[]>;
}

/** Pieces read ahead while an earlier one is compared. */
const IN_FLIGHT = 3;
/**
 * The largest piece by default: small enough that a piece just read is compared while
 * still in the CPU's cache (8 MiB pieces compare from memory, a third slower here).
 */
const PIECE_BYTES = 2 * 1024 * 1024;
/** Every verify buffer together: pieces in flight × (source + destinations). */
const VERIFY_BUFFER_BYTES = MAX_IN_FLIGHT_BYTES;
const MIN_PIECE_BYTES = 256 * 1024;

/** Every destination was read back and found equal (source ranges in `skipped` aside). */
export function allEqual(result: VerifyResult): boolean {
  return Object.values(result.mismatchedRegions).every((r) => r.length === 0);
}

/**
 * The device to read a destination back through: the device itself, or for a
 * `.img.zst` backup (written through a ZstImage, which can't be read) its frames on
 * disk, flushed first, decompressed as a stream — what a restore will read. The
 * caller closes what it gets when it is not `written`. verify() calls this itself.
 */
export async function openForVerify(written: Device): Promise<Device> {
  if (!(written instanceof ZstImage)) return written;
  if (written.writable) await written.flush();
  const { openCompressedSource } = await import('../io/compressed/index');
  return openCompressedSource(written.path);
}

/** One piece of the devices: a byte range inside one run of compared regions. */
interface Piece {
  range: Range;
  /** The piece cut at region boundaries: each region is compared over these. */
  segments: Range[];
  buffers: Buffer[];
  /** Per device, source first. */
  reads: Promise<PieceRead[]>;
}

interface PieceRead {
  /** Per segment: null, or why it could not be read. */
  errors: Array<Error | null>;
  /** Bytes read: fewer only where a streamed source ends. */
  got: number;
}

/** What is known of the region being compared. */
interface RegionState {
  index: number;
  /** Per device (source first): null, or why a part of it could not be read. */
  errors: Array<Error | null>;
  /** Per device (the source's is always false): some byte read so far differs. */
  differs: boolean[];
}

export async function verify(
  source: Device,
  destinations: Device[],
  geometry: Geometry,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const paths = destinations.map((d) => d.path);
  const result: VerifyResult = {
    mismatches: {},
    mismatchedRegions: Object.fromEntries(paths.map((p) => [p, []])),
    unreadable: {},
    unreadableRegions: Object.fromEntries(paths.map((p) => [p, []])),
    readErrors: {},
    skipped: [],
    bytesCompared: 0,
    finished: true,
  };
  const opened = await Promise.all(
    destinations.map((d) => openForVerify(d).catch((e: Error) => e)),
  );
  // Where the source's data ended: its size, or where a stream turned out to end.
  let end: number;
  try {
    const readers = opened.map((d, i) => (d instanceof Error ? failedDevice(paths[i], d) : d));
    end = await compare(source, readers, geometry, options, result);
  } finally {
    await Promise.all(
      opened.map((d, i) =>
        d instanceof Error || d === destinations[i] ? undefined : d.close().catch(() => undefined),
      ),
    );
  }
  const compared = { ...geometry, size: end };
  for (const p of paths) {
    const regions = result.mismatchedRegions[p].sort((a, b) => a - b);
    result.mismatches[p] = mergeRanges(regions.map((r) => regionRange(compared, r)));
    const unreadable = result.unreadableRegions[p].sort((a, b) => a - b);
    result.unreadable[p] = mergeRanges(unreadable.map((r) => regionRange(compared, r)));
  }
  result.skipped = mergeRanges(result.skipped);
  return result;
}

async function compare(
  source: Device,
  destinations: Device[],
  geometry: Geometry,
  options: VerifyOptions,
  result: VerifyResult,
): Promise<number> {
  const pieceBytes = options.pieceBytes ?? defaultPieceBytes(destinations.length);
  if (!(pieceBytes >= IO_ALIGNMENT && pieceBytes % IO_ALIGNMENT === 0)) {
    throw new RangeError(`pieceBytes must be a positive multiple of ${IO_ALIGNMENT}`);
  }
  const unreadable = options.unreadable ?? [];
  const overlapsUnreadable = (r: Range): boolean =>
    unreadable.some((s) => s.offset < r.offset + r.length && r.offset < s.offset + s.length);
  const devices = [source, ...destinations];
  const free = Array.from({ length: IN_FLIGHT }, () => devices.map(() => borrowBuffer(pieceBytes)));
  let end = geometry.size;
  let region: RegionState | null = null;

  const start = (range: Range): Piece => {
    const buffers = free.pop()!;
    const segments = segmentsOf(geometry, range);
    // Only the source may end early: a destination that does is unreadable there.
    const reads = devices.map((d, i) => readPiece(d, buffers[i], range, segments, i === 0));
    return { range, segments, buffers, reads: Promise.all(reads) };
  };

  const finishRegion = (r: RegionState, length: number): void => {
    const range = { offset: r.index * geometry.regionSize, length };
    if (r.errors[0]) {
      result.skipped.push(range);
      return;
    }
    destinations.forEach((d, i) => {
      const error = r.errors[i + 1];
      if (error) {
        result.unreadableRegions[d.path].push(r.index);
        result.mismatchedRegions[d.path].push(r.index);
        result.readErrors[d.path] ??= error.message;
      } else if (r.differs[i + 1] && !overlapsUnreadable(range)) {
        result.mismatchedRegions[d.path].push(r.index);
      }
    });
  };

  /** Compares a piece's bytes, in order, for each region it holds. */
  const comparePiece = async (piece: Piece): Promise<void> => {
    const reads = await piece.reads;
    const { got } = reads[0];
    const { offset } = piece.range;
    // A destination's own bytes are taken as the source's: they are not compared here.
    destinations.forEach((d, i) => {
      for (const r of options.rewritten?.[d.path] ?? []) {
        const from = Math.max(r.offset, offset) - offset;
        const to = Math.min(r.offset + r.length, offset + got) - offset;
        if (from < to) piece.buffers[0].copy(piece.buffers[i + 1], from, from, to);
      }
    });
    if (got < piece.range.length) end = Math.min(end, offset + got);
    if (end <= offset && region !== null) {
      // The stream ended where this piece starts, inside the region being compared.
      finishRegion(region, end - region.index * geometry.regionSize);
      region = null;
    }
    piece.segments.forEach((segment, k) => {
      const from = segment.offset;
      const to = Math.min(from + segment.length, end);
      if (to <= from) return;
      const index = Math.floor(from / geometry.regionSize);
      if (region === null || region.index !== index) {
        region = { index, errors: devices.map(() => null), differs: devices.map(() => false) };
      }
      const r = region;
      const want = piece.buffers[0].subarray(from - offset, to - offset);
      devices.forEach((_, i) => {
        r.errors[i] ??= reads[i].errors[k];
        if (i === 0 || r.errors[i] || r.differs[i]) return;
        r.differs[i] = !want.equals(piece.buffers[i].subarray(from - offset, to - offset));
      });
      if (!r.errors[0]) result.bytesCompared += to - from;
      const regionEnd = Math.min((index + 1) * geometry.regionSize, geometry.size);
      if (to === regionEnd || to === end) {
        finishRegion(r, to - index * geometry.regionSize);
        region = null;
      }
    });
    free.push(piece.buffers);
    options.onProgress?.(result.bytesCompared);
  };

  const inFlight: Piece[] = [];
  for (const range of pieces(geometry, pieceBytes, options.skipRegion)) {
    if (options.stopped?.()) {
      result.finished = false;
      break;
    }
    if (inFlight.length === IN_FLIGHT) await comparePiece(inFlight.shift()!);
    // A stream ended: nothing after it exists to compare.
    if (range.offset >= end) break;
    inFlight.push(start(range));
  }
  while (inFlight.length > 0) await comparePiece(inFlight.shift()!);
  giveBack(free.flat());
  return end;
}

/** `range` cut at region boundaries. */
function segmentsOf(geometry: Geometry, range: Range): Range[] {
  const out: Range[] = [];
  const stop = range.offset + range.length;
  for (let at = range.offset; at < stop;) {
    const next = Math.min((Math.floor(at / geometry.regionSize) + 1) * geometry.regionSize, stop);
    out.push({ offset: at, length: next - at });
    at = next;
  }
  return out;
}

/**
 * Reads a piece of one device; per segment, null or the error that kept it unread.
 * When the piece can't be read whole, a device that can be read again (not a stream)
 * is read region by region, so only the regions that really fail are reported.
 */
async function readPiece(
  device: Device,
  buffer: Buffer,
  range: Range,
  segments: Range[],
  mayEnd: boolean,
): Promise<PieceRead> {
  try {
    if (mayEnd && isStream(device)) {
      const got = await device.readAt(buffer.subarray(0, range.length), range.offset);
      return { errors: segments.map(() => null), got };
    }
    await readBlocks(device, buffer, range);
    return { errors: segments.map(() => null), got: range.length };
  } catch (e) {
    if (isStream(device) || segments.length === 1) {
      return { errors: segments.map(() => e as Error), got: range.length };
    }
    const errors: Array<Error | null> = [];
    for (const s of segments) {
      const at = buffer.subarray(s.offset - range.offset);
      errors.push(
        await readBlocks(device, at, s).then(
          () => null,
          (e2: Error) => e2,
        ),
      );
    }
    return { errors, got: range.length };
  }
}

/**
 * Reads `range` into `buffer`. A drive opened with O_DIRECT reads whole logical
 * blocks only: an image whose size is not a multiple of them ends inside a block,
 * which is read whole (the buffer has room: pieces are whole blocks) and of which
 * only the image's bytes are compared.
 */
function readBlocks(device: Device, buffer: Buffer, range: Range): Promise<void> {
  let length = range.length;
  if (device.kind === 'block') {
    const block = device.logicalBlockSize;
    const whole = Math.ceil(length / block) * block;
    length = Math.min(whole, Math.max(device.size - range.offset, length));
  }
  return device.read(buffer.subarray(0, length), range.offset);
}

/** Byte ranges to read, ascending: runs of compared regions cut into pieces of at most `pieceBytes`. */
function* pieces(
  geometry: Geometry,
  pieceBytes: number,
  skipRegion?: (region: number) => boolean,
): Generator<Range> {
  const { regionCount } = geometry;
  for (let r = 0; r < regionCount;) {
    if (skipRegion?.(r)) {
      r += 1;
      continue;
    }
    let last = r + 1;
    while (last < regionCount && !skipRegion?.(last)) last += 1;
    const run = regionRange(geometry, r, last - r);
    for (let at = run.offset; at < run.offset + run.length; at += pieceBytes) {
      yield { offset: at, length: Math.min(pieceBytes, run.offset + run.length - at) };
    }
    r = last;
  }
}

/** The largest power of two whose pieces, IN_FLIGHT of them per device, fit the memory bound. */
function defaultPieceBytes(destinations: number): number {
  const share = VERIFY_BUFFER_BYTES / (IN_FLIGHT * (1 + destinations));
  let bytes = Math.min(PIECE_BYTES, MAX_IO_BYTES);
  while (bytes > share && bytes > MIN_PIECE_BYTES) bytes /= 2;
  return bytes;
}

/** Stands in for a destination that could not even be opened for reading back. */
function failedDevice(path: string, error: Error): Device {
  const fail = (): Promise<never> => Promise.reject(error);
  return {
    path,
    kind: 'file',
    size: 0,
    logicalBlockSize: IO_ALIGNMENT,
    read: fail,
    write: fail,
    flush: fail,
    close: () => Promise.resolve(),
  };
}
