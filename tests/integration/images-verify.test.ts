// `drivetwin verify` and `clone --verify` through the command line: a flipped byte
// on one destination is found and its region named (index and byte offset); an
// untouched destination is listed with no mismatch; equal → exit 0; a destination
// smaller than the source is refused (exit 2); drives (loop devices) verify too.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { runCli, explain, only } from '../helpers/cli';
import { readRange, sha256, writeMixedFile, writeRandomFile } from '../helpers/files';
import { attachLoop, requireRoot, type LoopDevice } from '../helpers/loop';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const SIZE = 48 * MIB;

/** Inverts the byte at `offset` of a file or device (through the page cache, then flushed). */
function flipByte(file: string, offset: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, offset);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

test('verify names the one region with a flipped byte; an untouched destination has none', async (t) => {
  const env = workspace(t, 'images-verify-flip');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  const dst2 = env.file('dst2.img');
  writeMixedFile(src, SIZE, 601);
  const cloned = await runCli(['clone', src, dst, dst2, '--json'], { db: env.db });
  assert.equal(cloned.code, 0, explain(cloned));

  await t.test('equal: exit 0, every destination listed with no mismatch', async () => {
    const r = await runCli(['verify', src, dst, dst2, '--json'], { db: env.db });
    assert.equal(r.code, 0, explain(r));
    const v = only(r, 'verify');
    assert.equal(v.equal, true);
    assert.deepEqual(v.mismatches, { [dst]: [], [dst2]: [] });
    assert.equal(v.bytesCompared, SIZE);
    t.diagnostic(`equal pair: ${SIZE / MIB} MiB compared in ${(v.seconds as number).toFixed(3)} s`);
  });

  // In region 17 at 1 MiB regions; region 272 at 64 KiB; in a MiB of zeros (17 % 3 = 2).
  const offset = 17 * MIB + 12_345;
  const before = readRange(dst, offset, 1)[0];
  flipByte(dst, offset);
  assert.notEqual(readRange(dst, offset, 1)[0], before);

  await t.test('a flipped byte: exit 4, exactly that region (1 MiB regions)', async () => {
    const r = await runCli(['verify', src, dst, dst2, '--json'], { db: env.db });
    assert.equal(r.code, 4, explain(r));
    const v = only(r, 'verify');
    assert.equal(v.equal, false);
    assert.equal(v.regionSize, MIB);
    assert.deepEqual(v.mismatches, { [dst]: [17], [dst2]: [] });
    const region = (v.mismatches as Record<string, number[]>)[dst][0];
    const at = region * (v.regionSize as number);
    assert.ok(at <= offset && offset < at + (v.regionSize as number));
  });

  await t.test('in words: the region and its byte range', async () => {
    const r = await runCli(['verify', src, dst, dst2], { db: env.db });
    assert.equal(r.code, 4, explain(r));
    const lines = r.stdout.split('\n').filter((l) => /differs/.test(l));
    assert.deepEqual(lines, [`${dst}: region 17 (bytes ${17 * MIB}+${MIB}) differs`]);
    assert.ok(
      !r.stdout.includes(`${dst2}:`),
      'the untouched destination is not named as differing',
    );
  });

  await t.test('--region-size 64K: region 272, bytes 17825792+65536', async () => {
    const r = await runCli(['verify', src, dst, dst2, '--region-size', '64K', '--json'], {
      db: env.db,
    });
    assert.equal(r.code, 4, explain(r));
    const v = only(r, 'verify');
    assert.equal(v.regionSize, 64 * 1024);
    assert.equal(Math.floor(offset / (64 * 1024)), 272);
    assert.deepEqual(v.mismatches, { [dst]: [272], [dst2]: [] });
  });

  await t.test('the last byte of the image, in a short last region', async () => {
    const odd = env.file('odd.img');
    const oddDst = env.file('odd-dst.img');
    writeRandomFile(odd, 5 * MIB + 4096, 602);
    fs.copyFileSync(odd, oddDst);
    flipByte(oddDst, 5 * MIB + 4095);
    const r = await runCli(['verify', odd, oddDst, '--json'], { db: env.db });
    assert.equal(r.code, 4, explain(r));
    assert.deepEqual(only(r, 'verify').mismatches, { [oddDst]: [5] });
    const words = await runCli(['verify', odd, oddDst], { db: env.db });
    assert.match(words.stdout, new RegExp(`region 5 \\(bytes ${5 * MIB}\\+4096\\) differs`));
  });

  flipByte(dst, offset);
  await t.test('flipped back: equal again', async () => {
    const r = await runCli(['verify', src, dst, dst2, '--json'], { db: env.db });
    assert.equal(r.code, 0, explain(r));
  });
});

