// A backup to .img.zst through the command line: plain `zstd -d` restores it, `zstd -l`
// reads it, kill -9 at any moment and a resume (or the same clone again) still ends in
// a backup that restores byte-identical; a drive can be the source.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { runCli, spawnCli, explain, only } from '../helpers/cli';
import { sha256, writeMixedFile } from '../helpers/files';
import { attachLoop, requireRoot } from '../helpers/loop';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const SIZE = 64 * MIB;

/** sha256 of what `zstd -d -c` restores from `zst` (written to `out`). */
function restoredSha(zst: string, out: string): string {
  const fd = fs.openSync(out, 'w');
  try {
    const r = spawnSync('zstd', ['-d', '-c', '-q', zst], { stdio: ['ignore', fd, 'pipe'] });
    assert.equal(r.status, 0, `zstd -d ${zst}: ${String(r.stderr)}`);
  } finally {
    fs.closeSync(fd);
  }
  return sha256(out);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a 64 MiB mixed image backed up to .img.zst: zstd -d restores it, zstd -l accepts it', async (t) => {
  const env = workspace(t, 'images-backup-plain');
  const src = env.file('src.img');
  writeMixedFile(src, SIZE, 501);
  const want = sha256(src);
  const zst = env.file('x.img.zst');

  const r = await runCli(['clone', src, zst, '--json'], { db: env.db });
  assert.equal(r.code, 0, explain(r));
  const done = only(r, 'done');
  assert.equal(done.state, 'done');
  assert.equal(done.regionsCopied, 64);
  assert.equal(done.bytesRead, SIZE);

  assert.equal(restoredSha(zst, env.file('restored.img')), want);
  const list = spawnSync('zstd', ['-l', '-v', zst], { encoding: 'utf8' });
  assert.equal(list.status, 0, `zstd -l: ${list.stderr}`);
  assert.match(list.stdout, /Decompressed Size: .*\(67108864 B\)/);
  assert.equal(spawnSync('zstd', ['-t', '-q', zst]).status, 0, 'zstd -t');
  const ratio = fs.statSync(zst).size / SIZE;
  // Every third MiB is zeros, the rest random: about 2/3 of the size remains.
  assert.ok(ratio < 0.72, `compressed to ${ratio.toFixed(3)} of the image`);
  t.diagnostic(
    `backup ${fs.statSync(zst).size} bytes (${ratio.toFixed(3)} of the image) in ` +
      `${(done.seconds as number).toFixed(2)} s`,
  );
  assert.equal(sha256(src), want, 'the source is never written');
});

test('5 rounds: kill -9 at a random moment during a backup, resume (or clone again): zstd -d identical', async (t) => {
  const env = workspace(t, 'images-backup-kill');
  const src = env.file('src.img');
  writeMixedFile(src, SIZE, 502);
  const want = sha256(src);
  const expectedMs = (SIZE / (24 * MIB)) * 1000;
  let killed = 0;

  for (let round = 0; round < 5; round++) {
    await t.test(`round ${round + 1}`, async (st) => {
      const zst = env.file(`x-${round}.img.zst`);
      const cloneArgs = ['clone', src, zst, '--json'];
      const run = spawnCli([...cloneArgs, '--max-rate', '24M'], { db: env.db });
      const start = await run.waitEvent((e) => e.type === 'start');
      const job = start.job as number;
      const total = start.regionsTotal as number;
      assert.equal(start.resumed, false);
      const delay = Math.round(100 + Math.random() * (expectedMs * 0.9 - 100));
      await sleep(delay);
      run.child.kill('SIGKILL');
      const killedRun = await run.done; // the process is gone before anyone resumes
      if (killedRun.code === 0) {
        st.diagnostic(`finished before the kill at ${delay} ms`);
        assert.equal(restoredSha(zst, env.file('restored.img')), want);
        return;
      }
      assert.equal(killedRun.signal, 'SIGKILL', explain(killedRun));
      killed += 1;
      const onDisk = fs.existsSync(zst) ? fs.statSync(zst).size : 0;
      const map = await runCli(['map', String(job), '--format', 'json'], { db: env.db });
      assert.equal(map.code, 0, explain(map));
      const hydratedAtKill = only(map, 'map').regionsHydrated as number;
      assert.ok(hydratedAtKill < total, 'killed before the end');

      const viaResume = round % 2 === 0;
      const resumed = await runCli(
        viaResume ? ['resume', String(job), '--max-rate', '0', '--json'] : cloneArgs,
        { db: env.db },
      );
      assert.equal(resumed.code, 0, `${viaResume ? 'resume' : 'clone again'}: ${explain(resumed)}`);
      const rs = only(resumed, 'start');
      assert.equal(rs.job, job, 'the same job goes on');
      assert.equal(rs.resumed, true);
      const from = rs.regionsHydrated as number;
      // It goes on from the last complete frame at or before the committed prefix.
      assert.ok(from <= hydratedAtKill, `resumed from ${from} > ${hydratedAtKill} committed`);
      const done = only(resumed, 'done');
      assert.equal(done.state, 'done');
      assert.equal(from + (done.regionsCopied as number), total);
      st.diagnostic(
        `killed ${delay} ms in: ${hydratedAtKill}/${total} regions committed, ${onDisk} bytes on disk; ` +
          `${viaResume ? 'resume' : 'clone again'} went on from region ${from}, copied ${String(done.regionsCopied)}`,
      );
      assert.equal(restoredSha(zst, env.file('restored.img')), want, 'zstd -d restores the source');
      assert.equal(spawnSync('zstd', ['-l', zst]).status, 0, 'zstd -l accepts the resumed backup');
    });
  }
  assert.ok(killed >= 4, `only ${killed} of 5 rounds were killed mid-backup`);
  assert.equal(sha256(src), want, 'the source is never written');
});

test('a backup from a loop device source restores byte-identical', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'images-backup-loop');
  const img = env.file('disk.img');
  writeMixedFile(img, SIZE, 503);
  const want = sha256(img);
  const loop = attachLoop(img, { readOnly: true });
  t.after(() => loop.detach());
  const zst = env.file('x.img.zst');

  const r = await runCli(['clone', loop.path, zst, '--json'], { db: env.db });
  assert.equal(r.code, 0, explain(r));
  const done = only(r, 'done');
  assert.equal(done.bytesRead, SIZE);
  assert.equal(restoredSha(zst, env.file('restored.img')), want);
  execFileSync('blockdev', ['--flushbufs', loop.path]);
  assert.equal(sha256(loop.path), want);
});
