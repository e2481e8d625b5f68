// Clones onto loop devices (root): 512- and 4096-byte sectors, an image whose
// size is not a multiple of the device's block, several devices, --sequential. Past the
// copy, a new job writes only the zeros of its wipe over the destination's last MiB
// (where an old backup GPT would lie: session/wipe.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { runCli, type CliResult, explain, only } from '../helpers/cli';
import { readRange, sha256, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

/** sha256 of a device as it is now: its page cache may predate O_DIRECT writes. */
function devSha(dev: string, length?: number): string {
  execFileSync('blockdev', ['--flushbufs', dev]);
  return sha256(dev, length);
}

async function clone(env: Workspace, args: string[]): Promise<CliResult> {
  const r = await runCli(['clone', ...args, '--yes', '--json'], { db: env.db });
  assert.equal(r.code, 0, explain(r));
  assert.equal(only(r, 'done').state, 'done');
  return r;
}

for (const sectorSize of [512, 4096] as const) {
  test(`loop → loop with ${sectorSize}-byte sectors is identical`, async (t) => {
    if (!requireRoot(t)) return;
    const env = workspace(t, `dev-${sectorSize}`);
    const size = 40 * MIB + 3 * 4096; // not a multiple of the 1 MiB region
    const src = env.loop('src', size, { seed: 10, sectorSize });
    const extra = 3 * MIB;
    const dst = env.loop('dst', size + extra, { seed: 11, sectorSize });
    assert.equal(src.sectorSize, sectorSize);
    assert.equal(dst.sectorSize, sectorSize);
    const want = devSha(src.path);
    const tailBefore = readRange(dst.file, size, extra);

    // The sector size is the loop device's own (losetup --sector-size), not a flag.
    const r = await clone(env, [src.path, dst.path, '--region-size', '1M']);
    const start = only(r, 'start');
    assert.equal(start.regionsTotal, Math.ceil(size / MIB));
    assert.equal(only(r, 'done').bytesRead, size);
    assert.equal(devSha(dst.path, size), want);
    const tail = readRange(dst.file, size, extra);
    assert.ok(
      tail.subarray(0, extra - MIB).equals(tailBefore.subarray(0, extra - MIB)),
      'nothing written past the source size but the wipe of the last MiB',
    );
    assert.ok(tail.subarray(extra - MIB).equals(Buffer.alloc(MIB)), 'the last MiB is wiped');
    assert.equal(devSha(src.path), want, 'the source is unchanged');
  });
}

test('image → loop (4096-byte sectors) when the image is not a multiple of 4096', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'dev-img');
  const size = 20 * MIB + 1234;
  const img = env.file('src.img');
  writeRandomFile(img, size, 20);
  const dst = env.loop('dst', 22 * MIB, { seed: 21, sectorSize: 4096 });
  const before = readRange(dst.file, 0, 22 * MIB);

  await clone(env, [img, dst.path, '--region-size', '64K']);
  execFileSync('blockdev', ['--flushbufs', dst.path]);
  const after = readRange(dst.path, 0, 22 * MIB);
  assert.ok(after.subarray(0, size).equals(fs.readFileSync(img)), 'the image is on the device');
  const blockEnd = Math.ceil(size / 4096) * 4096;
  assert.ok(
    after.subarray(size, blockEnd).equals(Buffer.alloc(blockEnd - size)),
    'the last block is padded with zeros',
  );
  const wiped = 21 * MIB;
  assert.ok(
    after.subarray(blockEnd, wiped).equals(before.subarray(blockEnd, wiped)),
    'nothing past the last block is touched but the last MiB',
  );
  assert.ok(after.subarray(wiped).equals(Buffer.alloc(MIB)), "the drive's last MiB is wiped");
});

test('loop → two loops at once', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'dev-two');
  const size = 32 * MIB + 512 * 5;
  const src = env.loop('src', size, { seed: 30 });
  const a = env.loop('a', size, { seed: 31 });
  const b = env.loop('b', size + 4 * MIB); // zeros
  const want = devSha(src.path);
  const r = await clone(env, [src.path, a.path, b.path, '--region-size', '128K']);
  assert.deepEqual(only(r, 'done').failedDestinations, []);
  assert.equal(only(r, 'done').bytesRead, size, 'read once for both');
  assert.equal(devSha(a.path), want);
  assert.equal(devSha(b.path, size), want);
  assert.ok(readRange(b.path, size, 4 * MIB).equals(Buffer.alloc(4 * MIB)));
});

test('--sequential loop → loop is identical', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'dev-seq');
  const size = 33 * MIB;
  const src = env.loop('src', size, { seed: 40, sectorSize: 4096 });
  const dst = env.loop('dst', size, { seed: 41, sectorSize: 4096 });
  const want = devSha(src.path);
  const r = await clone(env, [src.path, dst.path, '--sequential', '--region-size', '256K']);
  const jobs = await runCli(['jobs', '--json'], { db: env.db });
  const job = jobs.events.find((e) => e.job === only(r, 'start').job);
  assert.equal(
    (job?.options as { sequential?: boolean } | undefined)?.sequential,
    true,
    jobs.stdout,
  );
  assert.equal(devSha(dst.path), want);
});
