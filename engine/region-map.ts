// The hydrated bitmap. Kept in chunks so that a commit writes only the chunks
// that changed since the last one.

export const CHUNK_BYTES = 4096;
const CHUNK_REGIONS = CHUNK_BYTES * 8;
const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => b.toString(2).replace(/0/g, '').length);

export class RegionMap {
  readonly bits: Uint8Array;
  private setCount = 0;
  private readonly dirty = new Set<number>();

  constructor(readonly regionCount: number) {
    this.bits = new Uint8Array(Math.ceil(regionCount / 8));
  }

  get count(): number {
    return this.setCount;
  }

  has(region: number): boolean {
    return (this.bits[region >> 3] & (1 << (region & 7))) !== 0;
  }

  set(region: number): void {
    if (region < 0 || region >= this.regionCount) throw new RangeError(`no region ${region}`);
    if (this.has(region)) return;
    this.bits[region >> 3] |= 1 << (region & 7);
    this.setCount += 1;
    this.dirty.add(Math.floor(region / CHUNK_REGIONS));
  }

  setRange(first: number, count: number): void {
    for (let r = first; r < first + count; r++) this.set(r);
  }

  clear(region: number): void {
    if (!this.has(region)) return;
    this.bits[region >> 3] &= ~(1 << (region & 7));
    this.setCount -= 1;
    this.dirty.add(Math.floor(region / CHUNK_REGIONS));
  }

  /** First region at or after `from` that is not set, or -1. Skips full bytes. */
  nextClear(from: number): number {
    let r = from;
    while (r < this.regionCount) {
      if ((r & 7) === 0 && this.bits[r >> 3] === 0xff) {
        r += 8;
        continue;
      }
      if (!this.has(r)) return r;
      r += 1;
    }
    return -1;
  }

  /** Runs of set regions, for maps and reports. */
  runs(): Array<{ first: number; count: number }> {
    const out: Array<{ first: number; count: number }> = [];
    let r = 0;
    while (r < this.regionCount) {
      if (!this.has(r)) {
        r += 1;
        continue;
      }
      const first = r;
      while (r < this.regionCount && this.has(r)) r += 1;
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
        bytes: Buffer.from(this.bits.subarray(index * CHUNK_BYTES, (index + 1) * CHUNK_BYTES)),
      }));
    this.dirty.clear();
    return out;
  }

  /** Restores committed chunks (bits past the last region are ignored). */
  load(chunks: Iterable<{ index: number; bytes: Uint8Array }>): void {
    for (const { index, bytes } of chunks) {
      const start = index * CHUNK_BYTES;
      const end = Math.min(start + bytes.length, this.bits.length);
      if (end > start) this.bits.set(bytes.subarray(0, end - start), start);
    }
    const spare = this.bits.length * 8 - this.regionCount;
    if (spare > 0) this.bits[this.bits.length - 1] &= 0xff >> spare;
    this.setCount = 0;
    for (const byte of this.bits) this.setCount += POPCOUNT[byte];
  }
}
