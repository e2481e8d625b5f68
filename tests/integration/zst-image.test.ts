// The compressed image destination (.img.zst): plain `zstd -d` restores it, its
// seek table describes its frames, it survives being abandoned or killed -9 with
// every committed byte kept, and it resumes only on a frame boundary.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { xxhash64 } from 'hash-wasm';
import { DeviceError } from '../../engine/io/device';
import { DEFAULT_FRAME_BYTES, ZstImage, ZstResumeError } from '../../engine/io/zst-image';
import { scanZst } from '../../engine/io/zst-scan';
import { sha256, tempDir, writeMixedFile } from '../helpers/files';

const MIB = 1024 * 1024;
const REGION = MIB;

function setUp(t: TestContext, prefix: string): (name: string) => string {
  const tmp = tempDir(`drivetwin-zst-${prefix}-`);
  t.after(() => tmp.cleanup());
  return (name) => path.join(tmp.dir, name);
}

/** A mixed (random + zero MiB) image on disk and in memory. */
function mixedImage(file: string, size: number, seed: number): Buffer {
  writeMixedFile(file, size, seed);
  return fs.readFileSync(file);
}

/** Writes image[from, to) region by region, flushing every `flushEvery` bytes; returns the last flushed offset. */
async function writeRange(
  z: ZstImage,
  image: Buffer,
  from: number,
  to: number,
  flushEvery = 0,
): Promise<number> {
  let committed = from;
  for (let off = from; off < to; off += REGION) {
    const end = Math.min(off + REGION, to);
    await z.write(image.subarray(off, end), off);
    if (flushEvery > 0 && (end - from) % flushEvery === 0) {
      await z.flush();
      committed = end;
    }
  }
  return committed;
}

/** `zstd -d` of `zst` into a file; returns its sha256. */
function restoredSha(zst: string, out: string): string {
  const fd = fs.openSync(out, 'w');
  try {
    execFileSync('zstd', ['-d', '-c', '-q', zst], { stdio: ['ignore', fd, 'pipe'] });
  } finally {
    fs.closeSync(fd);
  }
  return sha256(out);
}

interface SeekEntry {
  compressed: number;
  size: number;
  checksum: number;
}

/** Parses the seekable-format seek table at the end of `file`. */
function readSeekTable(file: string): { entries: SeekEntry[]; tableAt: number } {
  const buf = fs.readFileSync(file);
  assert.equal(buf.readUInt32LE(buf.length - 4), 0x8f92eab1, 'seekable footer magic');
  const count = buf.readUInt32LE(buf.length - 9);
  assert.equal(buf[buf.length - 5], 0x80, 'descriptor: checksums present');
  const content = count * 12 + 9;
  const tableAt = buf.length - 8 - content;
  assert.equal(buf.readUInt32LE(tableAt), 0x184d2a5e, 'seek table skippable magic');
  assert.equal(buf.readUInt32LE(tableAt + 4), content, 'seek table frame size');
  const entries: SeekEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = tableAt + 8 + i * 12;
    entries.push({
      compressed: buf.readUInt32LE(at),
      size: buf.readUInt32LE(at + 4),
      checksum: buf.readUInt32LE(at + 8),
    });
  }
  return { entries, tableAt };
}

test('a 64 MiB mixed image written in regions with flushes: zstd -d restores it, the seek table lists every frame', async (t) => {
  const file = setUp(t, 'full');
  const size = 64 * MIB;
  const image = mixedImage(file('src.img'), size, 1);
  const zst = file('backup.img.zst');

  const z = ZstImage.create(zst, size);
  assert.equal(z.size, size);
  assert.equal(z.kind, 'file');
  const started = performance.now();
  await writeRange(z, image, 0, size, 3 * MIB);
  await z.close();
  const seconds = (performance.now() - started) / 1000;
  t.diagnostic(
    `${(size / MIB / seconds).toFixed(0)} MiB/s at the default level, ratio ` +
      `${(fs.statSync(zst).size / size).toFixed(3)}`,
  );

  assert.equal(restoredSha(zst, file('restored.img')), sha256(file('src.img')));
  const list = spawnSync('zstd', ['-l', '-v', zst], { encoding: 'utf8' });
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /Skippable Frames: 1/);
  assert.match(list.stdout, /Decompressed Size: .*\(67108864 B\)/);
  assert.match(list.stdout, /Check: XXH64/);
  assert.equal(ZstImage.committedBytes(zst), size);

  // The seek table: sizes add up, checksums are XXH64 of each frame's content.
  const { entries, tableAt } = readSeekTable(zst);
  assert.equal(
    entries.reduce((n, e) => n + e.compressed, 0),
    tableAt,
  );
  assert.equal(
    entries.reduce((n, e) => n + e.size, 0),
    size,
  );
  let at = 0;
  for (const e of entries) {
    const digest = await xxhash64(image.subarray(at, at + e.size));
    assert.equal(e.checksum, parseInt(digest.slice(8), 16), `checksum of the frame at ${at}`);
    // Frames end at flushes (every 3 MiB) and at multiples of the frame size.
    const end = at + e.size;
    assert.ok(
      end % (3 * MIB) === 0 || end % DEFAULT_FRAME_BYTES === 0 || end === size,
      `frame end ${end}`,
    );
    at = end;
  }

  // Without the table, walking the frames finds the same ones, each stating its size.
  const bare = file('bare.zst');
  fs.copyFileSync(zst, bare);
  fs.truncateSync(bare, tableAt);
  const walked = scanZst(bare);
  assert.deepEqual(
    walked.frames.map((f) => [f.compressedSize, f.size, f.checksum]),
    entries.map((e) => [e.compressed, e.size, e.checksum]),
  );
  assert.ok(walked.frames.every((f) => f.sizeInHeader));
});

