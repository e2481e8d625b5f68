// GNU ddrescue interplay through the command line: a partial rescue made by the real
// `ddrescue` seeds a clone (`--from-map`: its finished areas are not copied again),
// the result is identical; `map JOB --format ddrescue` passes `ddrescuelog -t` and
// ddrescue itself can finish an interrupted job from it; a malformed mapfile is
// refused naming its line.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { runCli, spawnCli, explain, only } from '../helpers/cli';
import { sha256, writeMixedFile, writeRandomFile } from '../helpers/files';
import { attachLoop, requireRoot } from '../helpers/loop';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const SIZE = 32 * MIB;
const REGION = MIB;

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The `pos size status` lines of a ddrescue mapfile (as ddrescue writes them: hex). */
function blocks(mapfile: string): Array<{ pos: number; size: number; status: string }> {
  const lines = fs
    .readFileSync(mapfile, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  return lines.slice(1).map((l) => {
    const [pos, size, status] = l.split(/\s+/);
    return { pos: Number(pos), size: Number(size), status };
  });
}

/** Regions wholly inside finished ('+') areas. */
function finishedRegions(mapfile: string, size: number): Set<number> {
  const done = new Uint8Array(size);
  for (const b of blocks(mapfile)) if (b.status === '+') done.fill(1, b.pos, b.pos + b.size);
  const regions = new Set<number>();
  for (let r = 0; r * REGION < size; r++) {
    if (done.subarray(r * REGION, Math.min(size, (r + 1) * REGION)).every((x) => x === 1))
      regions.add(r);
  }
  return regions;
}

/** Two partial ddrescue runs: the first 8 MiB, then 6500 KiB from 20 MiB (ends mid-region). */
function partialRescue(src: string, dst: string, map: string): void {
  const force = fs.existsSync(dst) && fs.statSync(dst).isBlockDevice() ? ['-f'] : [];
  sh('ddrescue', ['-q', ...force, '-s', '8Mi', src, dst, map]);
  sh('ddrescue', ['-q', ...force, '-i', '20Mi', '-s', '6500Ki', src, dst, map]);
}

async function fromMapClone(
  t: TestContext,
  env: { db: string; file(name: string): string },
  src: string,
  dst: string,
  map: string,
): Promise<void> {
  const finished = finishedRegions(map, SIZE);
  assert.deepEqual(
    [...finished],
    [0, 1, 2, 3, 4, 5, 6, 7, 20, 21, 22, 23, 24, 25],
    'ddrescue rescued what was asked',
  );
  const r = await runCli(['clone', src, dst, '--from-map', map, '--yes', '--json'], {
    db: env.db,
  });
  assert.equal(r.code, 0, explain(r));
  const start = only(r, 'start');
  const done = only(r, 'done');
  const total = SIZE / REGION;
  assert.equal(start.regionsHydrated, finished.size, 'the finished regions are hydrated at once');
  assert.equal(done.regionsCopied, total - finished.size, 'only the unfinished regions are copied');
  assert.equal(done.bytesRead, (total - finished.size) * REGION);
  t.diagnostic(
    `map: ${finished.size}/${total} regions finished by ddrescue; drivetwin copied ${String(done.regionsCopied)} ` +
      `(${String(done.bytesRead)} bytes read)`,
  );
  if (fs.statSync(dst).isBlockDevice()) execFileSync('blockdev', ['--flushbufs', dst]);
  assert.equal(sha256(dst), sha256(src), 'the destination ends identical to the source');

  const exported = env.file(`export-${start.job as number}.map`);
  const m = await runCli(['map', String(start.job), '--format', 'ddrescue'], { db: env.db });
  assert.equal(m.code, 0, explain(m));
  fs.writeFileSync(exported, m.stdout);
  sh('ddrescuelog', ['-t', exported]);
  assert.deepEqual(blocks(exported), [{ pos: 0, size: SIZE, status: '+' }]);
  // ddrescuelog -D: exit 0 when the map says everything is finished.
  assert.equal(spawnSync('ddrescuelog', ['-D', exported]).status, 0, 'ddrescuelog -D: finished');
}

test('--from-map onto a drive partly rescued by ddrescue: only the rest is copied, identical; map exports', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'images-map-loop');
  const src = env.file('src.img');
  writeMixedFile(src, SIZE, 801);
  const backing = env.file('drive');
  writeRandomFile(backing, SIZE, 802);
  const dst = attachLoop(backing);
  t.after(() => dst.detach());
  const map = env.file('rescue.map');
  partialRescue(src, dst.path, map);
  await fromMapClone(t, env, src, dst.path, map);
});

test('--from-map onto an image file partly rescued by ddrescue: the rescued part is kept, identical', async (t) => {
  const env = workspace(t, 'images-map-file');
  const src = env.file('src.img');
  writeMixedFile(src, SIZE, 803);
  const dst = env.file('rescued.img');
  const map = env.file('rescue.map');
  partialRescue(src, dst, map);
  assert.ok(fs.statSync(dst).size < SIZE, 'ddrescue left the image short of the source');
  await fromMapClone(t, env, src, dst, map);
});

