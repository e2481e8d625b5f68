// imageSize(): the size of the image in a file, from headers, trailers and indexes
// alone, on files made by the real tools (xz, gzip, zstd, bzip2, zip). Exact where the
// format states it — and then the same figure a source opened on the file takes — else an
// estimate flagged as one.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import {
  imageSize,
  openCompressedSource,
  type Compression,
  type ImageSize,
} from '../../engine/io/compressed/index';
import { DeviceError } from '../../engine/io/device';
import { readRange, tempDir, writeMixedFile } from '../helpers/files';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
/** Random with zero MiBs between: compresses to about 2/3, over 4 MiB. */
const MIXED_SIZE = 8 * MIB + 7 * 512;
/** Mostly zeros: a few hundred KiB compressed. */
const SPARSE_SIZE = 20 * MIB + 3 * 512;

let dir = '';
let cleanup = (): void => undefined;
const file = (name: string): string => path.join(dir, name);

/** Runs a tool in the temp dir; its stdout is appended to `out` when given. */
function run(cmd: string, args: string[], out?: string): string {
  const fd = out === undefined ? 'pipe' : fs.openSync(out, 'a');
  try {
    return String(execFileSync(cmd, args, { cwd: dir, stdio: ['ignore', fd, 'pipe'] }) ?? '');
  } finally {
    if (typeof fd === 'number') fs.closeSync(fd);
  }
}

before(() => {
  const tmp = tempDir('drivetwin-size-');
  dir = tmp.dir;
  cleanup = tmp.cleanup;
  writeMixedFile(file('mixed.img'), MIXED_SIZE, 5);
  const sparse = Buffer.alloc(SPARSE_SIZE);
  readRange(file('mixed.img'), 0, MIB).copy(sparse, 4 * MIB);
  sparse.fill(0x5a, SPARSE_SIZE - 512);
  fs.writeFileSync(file('sparse.img'), sparse);
  fs.writeFileSync(file('part1'), readRange(file('mixed.img'), 0, 3 * MIB + 512));
  fs.writeFileSync(file('part2'), readRange(file('mixed.img'), 3 * MIB + 512, MIXED_SIZE));
});

after(() => cleanup());

/** imageSize(), and the same figure from a source opened on the file (one code path). */
async function sized(name: string, compression: Compression): Promise<ImageSize> {
  const got = await imageSize(file(name));
  assert.equal(got.compression, compression);
  const source = await openCompressedSource(file(name));
  try {
    assert.equal(
      source.knownSize,
      got.known ? got.size : null,
      'the source knows what imageSize knows',
    );
  } finally {
    await source.close();
  }
  return got;
}

function exact(got: ImageSize, size: number): void {
  assert.deepEqual({ size: got.size, known: got.known }, { size, known: true });
}