test('clone --verify: exit 0 and done.verified on success', async (t) => {
  const env = workspace(t, 'images-verify-clone-verify');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeMixedFile(src, SIZE, 603);
  const r = await runCli(['clone', src, dst, '--verify', '--json'], { db: env.db });
  assert.equal(r.code, 0, explain(r));
  const done = only(r, 'done');
  assert.equal(done.state, 'done');
  assert.equal(done.verified, true);
  assert.deepEqual(done.mismatches, []);
  assert.equal(sha256(dst), sha256(src));
  const words = await runCli(['clone', src, env.file('dst-b.img'), '--verify'], { db: env.db });
  assert.equal(words.code, 0, explain(words));
  assert.match(words.stdout, /verified/);
});

test('verify refuses a destination smaller than the source (exit 2), and a missing one', async (t) => {
  const env = workspace(t, 'images-verify-small');
  const src = env.file('src.img');
  const small = env.file('small.img');
  writeMixedFile(src, SIZE, 604);
  fs.copyFileSync(src, small);
  fs.truncateSync(small, SIZE - MIB);
  const r = await runCli(['verify', src, small, '--json'], { db: env.db });
  assert.equal(r.code, 2, explain(r));
  assert.match(r.stderr, /smaller than the source/);
  const e = only(r, 'error');
  assert.equal(e.fatal, true);
  const missing = await runCli(['verify', src, env.file('nope.img')], { db: env.db });
  assert.equal(missing.code, 2, explain(missing));
  assert.match(missing.stderr, /does not exist/);
  // A larger destination is compared over the source's size only.
  const big = env.file('big.img');
  fs.copyFileSync(src, big);
  fs.appendFileSync(big, Buffer.alloc(MIB, 0xaa));
  const ok = await runCli(['verify', src, big, '--json'], { db: env.db });
  assert.equal(ok.code, 0, explain(ok));
});

test('verify on loop devices: equal, then one flipped byte named', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'images-verify-loop');
  const loops: LoopDevice[] = [];
  t.after(() => loops.forEach((l) => l.detach()));
  const srcFile = env.file('src');
  const dstFile = env.file('dst');
  writeMixedFile(srcFile, SIZE, 605);
  fs.writeFileSync(dstFile, '');
  fs.truncateSync(dstFile, SIZE);
  const src = attachLoop(srcFile);
  loops.push(src);
  const dst = attachLoop(dstFile);
  loops.push(dst);
  const imgDst = env.file('copy.img');

  const cloned = await runCli(
    ['clone', src.path, dst.path, imgDst, '--yes', '--verify', '--json'],
    {
      db: env.db,
    },
  );
  assert.equal(cloned.code, 0, explain(cloned));
  assert.equal(only(cloned, 'done').verified, true);

  const equal = await runCli(['verify', src.path, dst.path, imgDst, '--json'], { db: env.db });
  assert.equal(equal.code, 0, explain(equal));
  assert.deepEqual(only(equal, 'verify').mismatches, { [dst.path]: [], [imgDst]: [] });

  const offset = 40 * MIB + 511;
  flipByte(dst.path, offset);
  execFileSync('blockdev', ['--flushbufs', dst.path]);
  const r = await runCli(['verify', src.path, dst.path, imgDst, '--json'], { db: env.db });
  assert.equal(r.code, 4, explain(r));
  assert.deepEqual(only(r, 'verify').mismatches, { [dst.path]: [40], [imgDst]: [] });
  // The source (a drive) is only read.
  execFileSync('blockdev', ['--flushbufs', src.path]);
  assert.equal(sha256(src.path), sha256(imgDst));

  // A drive smaller than the source is refused.
  const smallFile = env.file('small');
  fs.writeFileSync(smallFile, '');
  fs.truncateSync(smallFile, SIZE - MIB);
  const small = attachLoop(smallFile);
  loops.push(small);
  const refused = await runCli(['verify', src.path, small.path, '--json'], { db: env.db });
  assert.equal(refused.code, 2, explain(refused));
  assert.match(refused.stderr, /smaller than the source/);
});
