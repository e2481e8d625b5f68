// What a job says when things go wrong is what is so: a destination that fails makes
// the job failed (never done) and comes back once fixed; a drive that is gone is not a
// bad sector; a verify that never ended is not "verified"; a deleted database stops
// the job with a way back.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test, type TestContext } from 'node:test';
import { type CliEvent, explain, expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { pluggableDrive } from '../helpers/nbd';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

async function job(db: string, id: number): Promise<CliEvent> {
  const r = await runCli(['jobs', '--json'], { db });
  expectExit(r, 0);
  const found = r.events.find((e) => e.job === id);
  assert.ok(found, `job ${id} is listed: ${r.stdout}`);
  return found;
}

/** A tmpfs of `size` bytes in a folder of its own, unmounted and removed when the test ends. */
function smallTmpfs(t: { after(fn: () => void): void }, size: number): string {
  const { dir, cleanup } = tempDir('drivetwin-tmpfs-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  t.after(() => {
    execFileSync('umount', ['-l', dir]);
    cleanup();
  });
  return dir;
}

/** A source of `size` random bytes, an image destination, and an empty pluggable drive destination. */
async function twoDestinations(t: TestContext, prefix: string, size: number, seed: number) {
  const env = workspace(t, prefix);
  const src = env.file('src.img');
  writeRandomFile(src, size, seed);
  const backing = env.file('backing.img');
  fs.writeFileSync(backing, Buffer.alloc(0));
  fs.truncateSync(backing, size);
  const drive = await pluggableDrive(backing);
  t.after(() => drive.stop({ kill: true }));
  return { env, src, other: env.file('other.img'), drive, dst: drive.loop.path };
}

test('two destinations, one on a full file system: the job is failed, not done; with room made, the same clone brings it back', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'fail-full');
  const src = env.file('src.img');
  writeRandomFile(src, 48 * MIB, 11);
  const roomy = env.file('roomy.img');
  const small = smallTmpfs(t, 16 * MIB);
  const cramped = `${small}/cramped.img`;

  const first = await runCli(['clone', src, roomy, cramped, '--json'], { db: env.db });
  expectExit(first, 1);
  const done = only(first, 'done');
  assert.equal(done.state, 'failed', explain(first));
  const results = done.destinations as Array<{ path: string; state: string; error: string }>;
  assert.equal(results.find((d) => d.path === roomy)?.state, 'done');
  const failed = results.find((d) => d.path === cramped)!;
  assert.equal(failed.state, 'failed');
  assert.match(failed.error, /ENOSPC/);
  const record = await job(env.db, done.job as number);
  assert.equal(record.state, 'failed', 'recorded failed, not done');
  assert.equal(sha256(roomy), sha256(src));

  execFileSync('mount', ['-o', 'remount,size=64M', small]);
  const again = await runCli(['clone', src, roomy, cramped, '--verify', '--json'], {
    db: env.db,
  });
  expectExit(again, 0);
  assert.equal(only(again, 'start').intent, 'resume');
  assert.equal(only(again, 'done').verified, true);
  assert.equal(sha256(cramped), sha256(src));
  const check = await runCli(['verify', src, roomy, cramped], { db: env.db });
  expectExit(check, 0);
});

test('a destination unplugged mid-copy: failed and resumable; still gone, resume says how to go on; --drop finishes the others', async (t) => {
  if (!requireRoot(t)) return;
  const { env, src, other, drive, dst } = await twoDestinations(t, 'fail-unplug-dst', 64 * MIB, 12);

  const run = spawnCli(['clone', src, other, dst, '--yes', '--max-rate', '32M', '--json'], {
    db: env.db,
  });
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 4);
  drive.unplug();
  const r = await run.done;
  expectExit(r, 1);
  const done = only(r, 'done');
  assert.equal(done.state, 'failed');
  const id = String(done.job);

  const still = await runCli(['resume', id, '--yes'], { db: env.db });
  expectExit(still, 1);
  assert.match(still.stdout, new RegExp(`"drivetwin resume ${id} --drop ${dst}"`), explain(still));

  drive.replug();
  const back = await runCli(['resume', id, '--yes', '--json'], { db: env.db });
  expectExit(back, 0);
  execFileSync('blockdev', ['--flushbufs', dst]);
  assert.equal(sha256(dst), sha256(src), 'the replugged drive was brought up to date');
  assert.equal(sha256(other), sha256(src));
});