describe('the size is exact where the format states it', () => {
  test('xz: one block, several blocks (xz -T2), several streams', async () => {
    run('xz', ['-c', '-0', 'mixed.img'], file('one.xz'));
    run('xz', ['-c', '-0', '-T2', '--block-size=1MiB', 'mixed.img'], file('blocks.xz'));
    run('xz', ['-c', '-0', 'part1'], file('streams.xz'));
    run('xz', ['-c', '-0', '--check=crc32', 'part2'], file('streams.xz'));
    const list = run('xz', ['--robot', '--list', file('blocks.xz')]);
    const blocks = Number(/^file\t\d+\t(\d+)/m.exec(list)?.[1]);
    assert.ok(blocks > 1, `xz -T2 made ${blocks} blocks`);
    for (const name of ['one.xz', 'blocks.xz', 'streams.xz']) {
      exact(await sized(name, 'xz'), MIXED_SIZE);
    }
  });

  test('zip: deflated, stored, zip64, and the image among other files', async () => {
    run('zip', ['-q', 'deflated.zip', 'mixed.img']);
    run('zip', ['-q', '-0', 'stored.zip', 'mixed.img']);
    run('zip', ['-q', '-fz', 'zip64.zip', 'mixed.img']);
    fs.writeFileSync(file('README.txt'), 'Write mixed.img to a card.\n');
    fs.writeFileSync(file('small.bin'), Buffer.alloc(4096, 7));
    run('zip', ['-q', 'bundle.zip', 'README.txt', 'small.bin', 'mixed.img']);
    for (const name of ['deflated.zip', 'stored.zip', 'zip64.zip', 'bundle.zip']) {
      exact(await sized(name, 'zip'), MIXED_SIZE);
    }
  });

  test('zstd: frame headers, over several frames and with --long', async () => {
    run('zstd', ['-q', '-c', 'mixed.img'], file('one.zst'));
    run('zstd', ['-q', '-c', '--long', 'mixed.img'], file('long.zst'));
    run('zstd', ['-q', '-c', 'part1'], file('frames.zst'));
    run('zstd', ['-q', '-c', 'part2'], file('frames.zst'));
    for (const name of ['one.zst', 'long.zst', 'frames.zst']) {
      exact(await sized(name, 'zstd'), MIXED_SIZE);
    }
  });

  test('zstd: the seek table, when the frames do not state their sizes', async () => {
    const parts = ['part1', 'part2'];
    const frames = parts.map((part) => {
      const out = file(`${part}.nosize.zst`);
      run('zstd', ['-q', '-c', '--no-content-size', part], out);
      return { compressed: fs.statSync(out).size, size: fs.statSync(file(part)).size, out };
    });
    const seekable = file('seekable.zst');
    fs.writeFileSync(seekable, Buffer.concat(frames.map((f) => fs.readFileSync(f.out))));
    // Without the table, nothing states the size.
    assert.equal((await sized('seekable.zst', 'zstd')).known, false);
    fs.appendFileSync(seekable, seekTable(frames));
    exact(await sized('seekable.zst', 'zstd'), MIXED_SIZE);
    // zstd itself reads the file whole (it skips the table).
    const restored = file('restored.img');
    run('zstd', ['-q', '-d', '-c', seekable], restored);
    assert.equal(fs.statSync(restored).size, MIXED_SIZE);
  });

  test('gzip: one member too small to hold 4 GiB states it in ISIZE', async () => {
    run('gzip', ['-c', '-9', 'sparse.img'], file('sparse.img.gz'));
    assert.ok(fs.statSync(file('sparse.img.gz')).size < 4 * MIB);
    exact(await sized('sparse.img.gz', 'gzip'), SPARSE_SIZE);
    // The source, knowing the size, reads to it and checks the stream ends there.
    const source = await openCompressedSource(file('sparse.img.gz'));
    try {
      const buffer = Buffer.alloc(4 * MIB);
      let read = 0;
      for (let n = buffer.length; n === buffer.length; read += n) {
        n = await source.readAt(buffer, read);
      }
      assert.equal(read, SPARSE_SIZE);
    } finally {
      await source.close();
    }
  });

  test('a plain image: its length', async () => {
    assert.deepEqual(await imageSize(file('mixed.img')), {
      size: MIXED_SIZE,
      known: true,
      compression: null,
    });
  });
});

describe('otherwise an estimate, and said to be one', () => {
  test('gzip too large to rule out 4 GiB: ISIZE placed above the compressed size', async () => {
    run('gzip', ['-c', 'mixed.img'], file('mixed.img.gz'));
    assert.ok(fs.statSync(file('mixed.img.gz')).size > 4.2e6, 'too large to rule out 4 GiB');
    const got = await sized('mixed.img.gz', 'gzip');
    // Below 4 GiB the estimate is right; it is still not known to be.
    assert.deepEqual({ size: got.size, known: got.known }, { size: MIXED_SIZE, known: false });
  });

  test('gzip of several members: ISIZE is the last one only', async () => {
    run('gzip', ['-c', '-9', 'sparse.img'], file('members.gz'));
    run('gzip', ['-c', '-9', 'sparse.img'], file('members.gz'));
    const got = await sized('members.gz', 'gzip');
    assert.equal(got.known, false);
    assert.ok(got.size <= 2 * SPARSE_SIZE, `${got.size} is no more than the image`);
  });

  test('gzip of one member over 4 GiB: ISIZE has wrapped, and is not taken as the size', async () => {
    // The construction, at a small scale, is a gzip file that gzip itself accepts.
    assert.equal(writeZerosGzip(file('small-zeros.gz'), 2), 128 * MIB);
    run('gzip', ['-t', file('small-zeros.gz')]);
    const name = 'huge.img.gz';
    const size = writeZerosGzip(file(name), 65);
    assert.equal(size, 4 * GIB + 64 * MIB);
    const got = await sized(name, 'gzip');
    assert.equal(got.known, false);
    assert.ok(got.size <= size, `${got.size} is no more than ${size}`);
  });

  test('bzip2, and zstd whose frames do not state their sizes: the compressed size', async () => {
    run('bzip2', ['-c', '-9', 'mixed.img'], file('mixed.img.bz2'));
    run('zstd', ['-q', '-c', '--no-content-size', 'mixed.img'], file('nosize.zst'));
    for (const [name, compression] of [
      ['mixed.img.bz2', 'bzip2'],
      ['nosize.zst', 'zstd'],
    ] as const) {
      const got = await sized(name, compression);
      assert.deepEqual(got, { size: fs.statSync(file(name)).size, known: false, compression });
    }
  });
});

