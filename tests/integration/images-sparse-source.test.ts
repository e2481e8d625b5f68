// A sparse source image: the file system says where its data is (SEEK_DATA/SEEK_HOLE), and
// its holes are never read — counted by the kernel (/proc/self/io of the CLI process) — yet
// the copy is byte-identical, holes written as zeros wherever the destination needs them.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli, expectExit, only } from '../helpers/cli';
import { allocatedBytes, sha256, tempDir, writeRandomFile } from '../helpers/files';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const SIZE = 2 * GIB;
/** Data pieces: [offset, length]; 4 MiB in all, some not aligned to a region. */
const DATA: Array<[number, number]> = [
  [0, MIB],
  [GIB / 2 + 12 * 1024, MIB],
  [(3 * GIB) / 2 - 8192, 2 * MIB - 4096],
  [SIZE - 4096, 4096],
];
/** A smaller one, for a destination that needs the zeros written (in memory, /dev/shm). */
const SMALL = 256 * MIB;
const SMALL_DATA: Array<[number, number]> = [
  [0, MIB],
  [100 * MIB + 12 * 1024, MIB],
  [SMALL - 4096, 4096],
];

/** Writes, at exit, the bytes this process read through read()/pread() (rchar) to a file. */
const COUNTER = `
const fs = require('node:fs');
process.on('exit', () => {
  const io = fs.readFileSync('/proc/self/io', 'utf8');
  fs.writeFileSync(process.env.READ_COUNT_FILE, /rchar: (\\d+)/.exec(io)[1]);
});
`;

function writeSparse(file: string, size: number, data: Array<[number, number]>): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
  const fd = fs.openSync(file, 'r+');
  let seed = 7;
  for (const [offset, length] of data) {
    const piece = path.join(path.dirname(file), 'piece');
    writeRandomFile(piece, length, seed++);
    fs.writeSync(fd, fs.readFileSync(piece), 0, length, offset);
    fs.rmSync(piece);
  }
  fs.closeSync(fd);
}

test('the holes of a sparse source image are not read, and the copy is identical', async (t) => {
  const tmp = tempDir('drivetwin-sparse-src-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  fs.writeFileSync(file('counter.cjs'), COUNTER);

  const clone = async (src: string, dst: string, extra: string[]): Promise<number> => {
    const count = file('read-count');
    const r = await runCli(['clone', src, dst, '--json', ...extra], {
      db: file('jobs.db'),
      env: { NODE_OPTIONS: `--require ${file('counter.cjs')}`, READ_COUNT_FILE: count },
    });
    expectExit(r, 0);
    const read = only(r, 'done').bytesRead as number;
    assert.ok(read < 16 * MIB, `holes are not counted as read (${read} bytes)`);
    return Number(fs.readFileSync(count, 'utf8'));
  };

  await t.test('onto a new image: only the data is read and written', async () => {
    const src = file('src.img');
    writeSparse(src, SIZE, DATA);
    assert.ok(allocatedBytes(src) < 16 * MIB, 'the source is sparse here');
    const dst = file('dst.img');
    const read = await clone(src, dst, []);
    // 4 MiB of data, plus the CLI's own files (its code, the job database): far from 4 GiB.
    assert.ok(read < 64 * MIB, `${read} bytes read for 4 MiB of data in a ${SIZE}-byte image`);
    assert.equal(sha256(dst), sha256(src));
    assert.ok(allocatedBytes(dst) < 16 * MIB, 'the holes stay holes');
  });

  await t.test('onto a file full of data (--no-sparse): zeros written over the holes', async () => {
    const src = file('small.img');
    writeSparse(src, SMALL, SMALL_DATA);
    const dst = file('full.img');
    writeRandomFile(dst, SMALL, 9);
    const read = await clone(src, dst, ['--no-sparse']);
    assert.ok(read < 64 * MIB, `${read} bytes read of a ${SMALL}-byte image with 2 MiB of data`);
    assert.equal(sha256(dst), sha256(src));
  });
});
