// The .img.zst compression thread is a compiled module of its own (zst-worker.js,
// beside zst-compressor.js, which starts it), speaking the typed messages both files share; packaged, it is
// loaded from app.asar.unpacked, where electron-builder puts dist/engine/**.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { compressionWorkerFile } from '../../engine/io/zst-compressor';
import { tempDir } from '../helpers/files';
import type {
  CompressReply,
  CompressRequest,
  CompressorSettings,
} from '../../engine/io/zst-worker';

const ENGINE_IO = path.join(__dirname, '..', '..', 'engine', 'io');

function ask(worker: Worker, request: CompressRequest): Promise<CompressReply> {
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.postMessage(request, request.out ? [request.buf, request.out] : [request.buf]);
  });
}

test('the worker compresses a frame with its size and checksum, and hands the buffers back', async (t) => {
  const settings: CompressorSettings = { level: 3, threads: 0 };
  const worker = new Worker(compressionWorkerFile(), { workerData: settings });
  t.after(() => worker.terminate());
  const data = Buffer.alloc(1 << 20);
  for (let i = 0; i < data.length; i += 8) data.writeUInt32LE(i % 65521, i);
  const buf = new ArrayBuffer(2 << 20);
  Buffer.from(buf).set(data);

  const reply = await ask(worker, { id: 7, buf, length: data.length });
  assert.equal(reply.id, 7);
  assert.equal(reply.buf.byteLength, 2 << 20, 'the frame buffer comes back for reuse');
  assert.ok('out' in reply, JSON.stringify(reply));
  // A copy: the buffer goes back to the thread below.
  const frame = Buffer.from(new Uint8Array(reply.out, 0, reply.length));
  assert.ok(frame.length < data.length / 4);
  // An output buffer sent with the next frame is the one compressed into: nothing new per frame.
  const out = reply.out;
  const outBytes = out.byteLength;
  const again = await ask(worker, { id: 9, buf: reply.buf, length: data.length, out });
  assert.equal(out.byteLength, 0, 'it was handed to the thread');
  assert.ok('out' in again, JSON.stringify(again));
  assert.equal(again.out.byteLength, outBytes, 'and came back, the same size: not a new one');
  assert.ok(Buffer.from(again.out, 0, again.length).equals(frame), 'the same frame again');
  const restored = spawnSync('zstd', ['-d', '-c', '-q'], { input: frame, maxBuffer: 4 << 20 });
  assert.equal(restored.status, 0, String(restored.stderr));
  assert.ok(restored.stdout.equals(data));
  // The header states the content size; the trailer carries a checksum.
  const dir = tempDir('drivetwin-zst-worker-');
  t.after(() => dir.cleanup());
  const file = path.join(dir.dir, 'frame.zst');
  fs.writeFileSync(file, frame);
  const listed = spawnSync('zstd', ['-lv', file], { encoding: 'utf8' });
  assert.equal(listed.status, 0, listed.stderr);
  assert.match(listed.stdout, /Decompressed Size: .*\(1048576 B\)/);
  assert.match(listed.stdout, /Check: XXH64/);

  const bad = await ask(worker, { id: 8, buf: new ArrayBuffer(16), length: 32 });
  assert.equal(bad.id, 8);
  assert.ok('error' in bad && bad.error.length > 0, JSON.stringify(bad));
  assert.equal(bad.buf.byteLength, 16);
});

test('zst-compressor.js starts the compiled worker beside it, no source evaluated', () => {
  assert.equal(compressionWorkerFile(ENGINE_IO), path.join(ENGINE_IO, 'zst-worker.js'));
  assert.ok(fs.existsSync(path.join(ENGINE_IO, 'zst-worker.js')));
  for (const name of ['zst-compressor.js', 'zst-image.js']) {
    const compiled = fs.readFileSync(path.join(ENGINE_IO, name), 'utf8');
    assert.doesNotMatch(compiled, /eval\s*:/, name);
    assert.doesNotMatch(
      compiled,
      /require\(['"]\.\/zst-worker['"]\)/,
      `${name}: only its types are imported`,
    );
  }
});

test('packaged: the worker is read from app.asar.unpacked', () => {
  const inAsar = '/opt/DriveTwin/resources/app.asar/dist/engine/io';
  assert.equal(
    compressionWorkerFile(inAsar),
    '/opt/DriveTwin/resources/app.asar.unpacked/dist/engine/io/zst-worker.js',
  );
  const unpacked = '/opt/DriveTwin/resources/app.asar.unpacked/dist/engine/io';
  assert.equal(compressionWorkerFile(unpacked), `${unpacked}/zst-worker.js`);
});
