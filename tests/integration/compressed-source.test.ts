// Compressed sources read from files made by the real tools (gzip, xz, zstd, bzip2, zip):
// read as the job reads (region-sized requests, several in flight, ascending), read from
// a gap (resume), detected by content, and refused with the path when damaged.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  detectCompression,
  openCompressedSource,
  type CompressedSource,
  type Compression,
} from '../../engine/io/compressed/index';
import { DeviceError } from '../../engine/io/device';
import { readRange, sha256, tempDir, writeMixedFile } from '../helpers/files';

const MIB = 1024 * 1024;
/** Not a multiple of the region size: the last region is short. */
const IMAGE_SIZE = 24 * MIB + 7 * 512;
const REGION = MIB;
const BATCH = 8 * REGION;
const IN_FLIGHT = 4;

interface Case {
  name: string;
  file: string;
  compression: Compression;
  /** The format states the uncompressed size. */
  sized: boolean;
}

let dir = '';
let image = '';
let imageHash = '';
let cleanup = (): void => undefined;
const cases: Case[] = [];
const file = (name: string): string => path.join(dir, name);

/** Runs a tool in the temp dir; its stdout is appended to `out` when given. */
function run(cmd: string, args: string[], out?: string): void {
  const fd = out === undefined ? 'ignore' : fs.openSync(out, 'a');
  try {
    execFileSync(cmd, args, { cwd: dir, stdio: ['ignore', fd, 'pipe'] });
  } finally {
    if (typeof fd === 'number') fs.closeSync(fd);
  }
}

function addCase(name: string, compression: Compression, sized: boolean, make: () => void): void {
  make();
  cases.push({ name, file: file(name), compression, sized });
}

before(() => {
  const tmp = tempDir('drivetwin-compressed-');
  dir = tmp.dir;
  cleanup = tmp.cleanup;
  image = file('image.img');
  writeMixedFile(image, IMAGE_SIZE, 11);
  imageHash = sha256(image);
  // Two halves, for files made of several members / frames / streams.
  const half = 10 * MIB + 512;
  fs.writeFileSync(file('part1'), readRange(image, 0, half));
  fs.writeFileSync(file('part2'), readRange(image, half, IMAGE_SIZE - half));

  addCase('image.img.gz', 'gzip', false, () =>
    run('gzip', ['-c', '-6', image], file('image.img.gz')),
  );
  addCase('members.img.gz', 'gzip', false, () => {
    run('gzip', ['-c', 'part1'], file('members.img.gz'));
    run('gzip', ['-c', 'part2'], file('members.img.gz'));
  });
  addCase('image.img.xz', 'xz', true, () => run('xz', ['-c', '-0', image], file('image.img.xz')));
  addCase('blocks.img.xz', 'xz', true, () =>
    run('xz', ['-c', '-0', '-T2', '--block-size=3MiB', image], file('blocks.img.xz')),
  );
  addCase('streams.img.xz', 'xz', true, () => {
    run('xz', ['-c', '-0', 'part1'], file('streams.img.xz'));
    run('xz', ['-c', '-0', '--check=crc32', 'part2'], file('streams.img.xz'));
  });
  addCase('image.img.zst', 'zstd', true, () =>
    run('zstd', ['-q', '-c', image], file('image.img.zst')),
  );
  addCase('long.img.zst', 'zstd', true, () =>
    run('zstd', ['-q', '-c', '--long', image], file('long.img.zst')),
  );
  addCase('frames.img.zst', 'zstd', true, () => {
    run('zstd', ['-q', '-c', 'part1'], file('frames.img.zst'));
    run('zstd', ['-q', '-c', 'part2'], file('frames.img.zst'));
  });
  addCase('nosize.img.zst', 'zstd', false, () =>
    run('zstd', ['-q', '-c', '--no-content-size', image], file('nosize.img.zst')),
  );
  addCase('image.img.bz2', 'bzip2', false, () =>
    run('bzip2', ['-c', '-9', image], file('image.img.bz2')),
  );
  addCase('image.zip', 'zip', true, () => run('zip', ['-q', 'image.zip', 'image.img']));
  addCase('stored.zip', 'zip', true, () => run('zip', ['-q', '-0', 'stored.zip', 'image.img']));
  addCase('zip64.zip', 'zip', true, () => run('zip', ['-q', '-fz', 'zip64.zip', 'image.img']));
  addCase('bundle.zip', 'zip', true, () => {
    fs.writeFileSync(file('README.txt'), 'Write image.img to a card.\n');
    fs.writeFileSync(file('small.bin'), Buffer.alloc(4096, 7));
    run('zip', ['-q', 'bundle.zip', 'README.txt', 'small.bin', 'image.img']);
  });
});