describe('refusals are those of opening', () => {
  test('a missing file, and a plain image named .xz', async () => {
    await assert.rejects(imageSize(file('missing.img')), (e: unknown) => {
      assert.ok(e instanceof DeviceError);
      assert.equal(e.code, 'ENOENT');
      return true;
    });
    fs.copyFileSync(file('mixed.img'), file('plain.img.xz'));
    await assert.rejects(imageSize(file('plain.img.xz')), (e: unknown) => {
      assert.ok(e instanceof DeviceError);
      assert.equal(e.code, 'ECORRUPT');
      return true;
    });
  });

  test('a truncated xz file', async () => {
    run('xz', ['-c', '-0', 'sparse.img'], file('cut.xz'));
    fs.truncateSync(file('cut.xz'), Math.floor(fs.statSync(file('cut.xz')).size * 0.6));
    await assert.rejects(imageSize(file('cut.xz')), (e: unknown) => {
      assert.ok(e instanceof DeviceError);
      assert.equal(e.code, 'ECORRUPT');
      assert.ok(e.message.includes(file('cut.xz')));
      return true;
    });
  });
});

/** zstd's seekable format: per frame compressed and decompressed size, then count, descriptor, magic. */
function seekTable(frames: Array<{ compressed: number; size: number }>): Buffer {
  const content = frames.length * 8 + 9;
  const table = Buffer.alloc(8 + content);
  table.writeUInt32LE(0x184d2a5e, 0);
  table.writeUInt32LE(content, 4);
  frames.forEach((f, i) => {
    table.writeUInt32LE(f.compressed, 8 + i * 8);
    table.writeUInt32LE(f.size, 12 + i * 8);
  });
  table.writeUInt32LE(frames.length, 8 + frames.length * 8);
  table.writeUInt8(0, 12 + frames.length * 8);
  table.writeUInt32LE(0x8f92eab1, 13 + frames.length * 8);
  return table;
}

/**
 * One gzip member of `chunks` × 64 MiB of zeros, built with zlib in seconds (gzip itself
 * takes a minute): each chunk is deflated once, with a full flush so that its bytes stand
 * alone, and repeated. Returns the image size.
 */
function writeZerosGzip(out: string, chunks: number): number {
  const zeros = Buffer.alloc(64 * MIB);
  const chunk = zlib.deflateRawSync(zeros, { level: 9, finishFlush: zlib.constants.Z_FULL_FLUSH });
  const header = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  const finalBlock = Buffer.from([0x03, 0x00]); // an empty final block (fixed Huffman)
  let crc = 0;
  for (let i = 0; i < chunks; i++) crc = zlib.crc32(zeros, crc);
  const size = chunks * zeros.length;
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(size % 2 ** 32, 4);
  const fd = fs.openSync(out, 'w');
  try {
    fs.writeSync(fd, header);
    for (let i = 0; i < chunks; i++) fs.writeSync(fd, chunk);
    fs.writeSync(fd, finalBlock);
    fs.writeSync(fd, trailer);
  } finally {
    fs.closeSync(fd);
  }
  return size;
}
