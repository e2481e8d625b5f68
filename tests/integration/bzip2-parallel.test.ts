// bzip2 sources decoded block by block on several threads with the system's libbzip2,
// from files made by the real bzip2: byte-identical for -9 and -1 files, concatenated
// streams, an empty one and blocks of zeros that expand to tens of MB; the work shared
// between threads; a mark found by chance inside a block taken back; a damaged, truncated
// or reordered file refused with its path.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { bitsAt, MarkScanner, type Mark } from '../../engine/io/compressed/bzip2-blocks';
import { Bzip2Decoder } from '../../engine/io/compressed/bzip2-decoder';
import { openCompressedSource, type CompressedSource } from '../../engine/io/compressed/index';
import { CompressedImage } from '../../engine/io/compressed/source';
import { LocalFile } from '../../engine/io/source-file';
import { DeviceError } from '../../engine/io/device';
import { readRange, sha256, tempDir, writeRandomFile } from '../helpers/files';

const MIB = 1024 * 1024;
/** Random, zeros (a run past 46 MB: whole blocks of zeros), random, zeros, random, odd tail. */
const LAYOUT: Array<[kind: 'random' | 'zeros', bytes: number]> = [
  ['random', 6 * MIB],
  ['zeros', 56 * MIB],
  ['random', 5 * MIB],
  ['zeros', 3 * MIB],
  ['random', 2 * MIB + 12345],
];
const IMAGE_SIZE = LAYOUT.reduce((sum, [, bytes]) => sum + bytes, 0);

let dir = '';
let image = '';
let imageHash = '';
let cleanup = (): void => undefined;
const file = (name: string): string => path.join(dir, name);

function sh(command: string): void {
  execFileSync('sh', ['-c', command], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

before(() => {
  const tmp = tempDir('drivetwin-bzip2-');
  dir = tmp.dir;
  cleanup = tmp.cleanup;
  image = file('mixed.img');
  const fd = fs.openSync(image, 'w');
  LAYOUT.forEach(([kind, bytes], i) => {
    const part = kind === 'random' ? file(`part${i}`) : null;
    if (part) writeRandomFile(part, bytes, 40 + i);
    fs.writeSync(fd, part ? fs.readFileSync(part) : Buffer.alloc(bytes));
  });
  fs.closeSync(fd);
  imageHash = sha256(image);
  sh('bzip2 -9 -c mixed.img > mixed-9.img.bz2');
  sh('bzip2 -1 -c mixed.img > mixed-1.img.bz2');
  // Two streams of different levels, one after the other.
  const split = 20 * MIB + 777;
  fs.writeFileSync(file('head'), readRange(image, 0, split));
  fs.writeFileSync(file('tail'), readRange(image, split, IMAGE_SIZE - split));
  sh('bzip2 -1 -c head > a.bz2 && bzip2 -9 -c tail > b.bz2 && cat a.bz2 b.bz2 > cat.img.bz2');
  sh('bzip2 -c < /dev/null > empty.img.bz2');
});

after(() => cleanup());

/** Reads from 0 to the end in 4 MiB requests, two in flight, as the job does. */
async function readAll(source: CompressedSource): Promise<{ hash: string; length: number }> {
  const hash = createHash('sha256');
  let length = 0;
  const request = (at: number) => {
    const buffer = Buffer.alloc(4 * MIB);
    const read = source.readAt(buffer, at).then((n) => buffer.subarray(0, n));
    read.catch(() => undefined);
    return read;
  };
  let next = request(0);
  for (let at = 0; ; at += 4 * MIB) {
    const following = request(at + 4 * MIB);
    const data = await next;
    hash.update(data);
    length += data.length;
    if (data.length < 4 * MIB) {
      await following;
      break;
    }
    next = following;
  }
  return { hash: hash.digest('hex'), length };
}

async function readWhole(name: string): Promise<{ hash: string; length: number; lanes: number[] }> {
  const source = await openCompressedSource(name);
  try {
    const read = await readAll(source);
    assert.equal(source.compressedPosition, source.compressedSize, 'every compressed byte counted');
    return { ...read, lanes: [...(source.blocksPerLane ?? [])] };
  } finally {
    await source.close();
  }
}

/** A DeviceError ECORRUPT naming the file and the decompressed offset it failed at. */
function corrupt(name: string, detail?: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof DeviceError, `a DeviceError, not ${String(e)}`);
    assert.equal(e.code, 'ECORRUPT', e.message);
    assert.ok(e.message.includes(name), `the message names ${name}: ${e.message}`);
    assert.ok(e.offset >= 0 && e.offset <= IMAGE_SIZE, `offset ${e.offset} within the image`);
    assert.ok(e.message.includes(`after ${e.offset} decompressed bytes`), e.message);
    if (detail) assert.match(e.message, detail);
    return true;
  };
}

/** Every mark of a file, in order. */
async function marksOf(name: string): Promise<Mark[]> {
  const handle = await fs.promises.open(name, 'r');
  try {
    const scanner = new MarkScanner(handle, (await handle.stat()).size);
    const marks: Mark[] = [];
    while (!scanner.done) marks.push(...(await scanner.next()));
    return marks;
  } finally {
    await handle.close();
  }
}