after(() => cleanup());

/** Reads from `start` to the end as the job does: BATCH-sized requests, IN_FLIGHT at once. */
async function readFrom(
  source: CompressedSource,
  start: number,
): Promise<{ hash: string; length: number }> {
  const hash = createHash('sha256');
  const inFlight: Array<Promise<Buffer>> = [];
  let next = start;
  let length = 0;
  let ended = false;
  const issue = (): void => {
    const buffer = Buffer.alloc(BATCH);
    const read = source.readAt(buffer, next).then((n) => buffer.subarray(0, n));
    read.catch(() => undefined); // awaited below, in order
    inFlight.push(read);
    next += BATCH;
  };
  for (let i = 0; i < IN_FLIGHT; i++) issue();
  while (inFlight.length > 0) {
    const data = await (inFlight.shift() as Promise<Buffer>);
    if (ended) {
      assert.equal(data.length, 0, 'a read after the end returns nothing');
      continue;
    }
    hash.update(data);
    length += data.length;
    if (data.length < BATCH) ended = true;
    else issue();
  }
  return { hash: hash.digest('hex'), length };
}

function hashOfRange(file: string, offset: number, length: number): string {
  return createHash('sha256')
    .update(readRange(file, offset, length))
    .digest('hex');
}

/** A DeviceError with this code that names the file. */
function damaged(file: string, code: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof DeviceError, `a DeviceError, not ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.ok(e.message.includes(file), `the message names ${file}: ${e.message}`);
    return true;
  };
}

async function readWhole(file: string): Promise<void> {
  const source = await openCompressedSource(file);
  try {
    await readFrom(source, 0);
  } finally {
    await source.close();
  }
}

describe('each compressed kind', () => {
  test('reads fully and byte-identically, with the size the format states', async (t) => {
    for (const c of cases) {
      await t.test(c.name, async () => {
        assert.equal(detectCompression(c.file), c.compression);
        const source = await openCompressedSource(c.file);
        try {
          assert.equal(source.compression, c.compression);
          assert.equal(source.kind, 'file');
          assert.equal(source.logicalBlockSize, 512);
          assert.equal(source.knownSize, c.sized ? IMAGE_SIZE : null);
          assert.equal(source.size, c.sized ? IMAGE_SIZE : Number.MAX_SAFE_INTEGER);
          assert.equal(source.compressedPosition, 0);
          const { hash, length } = await readFrom(source, 0);
          assert.equal(length, IMAGE_SIZE);
          assert.equal(hash, imageHash);
          assert.equal(source.compressedPosition, source.compressedSize);
        } finally {
          await source.close();
        }
      });
    }
  });

  test('a read after a gap (a resume) returns exactly the rest', async (t) => {
    const half = 12 * MIB;
    const secondHalf = hashOfRange(image, half, IMAGE_SIZE - half);
    for (const c of cases) {
      await t.test(c.name, async () => {
        const source = await openCompressedSource(c.file);
        try {
          const { hash, length } = await readFrom(source, half);
          assert.equal(length, IMAGE_SIZE - half);
          assert.equal(hash, secondHalf);
        } finally {
          await source.close();
        }
      });
    }
  });
});

describe('detection', () => {
  test('by content whatever the name; a plain image is not compressed', () => {
    for (const c of cases) {
      const renamed = file(`renamed-${c.compression}.img`);
      fs.copyFileSync(c.file, renamed);
      assert.equal(detectCompression(renamed), c.compression, `${c.name} named .img`);
      const bare = file(`bare-${c.compression}`);
      fs.renameSync(renamed, bare);
      assert.equal(detectCompression(bare), c.compression, `${c.name} with no extension`);
      fs.rmSync(bare);
    }
    assert.equal(detectCompression(image), null);
  });

  test('opens a renamed file by its content', async () => {
    const renamed = file('download');
    fs.copyFileSync(file('image.img.xz'), renamed);
    const source = await openCompressedSource(renamed);
    try {
      assert.equal(source.compression, 'xz');
      assert.equal((await readFrom(source, 0)).hash, imageHash);
    } finally {
      await source.close();
      fs.rmSync(renamed);
    }
  });

  test('a plain image named .gz is detected by name and refused on open', async () => {
    const named = file('plain.img.gz');
    fs.copyFileSync(image, named);
    assert.equal(detectCompression(named), 'gzip');
    await assert.rejects(openCompressedSource(named), damaged(named, 'ECORRUPT'));
    await assert.rejects(openCompressedSource(image), damaged(image, 'EUNSUPPORTED'));
  });
});

describe('reading rules', () => {
  test('concurrent requests issued out of order are served in ascending order', async () => {
    const source = await openCompressedSource(file('image.img.zst'));
    try {
      const late = Buffer.alloc(REGION);
      const early = Buffer.alloc(REGION);
      const reads = [source.readAt(late, 3 * REGION), source.readAt(early, REGION)];
      assert.deepEqual(await Promise.all(reads), [REGION, REGION]);
      assert.ok(early.equals(readRange(image, REGION, REGION)));
      assert.ok(late.equals(readRange(image, 3 * REGION, REGION)));
    } finally {
      await source.close();
    }
  });

  test('read() fails with EOF past the end; readAt() is short there', async () => {
    const source = await openCompressedSource(file('image.img.gz'));
    try {
      const tail = Buffer.alloc(4096);
      const at = IMAGE_SIZE - 1024;
      await assert.rejects(source.read(tail, at), damaged(file('image.img.gz'), 'EOF'));
      assert.equal(await source.readAt(tail, IMAGE_SIZE + MIB), 0);
    } finally {
      await source.close();
    }
    const again = await openCompressedSource(file('image.img.gz'));
    try {
      const tail = Buffer.alloc(4096);
      assert.equal(await again.readAt(tail, IMAGE_SIZE - 1024), 1024);
      assert.ok(tail.subarray(0, 1024).equals(readRange(image, IMAGE_SIZE - 1024, 1024)));
    } finally {
      await again.close();
    }
  });

  test('an offset before one already read is refused; writes are refused', async () => {
    const name = file('image.img.zst');
    const source = await openCompressedSource(name);
    try {
      await source.read(Buffer.alloc(REGION), 2 * REGION);
      await assert.rejects(source.readAt(Buffer.alloc(REGION), REGION), damaged(name, 'ESPIPE'));
      await assert.rejects(source.write(Buffer.alloc(512), 0), damaged(name, 'EROFS'));
      await assert.rejects(source.flush(), damaged(name, 'EROFS'));
      // The refusal does not disturb reading on.
      const next = Buffer.alloc(REGION);
      await source.read(next, 3 * REGION);
      assert.ok(next.equals(readRange(image, 3 * REGION, REGION)));
    } finally {
      await source.close();
    }
  });

  test('closing rejects the requests still queued', async () => {
    const name = file('image.img.xz');
    const source = await openCompressedSource(name);
    const far = source.readAt(Buffer.alloc(REGION), 20 * REGION);
    far.catch(() => undefined);
    await source.close();
    await assert.rejects(far, damaged(name, 'EBADF'));
  });

  test('the first MiB can be read again (the plan reads the partition table there first)', async (t) => {
    for (const c of cases) {
      await t.test(c.name, async () => {
        const source = await openCompressedSource(c.file);
        try {
          assert.equal(await source.readAt(Buffer.alloc(MIB), 0), MIB);
          // Again from byte 0, past the kept MiB: kept bytes, then the stream goes on.
          assert.equal((await readFrom(source, 0)).hash, imageHash);
          await assert.rejects(source.readAt(Buffer.alloc(512), 512), damaged(c.file, 'ESPIPE'));
        } finally {
          await source.close();
        }
      });
    }
  });

  test('closing an xz or bzip2 source while its threads decode ends them, and nothing else', () => {
    // The threads stop at their next step: one ended inside liblzma's binding aborts the
    // process. A child opens and closes sources mid-block, then must end by itself.
    const index = path.join(__dirname, '../../engine/io/compressed/index.js');
    const script = `
      const { openCompressedSource } = require(${JSON.stringify(index)});
      (async () => {
        for (let round = 0; round < 12; round++) {
          for (const name of ['blocks.img.xz', 'image.img.xz', 'image.img.bz2']) {
            const source = await openCompressedSource(name);
            if (round % 3 > 0) await source.readAt(Buffer.alloc(${MIB} * round), (round % 2) * ${4 * MIB});
            await source.close();
          }
        }
        console.log('closed');
      })();`;
    const out = execFileSync(process.execPath, ['-e', script], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(out.trim(), 'closed');
  });

  test('two xz sources can be read at the same time', async () => {
    const a = await openCompressedSource(file('image.img.xz'));
    const b = await openCompressedSource(file('blocks.img.xz'));
    try {
      const [ha, hb] = await Promise.all([readFrom(a, 0), readFrom(b, 0)]);
      assert.equal(ha.hash, imageHash);
      assert.equal(hb.hash, imageHash);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('zip entries', () => {
  test('the image entry is picked among other files', async () => {
    const source = await openCompressedSource(file('bundle.zip'));
    try {
      assert.equal(source.knownSize, IMAGE_SIZE);
    } finally {
      await source.close();
    }
  });

  test('a zip without an image is refused, listing its entries', async () => {
    const name = file('docs.zip');
    fs.writeFileSync(file('notes.txt'), 'notes\n');
    run('zip', ['-q', 'docs.zip', 'README.txt', 'notes.txt']);
    await assert.rejects(openCompressedSource(name), (e: unknown) => {
      assert.ok(damaged(name, 'EUNSUPPORTED')(e));
      assert.match((e as Error).message, /README\.txt, notes\.txt/);
      return true;
    });
  });
});

test('an xz file with a SHA-256 check is read and checked like any other', async () => {
  const name = file('sha256.img.xz');
  run('xz', ['-c', '-0', '--check=sha256', image], name);
  const source = await openCompressedSource(name);
  try {
    assert.equal((await readFrom(source, 0)).hash, imageHash);
  } finally {
    await source.close();
  }
});

test('a resumed .xz read starts decompressing at the block holding its first byte', async () => {
  // blocks.img.xz: 3 MiB blocks, 9 of them; 12 MiB is where the fifth begins.
  const half = 12 * MIB;
  const source = await openCompressedSource(file('blocks.img.xz'));
  try {
    const { hash } = await readFrom(source, half + 5 * 512);
    assert.equal(hash, hashOfRange(image, half + 5 * 512, IMAGE_SIZE - half - 5 * 512));
    assert.equal(
      source.blocksDecompressed,
      5,
      'the four blocks before 12 MiB are not decompressed',
    );
    assert.equal(source.compressedPosition, source.compressedSize);
  } finally {
    await source.close();
  }
  const whole = await openCompressedSource(file('blocks.img.xz'));
  try {
    await readFrom(whole, 0);
    assert.equal(whole.blocksDecompressed, 9);
  } finally {
    await whole.close();
  }
});

describe('damaged files', () => {
  const kinds: Array<[string, Compression]> = [
    ['image.img.gz', 'gzip'],
    ['image.img.xz', 'xz'],
    ['image.img.zst', 'zstd'],
    ['image.img.bz2', 'bzip2'],
    ['image.zip', 'zip'],
  ];

  test('a truncated file fails with its path, on open or while reading', async (t) => {
    for (const [name] of kinds) {
      await t.test(name, async () => {
        const cut = file(`cut-${name}`);
        const whole = fs.readFileSync(file(name));
        fs.writeFileSync(cut, whole.subarray(0, Math.floor(whole.length * 0.6)));
        await assert.rejects(readWhole(cut), damaged(cut, 'ECORRUPT'));
      });
    }
  });

  test('flipped bytes in the middle fail with the path and the offset reached', async (t) => {
    for (const [name] of kinds) {
      await t.test(name, async () => {
        const bad = file(`bad-${name}`);
        const data = fs.readFileSync(file(name));
        const at = Math.floor(data.length / 2);
        for (let i = at; i < at + 16; i++) data[i] ^= 0x5a;
        fs.writeFileSync(bad, data);
        await assert.rejects(readWhole(bad), (e: unknown) => {
          assert.ok(damaged(bad, 'ECORRUPT')(e));
          const err = e as DeviceError;
          assert.ok(err.offset <= IMAGE_SIZE, `offset ${err.offset} within the image`);
          return true;
        });
      });
    }
  });
});
