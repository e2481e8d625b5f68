// dm-clone's semantics on the served copy, with exact requests (tests/helpers/nbd-client):
// a write covering a region whole hydrates it without reading the source, a partial
// one lands on its region copied first (never half old, half new); a FLUSH commits, so
// after kill -9 and a resume every write answered before the FLUSH is there and every
// other region is the source's; a verify leaves the regions a client wrote out and
// says which. A read of an unhydrated region comes from the source at once, and its
// region is copied ahead of the rest.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { type TestContext, test } from 'node:test';
import { runCli, type CliEvent, explain, only } from '../helpers/cli';
import { readRange, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { NbdClient } from '../helpers/nbd-client';
import { serveRun } from '../helpers/serve';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

function random(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 131 + seed * 17 + (i >> 9)) & 0xff;
  return b;
}

/** Region `r` of the source with `patches` (offsets from the region's start) laid over it. */
function expected(src: string, r: number, patches: Array<[number, Buffer]>): Buffer {
  const bytes = readRange(src, r * MIB, MIB);
  for (const [at, data] of patches) data.copy(bytes, at);
  return bytes;
}

/** `size` random bytes (from `seed`) cloned to `targets` image files, served, a client attached. */
async function servedCopy(
  t: TestContext,
  name: string,
  copy: { size: number; seed: number; targets: string[]; args: string[] },
) {
  const env = workspace(t, name);
  const src = env.file('src.img');
  writeRandomFile(src, copy.size, copy.seed);
  const targets = copy.targets.map((f) => env.file(f));
  const { run, serving, socket } = await serveRun(t, env, ['clone', src, ...targets, ...copy.args]);
  const client = await NbdClient.connect(socket);
  return { env, src, targets, run, client, job: serving.job as number };
}

test('whole-region writes and discards hydrate without reading the source; partial writes land on a copied region', async (t) => {
  const size = 32 * MIB;
  // Two destinations: the first is served, and every write reaches both.
  const { src, targets, run, client } = await servedCopy(t, 'serve-writes', {
    size,
    seed: 61,
    targets: ['dst.img', 'twin.img'],
    args: ['--max-rate', '8M', '--verify'],
  });
  const [dst, twin] = targets;
  const w1 = random(4096, 1);
  const w2 = random(MIB, 2);
  const w3 = random(4096, 3);
  await Promise.all([
    client.write(w1, 24 * MIB + 8192), // partial: region 24
    client.write(w2, 25 * MIB), // whole: region 25
    client.write(w3, 27 * MIB - 2048), // partial, over two regions: 26 and 27
    client.zero(28 * MIB, MIB), // whole region 28, zeroed
    client.trim(29 * MIB, MIB), // whole region 29, discarded
  ]);
  await client.flush();
  assert.deepEqual(await client.read(24 * MIB, MIB), expected(src, 24, [[8192, w1]]));
  assert.deepEqual(await client.read(25 * MIB, MIB), w2);
  assert.deepEqual(await client.read(28 * MIB, MIB), Buffer.alloc(MIB));
  await client.disconnect();

  const r = await run.done;
  assert.equal(r.code, 0, explain(r));
  const done = only(r, 'done');
  assert.equal(done.state, 'done');
  // Regions 25, 28 and 29 were never read from the source.
  assert.equal(done.bytesRead, size - 3 * MIB, 'bytes read from the source');
  assert.equal(done.regionsCopied, 32);
  const regions: Record<number, Buffer> = {
    24: expected(src, 24, [[8192, w1]]),
    25: w2,
    26: expected(src, 26, [[MIB - 2048, w3.subarray(0, 2048)]]),
    27: expected(src, 27, [[0, w3.subarray(2048)]]),
    28: Buffer.alloc(MIB),
  };
  for (let i = 0; i < 32; i++) {
    if (i === 29) continue; // discarded: its bytes are unspecified
    const want = regions[i] ?? readRange(src, i * MIB, MIB);
    assert.ok(readRange(dst, i * MIB, MIB).equals(want), `region ${i} of the destination`);
    assert.ok(readRange(twin, i * MIB, MIB).equals(want), `region ${i} of the second one`);
  }
  const verify = only(r, 'verify');
  assert.equal(verify.equal, true, explain(r));
  assert.deepEqual(verify.written, [{ offset: 24 * MIB, length: 6 * MIB }]);
  assert.match(r.stdout, /"type":"verify"/);
});