test('a bzip2 -9 image with blocks of zeros reads byte-identically, decoded on several threads', async () => {
  const name = file('mixed-9.img.bz2');
  const marks = await marksOf(name);
  const blocks = marks.filter((m) => m.kind === 'block').length;
  assert.ok(blocks >= 15, `many blocks: ${blocks}`);
  assert.deepEqual(
    marks.filter((m) => m.kind === 'end'),
    [marks[marks.length - 1]],
    'one stream end, the last mark',
  );
  const { hash, length, lanes } = await readWhole(name);
  assert.equal(length, IMAGE_SIZE);
  assert.equal(hash, imageHash);
  assert.equal(
    lanes.reduce((a, b) => a + b, 0),
    blocks,
  );
  const threads = Math.min(os.availableParallelism(), 4);
  assert.equal(lanes.length, threads);
  if (threads >= 2) {
    assert.ok(lanes.filter((n) => n > 0).length >= 2, `blocks per thread: ${lanes.join(', ')}`);
  }
});

test('bzip2 -1 (small blocks), concatenated streams of different levels and an empty file', async () => {
  for (const name of ['mixed-1.img.bz2', 'cat.img.bz2']) {
    const { hash, length } = await readWhole(file(name));
    assert.equal(length, IMAGE_SIZE, name);
    assert.equal(hash, imageHash, name);
  }
  const empty = await readWhole(file('empty.img.bz2'));
  assert.equal(empty.length, 0);
});

test('a mark found by chance inside a block is taken back: the block is decoded whole', async () => {
  const name = file('mixed-1.img.bz2');
  const real = (await marksOf(name)).filter((m) => m.kind === 'block').length;
  // Chance marks in the middle of every third block, of both kinds, with CRCs of nothing.
  let added = 0;
  let seen = 0;
  const withChanceMarks = (handle: fs.promises.FileHandle, size: number) => {
    const scanner = new MarkScanner(handle, size);
    return {
      get done() {
        return scanner.done;
      },
      get scanned() {
        return scanner.scanned;
      },
      async next(): Promise<Mark[]> {
        const found = await scanner.next();
        const out: Mark[] = [];
        found.forEach((m, i) => {
          out.push(m);
          const after = found[i + 1];
          if (m.kind !== 'block' || !after || seen++ % 3 !== 1) return;
          const kind = added++ % 2 === 0 ? 'block' : 'end';
          out.push({ bit: Math.floor((m.bit + after.bit) / 2), kind, crc: 0x12345678 });
        });
        return out;
      },
    };
  };
  const size = fs.statSync(name).size;
  const source = new CompressedImage(LocalFile.open(name), 'bzip2', {
    knownSize: null,
    compressedSize: size,
    decoder: () => new Bzip2Decoder(name, size, 2, withChanceMarks),
  });
  try {
    const { hash, length } = await readAll(source);
    assert.ok(added >= 3, `chance marks added: ${added}`);
    assert.equal(length, IMAGE_SIZE);
    assert.equal(hash, imageHash);
    assert.ok((source.blocksDecompressed ?? 0) > real, 'the cut blocks were decoded again');
  } finally {
    await source.close();
  }
});

test('a flipped byte inside a block fails with the path and the offset reached', async () => {
  const name = file('bad.img.bz2');
  const data = fs.readFileSync(file('mixed-9.img.bz2'));
  const blocks = (await marksOf(file('mixed-9.img.bz2'))).filter((m) => m.kind === 'block');
  // In the middle of the last block of random data before the long zero run.
  const at = Math.floor((blocks[3].bit + blocks[4].bit) / 16);
  data[at] ^= 0x10;
  fs.writeFileSync(name, data);
  await assert.rejects(readWhole(name), (e: unknown) => {
    assert.ok(corrupt(name)(e));
    assert.ok((e as DeviceError).offset >= 3 * 890_000, `three whole blocks came first`);
    return true;
  });
});

test('a truncated file fails, cut in a block, before the stream end or in the next header', async () => {
  const whole = fs.readFileSync(file('mixed-9.img.bz2'));
  const streams = fs.readFileSync(file('cat.img.bz2'));
  const first = fs.statSync(file('a.bz2')).size;
  for (const [label, data] of [
    ['in a block', whole.subarray(0, Math.floor(whole.length * 0.6))],
    ['before the stream end', whole.subarray(0, whole.length - 10)],
    ["in the second stream's header", streams.subarray(0, first + 2)],
  ] as const) {
    const name = file(`cut-${data.length}.img.bz2`);
    fs.writeFileSync(name, data);
    await assert.rejects(readWhole(name), corrupt(name), label);
  }
});

test("two blocks swapped, each intact, fail on the stream's combined CRC", async () => {
  const source = file('mixed-1.img.bz2');
  const name = file('swapped.img.bz2');
  const data = fs.readFileSync(source);
  const marks = await marksOf(source);
  const [, b1, b2, b3] = marks;
  const out = new BitWriter(data.length + 16);
  out.copy(data, 0, b1.bit); // header and block 0
  out.copy(data, b2.bit, b3.bit);
  out.copy(data, b1.bit, b2.bit);
  out.copy(data, b3.bit, data.length * 8);
  fs.writeFileSync(name, out.bytes());
  assert.notEqual(bitsAt(data, b1.bit + 48, 32), bitsAt(data, b2.bit + 48, 32));
  await assert.rejects(readWhole(name), corrupt(name, /CRC doesn't match its blocks'/));
});

/** Bits appended one after another, from any bit offset of a buffer. */
class BitWriter {
  private readonly buf: Buffer;
  private bit = 0;

  constructor(bytes: number) {
    this.buf = Buffer.alloc(bytes);
  }

  /** Bits [from, to) of `src`. */
  copy(src: Buffer, from: number, to: number): void {
    for (let b = from; b < to; b++) {
      if (src[b >>> 3] & (0x80 >>> (b & 7))) this.buf[this.bit >>> 3] |= 0x80 >>> (this.bit & 7);
      this.bit += 1;
    }
  }

  bytes(): Buffer {
    return this.buf.subarray(0, Math.ceil(this.bit / 8));
  }
}
