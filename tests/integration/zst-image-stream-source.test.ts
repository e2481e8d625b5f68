// A backup of a streamed source whose size is unknown until its end (a .gz image)
// ends with the seek table like any other: the job tells the ZstImage its size once
// the stream ended (setLength), and close() appends the table.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { ZstImage } from '../../engine/io/zst-image';
import { scanZst } from '../../engine/io/zst-scan';
import { runCli, explain, only } from '../helpers/cli';
import { writeMixedFile } from '../helpers/files';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const SEEKABLE_FOOTER_MAGIC = 0x8f92eab1;

function endsWithSeekTable(zst: string, frames: number): boolean {
  const file = fs.readFileSync(zst);
  const footer = file.subarray(file.length - 9);
  return footer.readUInt32LE(5) === SEEKABLE_FOOTER_MAGIC && footer.readUInt32LE(0) === frames;
}

test('clone of a .gz image (size unknown until its end) to .img.zst: the seek table is written', async (t) => {
  const env = workspace(t, 'zst-stream-source');
  const src = env.file('src.img');
  const size = 20 * MIB + 12_345;
  writeMixedFile(src, size, 1101);
  execFileSync('gzip', ['-k', '-1', src]);
  const zst = env.file('backup.img.zst');

  const r = await runCli(['clone', `${src}.gz`, zst, '--verify', '--json'], { db: env.db });
  assert.equal(r.code, 0, explain(r));
  assert.equal(only(r, 'done').verified, true);
  const scan = scanZst(zst);
  assert.equal(
    scan.frames.reduce((n, f) => n + f.size, 0),
    size,
  );
  assert.ok(endsWithSeekTable(zst, scan.frames.length), 'the file ends with the seek table');
  const restored = spawnSync('zstd', ['-d', '-c', '-q', zst], { maxBuffer: 64 * MIB });
  assert.equal(restored.status, 0, String(restored.stderr));
  assert.ok(restored.stdout.equals(fs.readFileSync(src)));
});

test('setLength: only where the writes ended, only while open', async (t) => {
  const env = workspace(t, 'zst-set-length');
  const path = env.file('x.img.zst');
  const z = ZstImage.create(path, Number.MAX_SAFE_INTEGER, { frameBytes: MIB });
  const data = Buffer.alloc(3 * MIB + 100, 7);
  await z.write(data, 0);
  await assert.rejects(z.setLength(data.length - 1), /ends where its writes ended/);
  await assert.rejects(z.setLength(data.length + 1), /ends where its writes ended/);
  await z.setLength(data.length);
  assert.equal(z.size, data.length);
  await assert.rejects(z.write(Buffer.alloc(512), data.length), /past the end/);
  await z.close();
  await assert.rejects(z.setLength(data.length), /closed/);
  assert.ok(endsWithSeekTable(path, 4));
});