test('FLUSH, then kill -9, then resume: every write answered before the FLUSH is there, every other region is the source', async (t) => {
  const { env, src, targets, run, client, job } = await servedCopy(t, 'serve-kill', {
    size: 32 * MIB,
    seed: 62,
    targets: ['dst.img'],
    args: ['--max-rate', '4M'],
  });
  const [dst] = targets;
  // Where the copy began (copied, or in flight: the write waits for it), then ahead of it.
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 0);
  const onCopied = random(2048, 3);
  const partial = random(8192, 4);
  const whole = random(MIB, 5);
  const across = random(12288, 6);
  await Promise.all([
    client.write(onCopied, 1000),
    client.write(partial, 20 * MIB + 4096),
    client.write(whole, 21 * MIB),
    client.write(across, 23 * MIB - 4096),
    client.zero(24 * MIB, MIB),
  ]);
  await client.flush();
  // Answered, not flushed: may be lost, but a region is never half old, half new.
  const late = random(MIB, 7);
  const latePartial = random(4096, 8);
  await Promise.all([client.write(late, 27 * MIB), client.write(latePartial, 28 * MIB + 512)]);
  run.child.kill('SIGKILL');
  const killed = await run.done;
  assert.equal(killed.signal, 'SIGKILL', explain(killed));

  // Resumed served again: what was written before is known as written.
  const socket = env.file('again.sock');
  const resumed = await runCli(['resume', String(job), '--verify', '--serve', socket, '--json'], {
    db: env.db,
  });
  assert.equal(resumed.code, 0, explain(resumed));
  const states = resumed.events.filter((e) => e.type === 'serve').map((e) => e.state);
  assert.deepEqual(states, ['listening', 'closed']);
  assert.equal(only(resumed, 'done').state, 'done');
  const flushed: Record<number, Buffer> = {
    0: expected(src, 0, [[1000, onCopied]]),
    20: expected(src, 20, [[4096, partial]]),
    21: whole,
    22: expected(src, 22, [[MIB - 4096, across.subarray(0, 4096)]]),
    23: expected(src, 23, [[0, across.subarray(4096)]]),
    24: Buffer.alloc(MIB),
  };
  const either: Record<number, Buffer> = {
    27: late,
    28: expected(src, 28, [[512, latePartial]]),
  };
  for (let i = 0; i < 32; i++) {
    const got = readRange(dst, i * MIB, MIB);
    const source = readRange(src, i * MIB, MIB);
    if (flushed[i]) assert.ok(got.equals(flushed[i]), `region ${i}: the flushed write`);
    else if (either[i]) {
      assert.ok(got.equals(either[i]) || got.equals(source), `region ${i}: all new or all old`);
    } else assert.ok(got.equals(source), `region ${i}: the source's`);
  }
  // The regions written were recorded before the writes: the verify leaves them out.
  const verify = only(resumed, 'verify');
  assert.equal(verify.equal, true);
  assert.deepEqual(verify.written, [
    { offset: 0, length: MIB },
    { offset: 20 * MIB, length: 5 * MIB },
    { offset: 27 * MIB, length: 2 * MIB },
  ]);
  assert.ok(fs.existsSync(dst));
});

