// The bzip2 decoding thread is a compiled module of its own (bzip2-worker.js, beside
// bzip2-lanes.js, which starts it); packaged, it is loaded from app.asar.unpacked, where
// electron-builder puts dist/engine/**, like the .img.zst compression thread.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { decodingWorkerFile } from '../../engine/io/compressed/bzip2-lanes';

const COMPRESSED = path.join(__dirname, '..', '..', 'engine', 'io', 'compressed');

test('bzip2-lanes.js starts the compiled worker beside it, only its types imported', () => {
  assert.equal(decodingWorkerFile(COMPRESSED), path.join(COMPRESSED, 'bzip2-worker.js'));
  assert.ok(fs.existsSync(path.join(COMPRESSED, 'bzip2-worker.js')));
  const compiled = fs.readFileSync(path.join(COMPRESSED, 'bzip2-lanes.js'), 'utf8');
  assert.doesNotMatch(compiled, /require\(['"]\.\/bzip2-worker['"]\)/);
});

test('packaged: the bzip2 worker is read from app.asar.unpacked', () => {
  const inAsar = '/opt/DriveTwin/resources/app.asar/dist/engine/io/compressed';
  assert.equal(
    decodingWorkerFile(inAsar),
    '/opt/DriveTwin/resources/app.asar.unpacked/dist/engine/io/compressed/bzip2-worker.js',
  );
});