test('abandoned without close, tail torn: committed bytes stay; resume at the commit point completes the image', async (t) => {
  const file = setUp(t, 'abandon');
  const size = 40 * MIB;
  const image = mixedImage(file('src.img'), size, 2);
  const zst = file('backup.img.zst');

  const z = ZstImage.create(zst, size, { frameBytes: 4 * MIB });
  await writeRange(z, image, 0, 18 * MIB);
  await z.flush(); // the commit point
  const committed = 18 * MIB;
  await writeRange(z, image, committed, 27 * MIB); // never flushed
  // Abandoned: no close. Let frames already handed to the compressor land, as a
  // process killed a moment later would have, then tear the last one in half.
  await new Promise((r) => setTimeout(r, 500));
  const before = scanZst(zst);
  const last = before.frames[before.frames.length - 1];
  assert.ok(before.frames.length > 0);
  fs.truncateSync(zst, last.fileOffset + Math.floor(last.compressedSize / 2));

  const held = ZstImage.committedBytes(zst);
  assert.ok(held >= committed, `committedBytes ${held} < last committed ${committed}`);

  const resumed = ZstImage.resume(zst, size, committed, { frameBytes: 4 * MIB });
  await writeRange(resumed, image, committed, size, 5 * MIB);
  await resumed.close();
  assert.equal(restoredSha(zst, file('restored.img')), sha256(file('src.img')));
  assert.equal(ZstImage.committedBytes(zst), size);
  readSeekTable(zst);
});

test('resuming where no frame ends is refused, naming the last boundary', async (t) => {
  const file = setUp(t, 'boundary');
  const size = 16 * MIB;
  const image = mixedImage(file('src.img'), size, 3);
  const zst = file('backup.img.zst');

  // Frames end at 4 (frame size), 6 (flush), 8 (frame size) and 10 MiB (close).
  const z = ZstImage.create(zst, size, { frameBytes: 4 * MIB });
  await writeRange(z, image, 0, 6 * MIB);
  await z.flush();
  await writeRange(z, image, 6 * MIB, 10 * MIB);
  await z.close(); // partial: no seek table, still resumable
  assert.equal(ZstImage.committedBytes(zst), 10 * MIB);
  assert.deepEqual(
    scanZst(zst).frames.map((f) => f.size / MIB),
    [4, 2, 2, 2],
  );

  const refused = (offset: number, boundary: number) => (e: unknown) => {
    assert.ok(e instanceof ZstResumeError);
    assert.equal(e.boundary, boundary);
    assert.equal(e.committed, 10 * MIB);
    assert.match(e.message, /no frame ends there.*last frame boundary before it is/);
    assert.match(e.message, new RegExp(`at byte ${offset}`));
    return true;
  };
  assert.throws(() => ZstImage.resume(zst, size, 7 * MIB), refused(7 * MIB, 6 * MIB));
  assert.throws(() => ZstImage.resume(zst, size, 12 * MIB), refused(12 * MIB, 10 * MIB));
  assert.throws(() => ZstImage.resume(zst, size, size + 1), /outside the image/);
  assert.equal(ZstImage.boundaryAtOrBefore(zst, 7 * MIB), 6 * MIB);
  assert.equal(ZstImage.boundaryAtOrBefore(zst, 7 * MIB, 4 * MIB), 4 * MIB);
  assert.equal(fs.statSync(zst).size, scanZst(zst).end, 'a refused resume leaves the file alone');

  // At the boundary it names, the resume works.
  const resumed = ZstImage.resume(zst, size, 6 * MIB);
  await writeRange(resumed, image, 6 * MIB, size);
  await resumed.close();
  assert.equal(restoredSha(zst, file('restored.img')), sha256(file('src.img')));
});

