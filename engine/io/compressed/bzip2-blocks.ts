// Where bzip2's blocks are in the compressed file, found without decoding them. A stream
// is "BZh1".."BZh9", then blocks, each beginning with the 48-bit magic 0x314159265359 and
// its 32-bit CRC, then the end-of-stream magic 0x177245385090 and the stream's combined
// CRC, padded to a byte; streams may follow one another (pbzip2, lbzip2, `cat`). Nothing
// is byte-aligned past the header: a magic may begin at any bit.
//
// The scan looks, for each of the 8 bit shifts, for the 5 whole bytes the shifted magic
// always has (Buffer.indexOf, native), then checks all 48 bits. A chance match inside
// compressed data is possible (2^-48 per bit and magic): bzip2.ts treats every mark as a
// boundary it may have to take back.

import type fs from 'node:fs';

export const BLOCK_MAGIC = 0x314159265359n;
export const END_MAGIC = 0x177245385090n;

/** A magic found in the file, and the 32-bit CRC after it (null: the file ends first). */
export interface Mark {
  /** Bit offset of the magic's first bit, from the start of the file. */
  bit: number;
  kind: 'block' | 'end';
  crc: number | null;
}

/** File bytes searched per step: the event loop gets a turn between steps. */
const STEP = 4 * 1024 * 1024;
/** Bytes a mark needs from its first byte: 7 for the magic at any shift, 4 more for the CRC. */
const SPAN = 11;

interface Pattern {
  kind: Mark['kind'];
  magic: bigint;
  shift: number;
  bytes: Buffer;
}

/** For each magic and bit shift, bytes 1..5 of the 7 the shifted magic spans. */
const PATTERNS: Pattern[] = (['block', 'end'] as const).flatMap((kind) => {
  const magic = kind === 'block' ? BLOCK_MAGIC : END_MAGIC;
  return [0, 1, 2, 3, 4, 5, 6, 7].map((shift) => {
    const spanned = Buffer.alloc(8);
    spanned.writeBigUInt64BE(magic << BigInt(16 - shift));
    return { kind, magic, shift, bytes: spanned.subarray(1, 6) };
  });
});

/** `count` (≤ 32) bits of `buf` from bit `bit`, most significant first; null past its end. */
export function bitsAt(buf: Uint8Array, bit: number, count: number): number | null {
  const last = (bit + count - 1) >>> 3;
  if (last >= buf.length) return null;
  let value = 0;
  for (let i = bit >>> 3; i <= last; i++) value = value * 256 + buf[i];
  const trailing = (last + 1) * 8 - (bit + count);
  return Math.floor(value / 2 ** trailing) % 2 ** count;
}

/** Marks in the file, in order, a step at a time, read as far as the reader needs. */
export class MarkScanner {
  /** Bytes of the file searched so far: every mark beginning before it is known. */
  scanned = 0;
  private readonly buffer = Buffer.allocUnsafe(STEP + SPAN);

  constructor(
    private readonly file: fs.promises.FileHandle,
    readonly fileSize: number,
  ) {}

  get done(): boolean {
    return this.scanned >= this.fileSize;
  }

  /** The marks whose first byte lies in the next step of the file, in order. */
  async next(): Promise<Mark[]> {
    const at = this.scanned;
    const want = Math.min(this.buffer.length, this.fileSize - at);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await this.file.read(this.buffer, got, want - got, at + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    const data = this.buffer.subarray(0, got);
    const ends = Math.min(STEP, got);
    this.scanned = at + ends;
    return marksIn(data, ends).map((m) => ({ ...m, bit: m.bit + at * 8 }));
  }
}

/** Marks whose first byte is before `ends` in `data`, bit offsets from its start. */
export function marksIn(data: Buffer, ends: number): Mark[] {
  const marks: Mark[] = [];
  for (const p of PATTERNS) {
    for (
      let i = data.indexOf(p.bytes, 1);
      i !== -1 && i - 1 < ends;
      i = data.indexOf(p.bytes, i + 1)
    ) {
      const bit = (i - 1) * 8 + p.shift;
      const high = bitsAt(data, bit, 24);
      const low = bitsAt(data, bit + 24, 24);
      if (high === null || low === null) continue;
      if (BigInt(high) * 2n ** 24n + BigInt(low) !== p.magic) continue;
      marks.push({ bit, kind: p.kind, crc: bitsAt(data, bit + 48, 32) });
    }
  }
  return marks.sort((a, b) => a.bit - b.bit);
}

/** Bytes of the stream singleBlockStream() makes of the block's bits [start, end). */
export function singleBlockStreamLength(start: number, end: number): number {
  return 4 + Math.ceil((end - start + 80) / 8);
}

/**
 * One block as a bzip2 stream of its own, byte-aligned, written into `out` (its first
 * singleBlockStreamLength() bytes): "BZh" + level, the block's bits [start, end) of `bytes`
 * (which begins at the byte holding bit `start`), the end magic, and the block's CRC as
 * the combined CRC (for one block it is the block's CRC).
 */
export function singleBlockStream(
  bytes: Uint8Array,
  start: number,
  end: number,
  level: number,
  out: Uint8Array,
): void {
  const shift = start & 7;
  const bits = end - start;
  const body = out.subarray(4, singleBlockStreamLength(start, end));
  out.set(Buffer.from(`BZh${level}`, 'latin1'));
  body.fill(0);
  const whole = bits >>> 3;
  for (let i = 0; i < whole; i++)
    body[i] = ((bytes[i] << shift) | (bytes[i + 1] >>> (8 - shift))) & 0xff;
  if (bits & 7) {
    const rest = ((bytes[whole] << shift) | ((bytes[whole + 1] ?? 0) >>> (8 - shift))) & 0xff;
    body[whole] = rest & (0xff << (8 - (bits & 7)));
  }
  const crc = bitsAt(bytes, shift + 48, 32) ?? 0;
  let at = putBits(body, bits, Number(END_MAGIC >> 24n), 24);
  at = putBits(body, at, Number(END_MAGIC & 0xffffffn), 24);
  putBits(body, at, crc, 32);
}

/** Writes `count` (≤ 32) bits of `value` at bit `bit` of `buf` (zeroed there); the bit after. */
function putBits(buf: Uint8Array, bit: number, value: number, count: number): number {
  for (let k = count - 1; k >= 0; k--, bit++) {
    if (Math.floor(value / 2 ** k) % 2) buf[bit >>> 3] |= 0x80 >>> (bit & 7);
  }
  return bit;
}