test('a destination that stays gone: resume --drop finishes the others, and the job says so', async (t) => {
  if (!requireRoot(t)) return;
  const { env, src, other, drive, dst } = await twoDestinations(t, 'fail-drop', 32 * MIB, 13);
  drive.unplug();
  const r = await runCli(['clone', src, other, dst, '--yes', '--json'], { db: env.db });
  expectExit(r, 1);
  const id = String(only(r, 'done').job);
  const dropped = await runCli(['resume', id, '--drop', dst, '--json'], { db: env.db });
  expectExit(dropped, 0);
  assert.equal(only(dropped, 'done').state, 'done');
  assert.equal(sha256(other), sha256(src));
  const record = await job(env.db, Number(id));
  assert.equal(record.state, 'done');
  const dests = record.destinations as Array<{ path: string; dropped: boolean }>;
  assert.equal(dests.find((d) => d.path === dst)?.dropped, true);
});

test('a source unplugged mid-copy, even with --ignore-errors, stops the job resumably: nothing recorded unreadable, and plugged back it resumes identical', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'fail-unplug-src');
  const image = env.file('image.img');
  writeRandomFile(image, 64 * MIB, 14);
  const drive = await pluggableDrive(image, { readOnly: true });
  t.after(() => drive.stop({ kill: true }));
  const src = drive.loop.path;
  const dst = env.file('dst.img');

  const run = spawnCli(['clone', src, dst, '--ignore-errors', '--max-rate', '32M', '--json'], {
    db: env.db,
  });
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 4);
  drive.unplug();
  const r = await run.done;
  expectExit(r, 1);
  const done = only(r, 'done');
  assert.equal(done.state, 'failed');
  assert.equal(done.unreadableBytes, 0, 'a gone drive is not a bad sector');
  const fatal = r.events.find((e) => e.type === 'error' && e.fatal);
  assert.match(fatal?.message as string, new RegExp(`the source ${src} is gone`), explain(r));
  assert.ok(!r.events.some((e) => e.type === 'error' && /unreadable/.test(e.message as string)));
  const map = await runCli(['map', String(done.job)], { db: env.db });
  assert.deepEqual(JSON.parse(map.stdout).unreadable, []);

  drive.replug();
  const back = await runCli(['resume', String(done.job), '--json'], { db: env.db });
  expectExit(back, 0);
  assert.equal(sha256(dst), sha256(image));
});

test('killed during the final verify: the job reads "copied, not verified", and resume verifies it', async (t) => {
  const env = workspace(t, 'fail-verify-kill');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeRandomFile(src, 384 * MIB, 15);
  const run = spawnCli(['clone', src, dst, '--verify', '--json'], { db: env.db });
  const seen = await run.waitEvent((e) => e.type === 'verify-progress');
  run.child.kill('SIGKILL');
  await run.done;
  const record = await job(env.db, seen.job as number);
  assert.equal(record.state, 'done');
  assert.equal(record.verified, null, 'not verified');
  const words = await runCli(['jobs'], { db: env.db });
  assert.match(words.stdout, /copied, not verified/);
  const again = await runCli(['resume', String(seen.job), '--json'], { db: env.db });
  expectExit(again, 0);
  assert.equal(only(again, 'done').verified, true);
  assert.equal(only(again, 'done').regionsCopied, 0, 'nothing copied again');
  assert.equal((await job(env.db, seen.job as number)).verified, true);
});

test('the job database deleted mid-copy: the copy stops, the database is written again, and the job resumes', async (t) => {
  const env = workspace(t, 'fail-db-gone');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeRandomFile(src, 160 * MIB, 16);
  const run = spawnCli(['clone', src, dst, '--max-rate', '32M', '--json'], { db: env.db });
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 4);
  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(env.db + suffix, { force: true });
  const r = await run.done;
  expectExit(r, 1);
  const messages = r.events.filter((e) => e.type === 'error').map((e) => e.message as string);
  assert.ok(
    messages.some((m) => /was deleted or replaced during the copy/.test(m)),
    explain(r),
  );
  assert.ok(
    messages.some((m) => /written again/.test(m)),
    explain(r),
  );
  const id = only(r, 'done').job as number;
  const record = await job(env.db, id);
  assert.notEqual(record.state, 'done');
  assert.ok((record.regionsHydrated as number) > 0);
  const back = await runCli(['resume', String(id), '--json'], { db: env.db });
  expectExit(back, 0);
  assert.equal(sha256(dst), sha256(src));
});
