// Unknown sizes are guesses, and failed means what it says: a compressed image that
// doesn't state its size is said to be a guess before a drive is written; once it
// proves bigger than the drive the copy stops — failed, for good, with no promise of a
// resume — and `drivetwin size` or `clone --measure` knows the size first. A damaged
// compressed source fails for good too, saying where; what was copied of a job of
// unknown size shows in its list line and its maps. A read-only database folder is
// called that.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { explain, expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

/** An image of `size` random bytes (`seed`), and its .bz2 (which says no size). */
function bzip2Image(env: Workspace, size: number, seed: number): { image: string; src: string } {
  const image = env.file('image.img');
  writeRandomFile(image, size, seed);
  execFileSync('bzip2', ['-1', '-k', '-f', image]);
  return { image, src: `${image}.bz2` };
}

test('a .bz2 onto a drive smaller than its image: a guess said first, a stop at the drive’s end, for good; size and --measure know first', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'unknown-small-drive');
  const { src } = bzip2Image(env, 40 * MIB, 91);
  const drive = env.loop('drive', 24 * MIB, { seed: 92 });
  const first = await runCli(['clone', src, drive.path, '--yes', '--json'], { db: env.db });
  expectExit(first, 1);
  const start = only(first, 'start');
  assert.equal(start.sizeKnown, false);
  assert.match(start.sizeNote as string, /doesn't say how big its image is: about .* is a guess/);
  assert.match(start.sizeNote as string, /drivetwin size /);
  const done = only(first, 'done');
  assert.equal(done.state, 'failed', explain(first));
  assert.equal(done.resumable, false, explain(first));
  assert.match(
    done.error as string,
    new RegExp(
      `the image is bigger than ${drive.path} \\(at least .*\\); this copy can’t finish on it`,
    ),
  );
  const words = await runCli(['jobs'], { db: env.db });
  assert.match(words.stdout, /failed, for good/);
  const again = await runCli(['resume', String(done.job), '--yes', '--json'], { db: env.db });
  expectExit(again, 2);
  assert.match(only(again, 'error').message as string, /can't be resumed: the image is bigger/);

  // Certainty first: measured by decompressing, nothing written.
  const size = await runCli(['size', src, '--json'], { db: env.db });
  expectExit(size, 0);
  assert.equal(only(size, 'size').size, 40 * MIB);
  assert.equal(only(size, 'size').measured, true);
  const before = sha256(drive.path);
  const measured = await runCli(
    ['clone', src, drive.path, '--measure', '--fresh', '--yes', '--json'],
    {
      db: env.db,
    },
  );
  expectExit(measured, 2);
  assert.match(
    only(measured, 'error').message as string,
    /smaller than the source/,
    explain(measured),
  );
  assert.equal(sha256(drive.path), before, 'nothing written');
});

test('the confirmation on a terminal says the size of a .bz2 is a guess', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'unknown-confirm');
  const { src } = bzip2Image(env, 8 * MIB, 93);
  const drive = env.loop('drive', 16 * MIB);
  const bin = require.resolve('../../../bin/drivetwin.js');
  const command = [process.execPath, bin, 'clone', src, drive.path, '--db', env.db]
    .map((a) => `'${a}'`)
    .join(' ');
  // `script` gives the command a terminal; it answers "no".
  const run = spawnSync('script', ['-qec', command, '/dev/null'], {
    input: 'no\n',
    encoding: 'utf8',
  });
  const shown = run.stdout;
  assert.equal(run.status, 2, shown);
  assert.match(shown, /will be overwritten/);
  assert.match(shown, /doesn't say how big its image is: about .* is a guess/, shown);
  assert.match(shown, /not confirmed: nothing was written/);
});

test('a damaged compressed source: failed for good, saying where; its job list line and maps show what was copied', async (t) => {
  const env = workspace(t, 'unknown-damaged');
  const { src: good } = bzip2Image(env, 40 * MIB, 94);
  const src = env.file('damaged.img.bz2');
  const bytes = fs.readFileSync(good);
  for (let i = 0; i < 512; i++) bytes[Math.floor(bytes.length * 0.6) + i] ^= 0x55;
  fs.writeFileSync(src, bytes);
  const dst = env.file('dst.img');
  const r = await runCli(['clone', src, dst, '--json'], { db: env.db });
  expectExit(r, 1);
  const done = only(r, 'done');
  assert.equal(done.state, 'failed');
  assert.equal(done.resumable, false, explain(r));
  assert.match(done.error as string, /at byte \d+ .*corrupt.*damaged there/, explain(r));
  const again = await runCli(['resume', String(done.job), '--json'], { db: env.db });
  expectExit(again, 2);
  assert.match(only(again, 'error').message as string, /can't be resumed/);

  const listed = await runCli(['jobs', '--json'], { db: env.db });
  const job = only(listed, 'job');
  assert.equal(job.bytesTotal, null, 'no size is made up');
  assert.equal(job.resumable, false);
  const copied = job.bytesCopied as number;
  assert.ok(copied >= MIB && copied < 40 * MIB, `${copied} bytes copied`);
  const line = (await runCli(['jobs'], { db: env.db })).stdout;
  assert.match(line, /\?%\s+≥ \d/, line);
  const map = await runCli(['map', String(done.job), '--format', 'ddrescue'], { db: env.db });
  expectExit(map, 0);
  assert.match(
    map.stdout,
    new RegExp(`^0x00000000  0x${copied.toString(16).toUpperCase().padStart(8, '0')}  \\+$`, 'm'),
    map.stdout,
  );
  const json = JSON.parse((await runCli(['map', String(done.job)], { db: env.db })).stdout);
  assert.equal(json.size, null);
  assert.equal(json.regionsHydrated * json.regionSize, copied);
});

test('a job database in a read-only folder is called that, not "not a DriveTwin job database"', async (t) => {
  if (!requireRoot(t)) return;
  const folder = tempDir('drivetwin-ro-db-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4M', 'tmpfs', folder.dir]);
  t.after(() => {
    execFileSync('umount', ['-l', folder.dir]);
    folder.cleanup();
  });
  const db = `${folder.dir}/jobs.db`;
  expectExit(await runCli(['jobs'], { db }), 0);
  execFileSync('mount', ['-o', 'remount,ro', folder.dir]);
  for (const file of [db, `${folder.dir}/new.db`]) {
    const r = await runCli(['jobs', '--json'], { db: file });
    expectExit(r, 2);
    const message = only(r, 'error').message as string;
    assert.match(message, /is in a read-only folder .*\(EROFS\)/, message);
    assert.doesNotMatch(message, /not a DriveTwin job database/);
  }
});

test('a job of unknown size resumed: the regions already done, not a share of a guessed total', async (t) => {
  const env = workspace(t, 'unknown-resume');
  const { image, src } = bzip2Image(env, 40 * MIB, 95);
  const dst = env.file('dst.img');
  const run = spawnCli(['clone', src, dst, '--max-rate', '4M', '--json'], { db: env.db });
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 2);
  run.child.kill('SIGTERM');
  expectExit(await run.done, 130);
  const back = await runCli(['resume', '1'], { db: env.db });
  expectExit(back, 0);
  assert.match(back.stdout, /\(about [^,]+, \d+ regions already done\)/, explain(back));
  assert.equal(sha256(dst), sha256(image));
});