test('an interrupted job exported as a ddrescue map: ddrescuelog -t accepts it, ddrescue finishes the copy', async (t) => {
  const env = workspace(t, 'images-map-export');
  const src = env.file('src.img');
  writeMixedFile(src, SIZE, 804);
  const dst = env.file('dst.img');
  // Few regions in flight and a slow rate: the stop lands mid-copy (about 8 s in all).
  const run = spawnCli(
    [
      'clone',
      src,
      dst,
      '--max-rate',
      '4M',
      '--threshold',
      '2',
      '--batch',
      '1',
      '--no-sparse',
      '--json',
    ],
    { db: env.db },
  );
  const start = await run.waitEvent((e) => e.type === 'start');
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) >= 4);
  run.child.kill('SIGINT');
  const stopped = await run.done;
  assert.equal(stopped.code, 130, explain(stopped));
  const job = String(start.job);

  const json = await runCli(['map', job, '--format', 'json'], { db: env.db });
  const report = only(json, 'map');
  const hydrated = report.regionsHydrated as number;
  assert.ok(hydrated > 0 && hydrated < SIZE / REGION, `hydrated ${hydrated}`);

  const text = await runCli(['map', job, '--format', 'ddrescue'], { db: env.db });
  assert.equal(text.code, 0, explain(text));
  const exported = env.file('job.map');
  fs.writeFileSync(exported, text.stdout);
  const summary = sh('ddrescuelog', ['-t', exported]);
  const finished = blocks(exported)
    .filter((b) => b.status === '+')
    .reduce((n, b) => n + b.size, 0);
  assert.equal(finished, hydrated * REGION, 'the + areas are the hydrated regions');
  assert.equal(
    blocks(exported).reduce((n, b) => n + b.size, 0),
    SIZE,
    'the map covers the source',
  );
  assert.notEqual(spawnSync('ddrescuelog', ['-D', exported]).status, 0, 'not finished yet');
  t.diagnostic(
    `${hydrated}/${SIZE / REGION} regions hydrated at the stop; ddrescuelog -t:\n${summary.trim()}`,
  );

  // ddrescue takes over from the exported map and copies only what is not '+'.
  sh('ddrescue', ['-q', src, dst, exported]);
  assert.equal(sha256(dst), sha256(src));
  assert.equal(spawnSync('ddrescuelog', ['-D', exported]).status, 0, 'ddrescue finished it');
});

test('a malformed mapfile is refused (exit 2) naming its line; nothing is written', async (t) => {
  const env = workspace(t, 'images-map-bad');
  const src = env.file('src.img');
  writeMixedFile(src, SIZE, 805);
  const dst = env.file('dst.img');
  writeRandomFile(dst, SIZE, 806);
  const before = sha256(dst);
  const cases: Array<[string, string, RegExp]> = [
    [
      'a bad status',
      '# Mapfile\n0x00000000     +\n#  pos size status\n0x00000000  0x00800000  +\n0x00800000  0x01800000  X\n',
      /mapfile line 5: "X" is not a block status/,
    ],
    ['a gap between blocks', '0 ?\n0 0x100000 +\n0x200000 0x100000 ?\n', /mapfile line 3: .*gap/],
    [
      'a missing field',
      '# c\n\n0x0 +\n0x0 +\n',
      /mapfile line 4: a block line is "pos size status"/,
    ],
    ['not a mapfile at all', 'hello world\n', /mapfile line 1:/],
    ['finished data past the source', `0 +\n0 ${SIZE + MIB} +\n`, /past the source/],
  ];
  for (const [name, text, why] of cases) {
    await t.test(name, async () => {
      const map = env.file('bad.map');
      fs.writeFileSync(map, text);
      const r = await runCli(['clone', src, dst, '--from-map', map, '--json'], { db: env.db });
      assert.equal(r.code, 2, explain(r));
      assert.match(
        r.stderr,
        new RegExp(`--from-map ${map.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
      );
      assert.match(r.stderr, why, explain(r));
      assert.ok(!r.events.some((e) => e.type === 'start'), 'no job started');
      assert.equal(sha256(dst), before, 'the destination was written');
    });
  }
  const missing = await runCli(['clone', src, dst, '--from-map', env.file('nope.map')], {
    db: env.db,
  });
  assert.equal(missing.code, 2, explain(missing));
  assert.equal(sha256(dst), before);
});

test('--from-map is refused (exit 2) where the destination cannot hold ddrescue’s data: missing file, .img.zst', async (t) => {
  const env = workspace(t, 'images-map-nowhere');
  const src = env.file('src.img');
  writeMixedFile(src, SIZE, 807);
  const map = env.file('rescue.map');
  partialRescue(src, env.file('rescued.img'), map);
  for (const dst of [env.file('new.img'), env.file('backup.img.zst')]) {
    await t.test(path.basename(dst), async () => {
      const r = await runCli(['clone', src, dst, '--from-map', map, '--json'], { db: env.db });
      assert.equal(r.code, 2, explain(r));
      assert.match(r.stderr, /--from-map/);
      assert.ok(!fs.existsSync(dst), `${dst} was created`);
    });
  }
});
