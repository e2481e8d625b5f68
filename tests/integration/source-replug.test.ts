// A source drive unplugged for good mid-copy and plugged back in — served anew over the
// same image, as a new mount and the same loop device — is the same source: same size,
// same first MiB. The job resumes from it and ends identical.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { explain, expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { pluggableDrive } from '../helpers/nbd';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

function inodeOf(file: string): string {
  const st = fs.statSync(file);
  return `${st.dev}:${st.ino}`;
}

test('a source unplugged mid-copy and plugged back in anew (another mount under its loop device): resumed, identical', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'replug-src');
  const image = env.file('image.img');
  writeRandomFile(image, 64 * MIB, 81);
  const first = await pluggableDrive(image, { readOnly: true });
  t.after(() => first.stop({ kill: true }));
  const src = first.loop.path;
  const before = inodeOf(first.file);
  const dst = env.file('dst.img');
  const run = spawnCli(['clone', src, dst, '--max-rate', '32M', '--json'], { db: env.db });
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 4);
  first.stop({ kill: true }); // the cable pulled: its server, its mount and its loop device gone
  const r = await run.done;
  expectExit(r, 1);
  const done = only(r, 'done');

  // Plugged back in: the same image, a new mount, the same device name. A mount made in
  // between takes the device number the old one freed, as other mounts may on any system:
  // the new file has another dev:ino.
  const between = tempDir('drivetwin-replug-between-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1M', 'tmpfs', between.dir]);
  t.after(() => {
    execFileSync('umount', ['-l', between.dir]);
    between.cleanup();
  });
  const again = await pluggableDrive(image, { readOnly: true, at: src });
  t.after(() => again.stop({ kill: true }));
  assert.notEqual(inodeOf(again.file), before, 'the source is another file now');
  const back = await runCli(['resume', String(done.job), '--json'], { db: env.db });
  expectExit(back, 0);
  assert.ok((only(back, 'start').regionsHydrated as number) > 0, explain(back));
  assert.equal(sha256(dst), sha256(image));
});
