// A power cut on the destination: the engine is killed (-9) at a random moment and
// the destination drive loses, at that moment, every write it had not flushed
// (nbdkit's cache=writeback filter, killed). Every region the map calls hydrated
// must still be on the drive's medium (invariant 1: flush before commit); after the
// drive comes back the job completes and the medium equals the source.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli, spawnCli, type CliResult, explain, only } from '../helpers/cli';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { attachLoop, requireRoot, type LoopDevice } from '../helpers/loop';
import { forgetfulDrive, type NbdDrive } from '../helpers/nbd';

const MIB = 1024 * 1024;
const SIZE = 128 * MIB;
const RATE = 48 * MIB; // --max-rate: about 2.7 s per clone
const EXPECTED_MS = (SIZE / RATE) * 1000;

/** moved: the drive comes back under another /dev/loopN (its old number is taken meanwhile). */
const ROUNDS: Array<{ region: string; regionSize: number; moved?: boolean }> = [
  { region: '1M', regionSize: MIB },
  { region: '1M', regionSize: MIB },
  { region: '64K', regionSize: 64 * 1024 },
  { region: '1M', regionSize: MIB, moved: true },
  { region: '64K', regionSize: 64 * 1024 },
  { region: '1M', regionSize: MIB, moved: true },
];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Reads `length` bytes at `offset` through an open descriptor. */
function readAt(fd: number, buf: Buffer, offset: number): Buffer {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

/** Compares every region in `runs` between two files; returns the differing region indices. */
function compareRegions(
  a: string,
  b: string,
  regionSize: number,
  runs: Array<{ first: number; count: number }>,
): { checked: number; differing: number[] } {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  const ba = Buffer.alloc(regionSize);
  const bb = Buffer.alloc(regionSize);
  let checked = 0;
  const differing: number[] = [];
  try {
    for (const run of runs) {
      for (let r = run.first; r < run.first + run.count; r++) {
        const x = readAt(fa, ba, r * regionSize);
        const y = readAt(fb, bb, r * regionSize);
        if (!x.equals(y)) differing.push(r);
        checked++;
      }
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
  return { checked, differing };
}

test(`${ROUNDS.length} power cuts at random moments: every hydrated region is on the medium, then the job completes identically`, async (t) => {
  if (!requireRoot(t)) return;
  const tmp = tempDir('drivetwin-power-cut-');
  const drives: NbdDrive[] = [];
  const placeholders: LoopDevice[] = [];
  const children: Array<{ kill(signal: NodeJS.Signals): boolean; exitCode: number | null }> = [];
  t.after(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const d of drives) d.stop({ kill: true });
    for (const p of placeholders) p.detach();
    tmp.cleanup();
  });
  const source = path.join(tmp.dir, 'source.img');
  writeRandomFile(source, SIZE, 90);
  const want = sha256(source);
  const backing = path.join(tmp.dir, 'backing.img');
  const summary: string[] = [];
  let roundsWithChecks = 0;
  let resumedOntoNewDrive = 0;
  let samePath = 0;
  const refusals: string[] = [];

  const placeholderFile = path.join(tmp.dir, 'placeholder.img');
  fs.writeFileSync(placeholderFile, Buffer.alloc(MIB));

  for (const [i, { region, regionSize, moved }] of ROUNDS.entries()) {
    await t.test(`round ${i + 1} (region ${region})`, async (rt) => {
      // A blank medium each round, so nothing left from the last round can pass for hydrated.
      fs.rmSync(backing, { force: true });
      fs.writeFileSync(backing, '');
      fs.truncateSync(backing, SIZE);
      const db = path.join(tmp.dir, `jobs-${i + 1}.db`);
      const drive = await forgetfulDrive(backing);
      drives.push(drive);
      const dest = drive.loop!.path;
      const cloneArgs = [
        'clone',
        source,
        dest,
        '--region-size',
        region,
        '--max-rate',
        '48M',
        '--yes',
        '--json',
      ];

      const run = spawnCli(cloneArgs, { db });
      children.push(run.child);
      const start = await run.waitEvent((e) => e.type === 'start');
      const job = start.job as number;
      const regionsTotal = start.regionsTotal as number;
      assert.equal(start.regionSize, regionSize);
      const delay = Math.round((0.45 + Math.random() * 0.5) * EXPECTED_MS);
      await sleep(delay);
      run.child.kill('SIGKILL');
      const r = await run.done;
      // The power cut: whatever the drive had not flushed is gone.
      drive.stop({ kill: true });
      const killed = r.signal === 'SIGKILL';
      if (!killed)
        assert.equal(
          r.code,
          0,
          `the clone ended by itself, so it must have succeeded\n${explain(r)}`,
        );

      const m = await runCli(['map', String(job), '--format', 'json'], { db });
      assert.equal(m.code, 0, explain(m));
      const map = only(m, 'map');
      assert.equal(map.regionSize, regionSize);
      assert.equal(map.regionsTotal, regionsTotal);
      const runs = map.hydrated as Array<{ first: number; count: number }>;
      const { checked, differing } = compareRegions(source, backing, regionSize, runs);
      assert.equal(checked, map.regionsHydrated, 'the runs add up to regionsHydrated');
      // For interest: regions on the medium although not (yet) committed.
      const hydrated = new Set(
        runs.flatMap((x) => Array.from({ length: x.count }, (_, k) => x.first + k)),
      );
      const all = compareRegions(source, backing, regionSize, [{ first: 0, count: regionsTotal }]);
      const differs = new Set(all.differing);
      let beyond = 0;
      for (let k = 0; k < regionsTotal; k++) if (!hydrated.has(k) && !differs.has(k)) beyond++;
      const line =
        `round ${i + 1}: region ${region}, killed ${killed ? `after ${delay} ms` : 'too late (finished)'}, ` +
        `hydrated regions checked ${checked}/${regionsTotal}, differing ${differing.length}, ` +
        `on the medium but not marked ${beyond}`;
      rt.diagnostic(line);
      summary.push(line);
      assert.deepEqual(
        differing.slice(0, 20),
        [],
        `invariant 1 broken: ${differing.length} regions the map calls hydrated are not on the medium after the power cut (first: ${differing.slice(0, 20).join(', ')})`,
      );
      if (checked > 0) roundsWithChecks++;

      // Power back on: the same medium, maybe under another /dev/loopN. In a "moved"
      // round another loop device holds the old number while the drive comes back,
      // then lets it go: the old path is free, the drive is elsewhere.
      let placeholder: LoopDevice | undefined;
      if (moved) {
        placeholder = attachLoop(placeholderFile);
        placeholders.push(placeholder);
      }
      const back = await forgetfulDrive(backing);
      drives.push(back);
      placeholder?.detach();
      if (moved) {
        rt.diagnostic(
          `moved: ${dest} came back as ${back.loop!.path} (placeholder took ${placeholder!.path})`,
        );
      }
      if (back.loop!.path === dest) samePath++;
      if (killed) {
        let finished: CliResult;
        const resumed = await runCli(['resume', String(job), '--yes', '--json'], { db });
        if (resumed.code === 0) {
          resumedOntoNewDrive++;
          rt.diagnostic(`resumed: ${dest} came back as ${back.loop!.path}`);
          const rs = only(resumed, 'start');
          assert.equal(rs.job, job);
          assert.equal(rs.regionsHydrated, checked, 'the resume starts from the committed map');
          const done = only(resumed, 'done');
          assert.equal(
            checked + (done.regionsCopied as number),
            regionsTotal,
            'the resume copies exactly the regions not committed before the cut',
          );
          finished = resumed;
        } else {
          // Limitation: the job can't follow its drive to a new device node.
          assert.equal(resumed.code, 2, `resume refused or done, not failed\n${explain(resumed)}`);
          const why = String(only(resumed, 'error').message);
          refusals.push(`round ${i + 1}: ${dest} -> ${back.loop!.path}: ${why}`);
          rt.diagnostic(`resume refused (${dest} came back as ${back.loop!.path}): ${why}`);
          finished = await runCli(
            ['clone', source, back.loop!.path, '--region-size', region, '--yes', '--json'],
            {
              db,
            },
          );
        }
        assert.equal(finished.code, 0, explain(finished));
        assert.equal(only(finished, 'done').state, 'done');
      }
      back.stop(); // a clean eject: flushed
      assert.equal(sha256(backing), want, `round ${i + 1}: the medium differs from the source`);
    });
  }
  for (const line of summary) t.diagnostic(line);
  t.diagnostic(
    `resumed onto the drive after the power cut in ${resumedOntoNewDrive} rounds (${samePath} on the same /dev/loopN); refused in ${refusals.length}`,
  );
  for (const line of refusals) t.diagnostic(`resume refused, fresh clone instead: ${line}`);
  assert.ok(
    roundsWithChecks >= ROUNDS.length - 1,
    `hydrated regions were checked in only ${roundsWithChecks} of ${ROUNDS.length} rounds`,
  );
  assert.equal(sha256(source), want, 'the source is never written');
});
