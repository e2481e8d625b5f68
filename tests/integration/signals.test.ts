// Signals always win: SIGTERM or SIGINT stops a copy within a second at any rate cap
// (a batch waiting for its turn under the cap, or in the middle of its sub-jobs, stops
// there), the job stays resumable, and a cap too low to make sense is refused up front.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { explain, expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { sha256, writeRandomFile } from '../helpers/files';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

for (const [cap, signal] of [
  ['64K', 'SIGTERM'],
  ['256K', 'SIGINT'],
  ['1M', 'SIGTERM'],
] as const) {
  test(`--max-rate ${cap}: ${signal} stops the copy within a second, resumable`, async (t) => {
    const env = workspace(t, 'signal');
    const src = env.file('src.img');
    const dst = env.file('dst.img');
    writeRandomFile(src, 32 * MIB, 71);
    const run = spawnCli(['clone', src, dst, '--max-rate', cap, '--json'], { db: env.db });
    await run.waitEvent((e) => e.type === 'start');
    // Batches are waiting for the cap by now, and others are between their sub-jobs.
    await new Promise((r) => setTimeout(r, 2000));
    const sent = performance.now();
    run.child.kill(signal);
    const r = await run.done;
    const seconds = (performance.now() - sent) / 1000;
    t.diagnostic(`--max-rate ${cap}: ${signal} to exit ${seconds.toFixed(3)} s`);
    expectExit(r, 130);
    const done = only(r, 'done');
    assert.equal(done.state, 'interrupted', explain(r));
    assert.ok(seconds <= 1, `${signal} to exit took ${seconds.toFixed(3)} s\n${explain(r)}`);
    const again = await runCli(['resume', String(done.job), '--max-rate', '0', '--json'], {
      db: env.db,
    });
    expectExit(again, 0);
    assert.equal(sha256(dst), sha256(src));
  });
}

test('a rate cap under 64K/s is refused with a message, nothing written; on resume too', async (t) => {
  const env = workspace(t, 'signal-low');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeRandomFile(src, 4 * MIB, 72);
  for (const cap of ['3', '1K', '63K']) {
    const r = await runCli(['clone', src, dst, '--max-rate', cap, '--json'], { db: env.db });
    expectExit(r, 2);
    assert.match(
      only(r, 'error').message as string,
      /a rate cap under 64K\/s .* is too slow for a disk copy/,
      explain(r),
    );
    assert.ok(!fs.existsSync(dst), `--max-rate ${cap}: nothing written`);
  }
  const first = spawnCli(['clone', src, dst, '--max-rate', '64K', '--json'], { db: env.db });
  const start = await first.waitEvent((e) => e.type === 'start');
  first.child.kill('SIGTERM');
  expectExit(await first.done, 130);
  const resumed = await runCli(['resume', String(start.job), '--max-rate', '2K', '--json'], {
    db: env.db,
  });
  expectExit(resumed, 2);
  assert.match(only(resumed, 'error').message as string, /a rate cap under 64K\/s/);
});