test('writes out of order, past the end, or after close, and reads, are refused', async (t) => {
  const file = setUp(t, 'order');
  const size = 4 * MIB;
  const image = mixedImage(file('src.img'), size, 4);
  const zst = file('backup.img.zst');
  const z = ZstImage.create(zst, size, { frameBytes: MIB });

  const nonSequential = (e: unknown) =>
    e instanceof DeviceError && e.op === 'write' && /written sequentially/.test(e.message);
  await z.write(image.subarray(0, MIB), 0);
  await assert.rejects(z.write(image.subarray(2 * MIB, 3 * MIB), 2 * MIB), nonSequential);
  await assert.rejects(z.write(image.subarray(0, MIB), 0), nonSequential);
  await assert.rejects(z.write(Buffer.alloc(4 * MIB), MIB), /past the end of the image/);
  await assert.rejects(z.read(Buffer.alloc(512), 0), /write-only/);
  // The refused writes changed nothing: the image goes on where it was.
  await writeRange(z, image, MIB, size);
  await z.close();
  await assert.rejects(z.write(Buffer.alloc(512), size - 512), /closed/);
  assert.equal(restoredSha(zst, file('restored.img')), sha256(file('src.img')));
});

test('kill -9 while writing: everything reported committed is kept; resume completes the image', async (t) => {
  const file = setUp(t, 'kill');
  const size = 48 * MIB;
  const image = mixedImage(file('src.img'), size, 5);
  const modulePath = path.join(__dirname, '..', '..', 'engine', 'io', 'zst-image.js');
  // The child writes 1 MiB regions with a pause, flushes every 2 MiB, then reports the commit.
  const child = `
    const fs = require('node:fs');
    const { ZstImage } = require(${JSON.stringify(modulePath)});
    const [src, dst, size] = [process.argv[1], process.argv[2], Number(process.argv[3])];
    const image = fs.readFileSync(src);
    (async () => {
      const z = ZstImage.create(dst, size, { frameBytes: 4 << 20 });
      for (let off = 0; off < size; off += 1 << 20) {
        await z.write(image.subarray(off, off + (1 << 20)), off);
        if ((off + (1 << 20)) % (2 << 20) === 0) {
          await z.flush();
          process.stdout.write('committed ' + (off + (1 << 20)) + '\\n');
        }
        await new Promise((r) => setTimeout(r, 8));
      }
      await z.close();
      process.stdout.write('done\\n');
    })();
  `;

  for (let round = 0; round < 3; round++) {
    const zst = file(`backup-${round}.img.zst`);
    const run = spawn(process.execPath, ['-e', child, file('src.img'), zst, String(size)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    // Kill after a random number of commits, a random moment later.
    const killAfter = 2 + Math.floor(Math.random() * 16);
    const delay = Math.floor(Math.random() * 30);
    let lastCommitted = 0;
    let commits = 0;
    let pending = '';
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      run.on('exit', (_code, signal) => resolve(signal)),
    );
    run.stdout.setEncoding('utf8');
    run.stdout.on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const m = /^committed (\d+)$/.exec(line);
        if (!m) continue;
        lastCommitted = Number(m[1]);
        if (++commits === killAfter) setTimeout(() => run.kill('SIGKILL'), delay);
      }
    });
    const signal = await exited;
    assert.equal(signal, 'SIGKILL', 'the child was killed before it finished');
    t.diagnostic(
      `round ${round}: killed ${delay} ms after commit ${killAfter} (${lastCommitted / MIB} MiB); ` +
        `${ZstImage.committedBytes(zst) / MIB} MiB in complete frames, ${fs.statSync(zst).size} bytes on disk`,
    );

    assert.ok(lastCommitted > 0);
    assert.ok(ZstImage.committedBytes(zst) >= lastCommitted);
    const resumed = ZstImage.resume(zst, size, lastCommitted, { frameBytes: 4 * MIB });
    await writeRange(resumed, image, lastCommitted, size, 4 * MIB);
    await resumed.close();
    assert.equal(restoredSha(zst, file(`restored-${round}.img`)), sha256(file('src.img')));
  }
});

test('frames without a content size (zstd from a pipe) are counted by decompressing them', async (t) => {
  const file = setUp(t, 'foreign');
  const size = 8 * MIB;
  mixedImage(file('src.img'), size, 6);
  const zst = file('piped.zst');
  execFileSync('sh', ['-c', `zstd -q -c < "${file('src.img')}" > "${zst}"`]);
  const frames = scanZst(zst).frames;
  assert.ok(frames.length >= 1);
  assert.ok(frames.every((f) => !f.sizeInHeader));
  assert.equal(ZstImage.committedBytes(zst), size);
});

test('a failed write (ENOSPC) fails flush and every later call; close still releases the image', async (t) => {
  if (!fs.existsSync('/dev/full')) return t.skip('no /dev/full');
  const z = ZstImage.create('/dev/full', 8 * MIB, { frameBytes: MIB });
  // The first frame's failure reaches the next call: the write of the second frame, or the flush.
  await assert.rejects(
    z.write(Buffer.alloc(2 * MIB, 7), 0).then(() => z.flush()),
    (e: unknown) => e instanceof DeviceError && e.op === 'write' && e.code === 'ENOSPC',
  );
  await assert.rejects(z.write(Buffer.alloc(MIB), 2 * MIB), /ENOSPC/);
  await assert.rejects(z.close(), /ENOSPC/);
});
