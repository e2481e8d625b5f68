// Memory is bounded in bytes whatever the region size (invariant 5): a copy and a
// verify of a 1.5 GiB sparse image at 256 MiB and 1 GiB regions finish, the copy is
// identical, and the process's peak resident memory (VmHWM) stays under 200 MiB.
//
// The copy drives the copier the way the job does: one buffer per batch of
// min(batch × region size, MAX_IO_BYTES) bytes, at most MAX_IN_FLIGHT_BYTES of them.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { explain, only, runCli } from '../helpers/cli';
import { allocatedBytes, readRange, sha256 } from '../helpers/files';
import { workspace, type Workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
/** Not a multiple of 512: the last region is short and ends inside a block. */
const SIZE = 1.5 * GIB + 1000;
const PEAK_LIMIT = 200 * MIB;
const DIST_ENGINE = path.join(__dirname, '..', '..', 'engine');

/** Random data at a few places — across region and sub-job boundaries, at the very end — holes elsewhere. */
function sparseImage(file: string): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, SIZE);
  const fd = fs.openSync(file, 'r+');
  try {
    for (const [offset, length] of [
      [0, 3 * MIB],
      [256 * MIB - 5000, 2 * MIB],
      [GIB - 4 * MIB - 7, 9 * MIB],
      [SIZE - 3 * MIB, 3 * MIB],
    ]) {
      const data = Buffer.alloc(length);
      for (let i = 0; i < length; i += 4096) data.writeUInt32LE((i * 2654435761) >>> 0, i);
      data[length - 1] = 0xa5;
      fs.writeSync(fd, data, 0, length, offset);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** A preload that writes the process's peak resident bytes (VmHWM) to $PEAK_FILE at exit. */
function peakProbe(env: Workspace): { nodeOptions: string; peak(): number } {
  const probe = env.file('peak-probe.js');
  const out = env.file('peak.txt');
  fs.writeFileSync(
    probe,
    `process.on('exit', () => {
       const m = /VmHWM:\\s+(\\d+) kB/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'));
       require('fs').writeFileSync(process.env.PEAK_FILE, String(Number(m[1]) * 1024));
     });\n`,
  );
  return {
    nodeOptions: `--require ${probe}`,
    peak: () => Number(fs.readFileSync(out, 'utf8')),
  };
}

function peakEnv(env: Workspace, probe: { nodeOptions: string }): Record<string, string> {
  return { NODE_OPTIONS: probe.nodeOptions, PEAK_FILE: env.file('peak.txt') };
}

// Runs in a child process: copies SRC to DST at REGION-byte regions, BATCH regions per
// batch, as the job does, then zeroes a whole region (to /dev/null), and reports VmHWM.
const COPY_CHILD = `
const fs = require('node:fs');
const dist = process.argv[1];
const { Copier } = require(dist + '/hydration/copier.js');
const { Throttle } = require(dist + '/hydration/throttle.js');
const { ImageFile } = require(dist + '/io/image-file.js');
const { alignedBuffer, MAX_IO_BYTES, MAX_IN_FLIGHT_BYTES } = require(dist + '/io/buffers.js');
const { makeGeometry, regionRange } = require(dist + '/geometry.js');
(async () => {
  const [src, dst] = [process.argv[2], process.argv[3]];
  const [regionSize, batch] = [Number(process.argv[4]), Number(process.argv[5])];
  const source = ImageFile.open(src, false);
  const dest = ImageFile.open(dst, true);
  if (!dest.reset(source.size)) throw new Error('could not empty the destination');
  const g = makeGeometry(source.size, regionSize);
  const bufferBytes = Math.min(batch * regionSize, MAX_IO_BYTES);
  const slots = Math.max(1, Math.floor(MAX_IN_FLIGHT_BYTES / bufferBytes));
  const throttle = new Throttle({ percent: 100, maxRate: 0 }, undefined, undefined, slots);
  const copier = new Copier(source, throttle, { ignoreErrors: false, sequential: false, zeroUnit: regionSize });
  const target = { device: dest, skipZeros: true, writesFree: false };
  let next = 0;
  let bytesRead = 0;
  let bytesWritten = 0;
  const batches = async (buffer) => {
    while (next < g.regionCount) {
      const first = next;
      next = Math.min(g.regionCount, first + batch);
      const r = await copier.copy(regionRange(g, first, next - first), buffer, [target]);
      if (r.readError || r.writeErrorMask || r.end !== undefined) throw new Error(JSON.stringify(r));
      bytesRead += r.bytesRead;
      bytesWritten += r.bytesWritten;
    }
  };
  await Promise.all(Array.from({ length: slots }, () => batches(alignedBuffer(bufferBytes))));
  const devnull = ImageFile.open('/dev/null', true);
  const zeroed = await copier.zero({ offset: 0, length: regionSize }, [
    { device: devnull, skipZeros: false, writesFree: true },
  ]);
  await Promise.all([dest.flush(), devnull.close(), source.close()]);
  await dest.close();
  const hwm = /VmHWM:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1];
  const peak = Number(hwm) * 1024;
  console.log(JSON.stringify({ peak, bytesRead, bytesWritten, zeroed: zeroed.bytesWritten, bufferBytes, slots }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
`;

for (const [regionSize, batch, label] of [
  [256 * MIB, 1, '256 MiB regions, one per batch'],
  [GIB, 8, '1 GiB regions, eight per batch'],
] as const) {
  test(`a copy at ${label}: identical, peak resident memory under 200 MiB`, (t) => {
    const env = workspace(t, 'memory-copy');
    const src = env.file('src.img');
    const dst = env.file('dst.img');
    sparseImage(src);
    const out = execFileSync(
      process.execPath,
      ['-e', COPY_CHILD, DIST_ENGINE, src, dst, String(regionSize), String(batch)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 20 },
    );
    const r = JSON.parse(out) as Record<string, number>;
    t.diagnostic(`copy: ${JSON.stringify(r)}`);
    assert.ok(r.bytesRead < 64 * MIB, `holes were not read (${r.bytesRead} bytes)`);
    assert.equal(r.zeroed, regionSize, 'the zero job wrote the whole region');
    assert.ok(r.bytesWritten < 64 * MIB, `zeros were skipped (${r.bytesWritten} bytes written)`);
    assert.equal(fs.statSync(dst).size, SIZE);
    assert.equal(sha256(dst), sha256(src));
    assert.ok(r.peak < PEAK_LIMIT, `peak ${(r.peak / MIB).toFixed(0)} MiB`);
  });
}

test('verify at 128 MiB and 1 GiB regions: equal, a flipped byte found, peak under 200 MiB', async (t) => {
  const env = workspace(t, 'memory-verify');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  sparseImage(src);
  fs.copyFileSync(src, dst);
  const probe = peakProbe(env);
  const withProbe = peakEnv(env, probe);

  for (const size of ['128M', '1G']) {
    const equal = await runCli(['verify', src, dst, '--region-size', size, '--json'], {
      db: env.db,
      env: withProbe,
    });
    assert.equal(equal.code, 0, explain(equal));
    assert.equal(only(equal, 'verify').bytesCompared, SIZE);
    const peak = probe.peak();
    t.diagnostic(`verify --region-size ${size}: peak ${(peak / MIB).toFixed(0)} MiB`);
    assert.ok(peak < PEAK_LIMIT, `verify at ${size}: peak ${(peak / MIB).toFixed(0)} MiB`);
  }

  // A byte in the second (short) 1 GiB region, inside the last data run.
  const at = SIZE - 2 * MIB;
  const fd = fs.openSync(dst, 'r+');
  fs.writeSync(fd, Buffer.from([readRange(dst, at, 1)[0] ^ 0xff]), 0, 1, at);
  fs.closeSync(fd);
  const differs = await runCli(['verify', src, dst, '--region-size', '1G', '--json'], {
    db: env.db,
    env: withProbe,
  });
  assert.equal(differs.code, 4, explain(differs));
  assert.deepEqual(only(differs, 'verify').mismatches, { [dst]: [1] });
  assert.ok(probe.peak() < PEAK_LIMIT, `peak ${(probe.peak() / MIB).toFixed(0)} MiB`);
});

for (const size of ['4K', '1M', '128M', '1G']) {
  test(`clone --region-size ${size} --verify: done, verified, identical, peak under 200 MiB`, async (t) => {
    const env = workspace(t, 'memory-clone');
    const src = env.file('src.img');
    const dst = env.file('dst.img');
    sparseImage(src);
    const probe = peakProbe(env);
    const r = await runCli(['clone', src, dst, '--region-size', size, '--verify', '--json'], {
      db: env.db,
      env: peakEnv(env, probe),
    });
    assert.equal(r.code, 0, explain(r));
    assert.equal(only(r, 'done').verified, true);
    assert.equal(sha256(dst), sha256(src));
    const peak = probe.peak();
    t.diagnostic(`clone --region-size ${size} --verify: peak ${(peak / MIB).toFixed(0)} MiB`);
    assert.ok(peak < PEAK_LIMIT, `peak ${(peak / MIB).toFixed(0)} MiB`);
  });
}

// A big sparse source at small regions: millions of regions in one hole must cost their
// bitmap (2 MiB at 4K regions), never a number or an object per region.
for (const size of ['4K', '1M', '1G']) {
  test(`clone of a 64 GiB sparse image holding 4 MiB, --region-size ${size}: peak under 200 MiB`, async (t) => {
    const env = workspace(t, 'memory-sparse64');
    const src = env.file('src.img');
    const dst = env.file('dst.img');
    fs.writeFileSync(src, '');
    fs.truncateSync(src, 64 * GIB);
    const data = Buffer.alloc(4 * MIB);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    const fd = fs.openSync(src, 'r+');
    fs.writeSync(fd, data, 0, data.length, 1000 * MIB);
    fs.closeSync(fd);
    const probe = peakProbe(env);
    const r = await runCli(['clone', src, dst, '--region-size', size, '--json'], {
      db: env.db,
      env: peakEnv(env, probe),
    });
    assert.equal(r.code, 0, explain(r));
    assert.equal(only(r, 'done').state, 'done');
    assert.equal(fs.statSync(dst).size, 64 * GIB);
    assert.ok(readRange(dst, 1000 * MIB, data.length).equals(data), 'the data was copied');
    assert.ok(allocatedBytes(dst) <= 8 * MIB, `holes stay holes (${allocatedBytes(dst)} bytes)`);
    const peak = probe.peak();
    t.diagnostic(`64 GiB sparse, --region-size ${size}: peak ${(peak / MIB).toFixed(0)} MiB`);
    assert.ok(peak < PEAK_LIMIT, `peak ${(peak / MIB).toFixed(0)} MiB`);
  });
}
