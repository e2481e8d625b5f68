// The hydrated bitmap. Kept in chunks so that a commit writes only the chunks
// that changed since the last one.

export const CHUNK_BYTES = 4096;
const CHUNK_REGIONS = CHUNK_BYTES * 8;
const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => b.toString(2).replace(/0/g, '').length);

/**
 * `regionCount` may be Infinity while a streamed source's size is unknown: the
 * bitmap then grows as regions are set, and `truncate` fixes the count at the end.
 */
export class RegionMap {
  private bytes: Uint8Array;
  private setCount = 0;
  private readonly dirty = new Set<number>();

  constructor(public regionCount: number) {
    this.bytes = new Uint8Array(Number.isFinite(regionCount) ? Math.ceil(regionCount / 8) : 0);
  }

  get bits(): Uint8Array {
    return this.bytes;
  }

  /** Regions the bitmap holds bits for: past them every region is clear. */
  private get span(): number {
    return Math.min(this.regionCount, this.bytes.length * 8);
  }

  private reserve(byteLength: number): void {
    if (byteLength <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(byteLength, this.bytes.length * 2, CHUNK_BYTES));
    grown.set(this.bytes);
    this.bytes = grown;
  }

  /** The source turned out to end here: no region from `count` on exists. */
  truncate(count: number): void {
    for (let r = count; r < this.span; r++) this.clear(r);
    this.regionCount = count;
  }

  get count(): number {
    return this.setCount;
  }

  has(region: number): boolean {
    return ((this.bytes[region >> 3] ?? 0) & (1 << (region & 7))) !== 0;
  }

  set(region: number): void {
    if (region < 0 || region >= this.regionCount) throw new RangeError(`no region ${region}`);
    if (this.has(region)) return;
    this.reserve((region >> 3) + 1);
    this.bytes[region >> 3] |= 1 << (region & 7);
    this.setCount += 1;
    this.dirty.add(Math.floor(region / CHUNK_REGIONS));
  }

  /** Whole bytes at once: a run may be millions of regions (a hole of a sparse source). */
  setRange(first: number, count: number): void {
    const end = first + count;
    if (count <= 0) return;
    if (first < 0 || end > this.regionCount) throw new RangeError(`no regions ${first}+${count}`);
    this.reserve(((end - 1) >> 3) + 1);
    let r = first;
    for (; r < end && (r & 7) !== 0; r++) this.set(r);
    for (; r + 8 <= end; r += 8) {
      const i = r >> 3;
      this.setCount += 8 - POPCOUNT[this.bytes[i]];
      this.bytes[i] = 0xff;
    }
    for (; r < end; r++) this.set(r);
    for (
      let c = Math.floor(first / CHUNK_REGIONS);
      c <= Math.floor((end - 1) / CHUNK_REGIONS);
      c++
    ) {
      this.dirty.add(c);
    }
  }

  clear(region: number): void {
    if (!this.has(region)) return;
    this.bytes[region >> 3] &= ~(1 << (region & 7));
    this.setCount -= 1;
    this.dirty.add(Math.floor(region / CHUNK_REGIONS));
  }

  /** First region at or after `from` that is not set, or -1. Skips full bytes. */
  nextClear(from: number): number {
    let r = from;
    while (r < this.span) {
      if ((r & 7) === 0 && this.bytes[r >> 3] === 0xff) {
        r += 8;
        continue;
      }
      if (!this.has(r)) return r;
      r += 1;
    }
    return r < this.regionCount ? r : -1;
  }

  /** Runs of set regions, for maps and reports. */
  runs(): Array<{ first: number; count: number }> {
    const out: Array<{ first: number; count: number }> = [];
    let r = 0;
    while (r < this.span) {
      if ((r & 7) === 0 && this.bytes[r >> 3] === 0) {
        r += 8;
        continue;
      }
      if (!this.has(r)) {
        r += 1;
        continue;
      }
      const first = r;
      while (r < this.span && this.has(r))
        r += (r & 7) === 0 && this.bytes[r >> 3] === 0xff ? 8 : 1;
      r = Math.min(r, this.span);
      out.push({ first, count: r - first });
    }
    return out;
  }

  /** Chunks changed since the last call, as (index, bytes) pairs; forgets them. */
  takeDirtyChunks(): Array<{ index: number; bytes: Buffer }> {
    const out = [...this.dirty]
      .sort((a, b) => a - b)
      .map((index) => ({
        index,
        bytes: Buffer.from(this.bytes.subarray(index * CHUNK_BYTES, (index + 1) * CHUNK_BYTES)),
      }));
    this.dirty.clear();
    return out;
  }

  /** Restores committed chunks (bits past the last region are ignored). */
  load(chunks: Iterable<{ index: number; bytes: Uint8Array }>): void {
    for (const { index, bytes } of chunks) {
      const start = index * CHUNK_BYTES;
      if (!Number.isFinite(this.regionCount)) this.reserve(start + bytes.length);
      const end = Math.min(start + bytes.length, this.bytes.length);
      if (end > start) this.bytes.set(bytes.subarray(0, end - start), start);
    }
    const spare = this.bytes.length * 8 - this.regionCount;
    if (spare > 0 && spare < 8) this.bytes[this.bytes.length - 1] &= 0xff >> spare;
    this.setCount = 0;
    for (const byte of this.bytes) this.setCount += POPCOUNT[byte];
  }
}
