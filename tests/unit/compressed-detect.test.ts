import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { detectCompression } from '../../engine/io/compressed/index';
import { tempDir } from '../helpers/files';

const tmp = tempDir('drivetwin-detect-');
after(() => tmp.cleanup());

function make(name: string, ...parts: Array<Buffer | number[] | string>): string {
  const file = path.join(tmp.dir, name);
  const bytes = parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p as number[])));
  fs.writeFileSync(file, Buffer.concat([...bytes, Buffer.alloc(64, 0x41)]));
  return file;
}

function skippable(magicLow: number, length: number): Buffer {
  const frame = Buffer.alloc(8 + length, 0x11);
  frame.writeUInt32LE(0x184d2a50 | magicLow, 0);
  frame.writeUInt32LE(length, 4);
  return frame;
}

const ZSTD_FRAME = [0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x10];

test('each format is recognized by its magic bytes, whatever the name', () => {
  assert.equal(detectCompression(make('a', [0x1f, 0x8b, 0x08, 0x00])), 'gzip');
  assert.equal(detectCompression(make('b.img', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])), 'xz');
  assert.equal(detectCompression(make('c.raw', ZSTD_FRAME)), 'zstd');
  const bzBlock = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
  assert.equal(detectCompression(make('d', Buffer.from('BZh9'), bzBlock)), 'bzip2');
  const bzEmpty = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
  assert.equal(detectCompression(make('e', Buffer.from('BZh1'), bzEmpty)), 'bzip2');
  assert.equal(detectCompression(make('f.gz', [0x50, 0x4b, 0x03, 0x04])), 'zip');
  assert.equal(detectCompression(make('g', [0x50, 0x4b, 0x05, 0x06])), 'zip');
});

test('zstd after skippable frames (pzstd), but not LZ4 after the same kind of frame', () => {
  const zst = make('h', skippable(0, 12), skippable(0xe, 3), ZSTD_FRAME);
  assert.equal(detectCompression(zst), 'zstd');
  const lz4 = make('i', skippable(0, 12), [0x04, 0x22, 0x4d, 0x18]);
  assert.equal(detectCompression(lz4), null);
});

test('plain images and near misses are not compressed', () => {
  const mbr = Buffer.alloc(512);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  assert.equal(detectCompression(make('disk.img', mbr)), null);
  assert.equal(detectCompression(make('zeros.iso', Buffer.alloc(4096))), null);
  assert.equal(detectCompression(make('bz.img', Buffer.from('BZh9 not bzip2'))), null);
  assert.equal(detectCompression(make('gz.img', [0x1f, 0x8b, 0x07])), null);
  const empty = path.join(tmp.dir, 'empty.img');
  fs.writeFileSync(empty, '');
  assert.equal(detectCompression(empty), null);
});

test('the name decides when the content does not', () => {
  const cases: Array<[string, string | null]> = [
    ['x.img.gz', 'gzip'],
    ['x.IMG.GZ', 'gzip'],
    ['x.img.xz', 'xz'],
    ['x.img.zst', 'zstd'],
    ['x.zstd', 'zstd'],
    ['x.img.bz2', 'bzip2'],
    ['x.ZIP', 'zip'],
    ['x.img', null],
    ['x.gz.img', null],
  ];
  for (const [name, expected] of cases) {
    assert.equal(detectCompression(make(name, Buffer.from('plain data'))), expected, name);
    // A file that can't be read (missing) is judged by its name alone.
    assert.equal(detectCompression(path.join(tmp.dir, 'missing', name)), expected, name);
  }
});