test('a read of an unhydrated region comes from the source at once, and its region is copied ahead of the rest', async (t) => {
  const { env, src, run, client, job } = await servedCopy(t, 'serve-read', {
    size: 96 * MIB,
    seed: 63,
    targets: ['dst.img'],
    args: ['--max-rate', '2M'],
  });
  assert.deepEqual(await client.read(80 * MIB + 100, 5000), readRange(src, 80 * MIB + 100, 5000));
  let map: CliEvent | undefined;
  for (let waited = 0; waited < 5000; waited += 250) {
    const r = await runCli(['map', String(job), '--format', 'json'], { db: env.db });
    map = only(r, 'map');
    const runs = map.hydrated as Array<{ first: number; count: number }>;
    if (runs.some((h) => h.first <= 80 && 80 < h.first + h.count)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const runs = map!.hydrated as Array<{ first: number; count: number }>;
  const has = (region: number) => runs.some((h) => h.first <= region && region < h.first + h.count);
  assert.ok(has(80), `region 80 was copied ahead: ${JSON.stringify(runs)}`);
  assert.ok(!has(60), 'while the regions before it wait their turn');

  // The latency of a read served from the source: one region each, none copied yet.
  const times: number[] = [];
  for (let i = 0; i < 200; i++) {
    const region = 20 + (i % 50);
    const offset = region * MIB + ((i * 40_960) % (MIB - 4096));
    const began = performance.now();
    const got = await client.read(offset, 4096);
    times.push(performance.now() - began);
    if (i % 50 === 0) assert.deepEqual(got, readRange(src, offset, 4096));
  }
  times.sort((a, b) => a - b);
  const median = times[100];
  const p99 = times[198];
  t.diagnostic(
    `4 KiB reads of unhydrated regions: median ${median.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms`,
  );
  // Ctrl-C while the client is attached: it is let go, and the copy stops resumable.
  run.child.kill('SIGINT');
  const r = await run.done;
  assert.equal(r.code, 130, explain(r));
  await assert.rejects(client.read(0, 4096));
  assert.equal(only(r, 'done').state, 'interrupted');
});

test('on drives with 4 KiB sectors (O_DIRECT), reads and writes at any byte offset land exactly', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'serve-4k');
  const size = 16 * MIB;
  const src = env.loop('src', size, { seed: 64, sectorSize: 4096 });
  const dst = env.loop('dst', size, { sectorSize: 4096 });
  const { run, socket } = await serveRun(t, env, [
    'clone',
    src.path,
    dst.path,
    '--max-rate',
    '4M',
    '--yes',
  ]);
  const client = await NbdClient.connect(socket);
  const source = readRange(src.file, 0, size);
  const want = Buffer.from(source);
  const writes: Array<[number, Buffer]> = [
    [5 * MIB + 3, random(100, 9)], // inside one sector of an unhydrated region
    [9 * MIB - 777, random(MIB + 1, 10)], // over two regions, neither edge aligned
    [12 * MIB, random(MIB, 11)], // a whole region
    [13 * MIB + 4095, random(2, 12)], // across a sector boundary
  ];
  for (const [at, data] of writes) {
    await client.write(data, at);
    data.copy(want, at);
  }
  for (const [at, length] of [
    [5 * MIB, 4096],
    [9 * MIB - 1000, 3000],
    [14 * MIB + 1, 77],
    [13 * MIB + 4090, 10],
  ]) {
    assert.deepEqual(
      await client.read(at, length),
      want.subarray(at, at + length),
      `${at}+${length}`,
    );
  }
  await client.flush();
  await client.disconnect();
  const r = await run.done;
  assert.equal(r.code, 0, explain(r));
  execFileSync('blockdev', ['--flushbufs', dst.path]);
  const got = readRange(dst.file, 0, size);
  for (let i = 0; i < 16; i++) {
    const part = (b: Buffer) => b.subarray(i * MIB, (i + 1) * MIB);
    assert.ok(part(got).equals(part(want)), `region ${i}`);
  }
});

test('a TRIM of the whole disk while it copies marks every region not yet copied hydrated, without trailing the copier', async (t) => {
  const size = 64 * MIB;
  const { run, client } = await servedCopy(t, 'serve-trim', {
    size,
    seed: 65,
    targets: ['dst.img'],
    args: ['--region-size', '64K', '--max-rate', '2M'],
  });
  await client.trim(0, size);
  await client.flush();
  assert.equal(run.events.filter((e) => e.type === 'done').length, 0, 'answered while it copies');
  await client.disconnect();
  const r = await run.done;
  assert.equal(r.code, 0, explain(r));
  const done = only(r, 'done');
  assert.equal(done.state, 'done');
  // Only what was copied before the TRIM came was read: the rest was discarded.
  assert.ok((done.bytesRead as number) < size / 4, `read ${String(done.bytesRead)} of ${size}`);
});
