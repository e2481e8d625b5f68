// One writer per device, whatever its name (invariant 7): a loop device and its backing
// file, a partition of a loop and the file under it, two loops over one file, a
// symlink, a bind mount — a second writer by another name is refused while the first
// writes, and told which job holds it; what the first wrote is whole.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { test, type TestContext } from 'node:test';
import { explain, expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { readRange, sha256, tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

function setUp(t: TestContext, prefix: string) {
  const env = workspace(t, prefix);
  const a = env.file('a.img');
  const b = env.file('b.img');
  const o = env.file('o.img');
  writeRandomFile(a, 32 * MIB, 41);
  writeRandomFile(b, 32 * MIB, 42);
  fs.writeFileSync(o, '');
  fs.truncateSync(o, 32 * MIB);
  return { env, a, b, o };
}

/** Starts `clone SOURCE DEST` at 4 MiB/s (8 s for 32 MiB); resolves once it started. */
async function firstWriter(db: string, source: string, dest: string) {
  const run = spawnCli(['clone', source, dest, '--max-rate', '4M', '--yes', '--json'], { db });
  const start = await run.waitEvent((e) => e.type === 'start');
  return { run, job: start.job as number };
}

async function refused(db: string, source: string, dest: string, holder: RegExp): Promise<void> {
  const r = await runCli(['clone', source, dest, '--yes', '--json'], { db });
  expectExit(r, 2);
  assert.match(only(r, 'error').message as string, holder, explain(r));
  assert.ok(!r.events.some((e) => e.type === 'start'), explain(r));
}

test('an image file being written: its loop device is refused to a second clone', async (t) => {
  if (!requireRoot(t)) return;
  const { env, a, b, o } = setUp(t, 'claim-file-loop');
  const loop = env.attach(o);
  const first = await firstWriter(env.db, a, o);
  await refused(
    env.db,
    b,
    loop.path,
    new RegExp(`${loop.path} is in use: job ${first.job} \\(process \\d+\\) is writing ${o}`),
  );
  expectExit(await first.run.done, 0);
  assert.equal(sha256(o), sha256(a), 'the file holds the first source, whole');
});

test('a loop device being written: its backing file, or a link to it, is refused to a second clone', async (t) => {
  if (!requireRoot(t)) return;
  const { env, a, b, o } = setUp(t, 'claim-loop-file');
  const loop = env.attach(o);
  const first = await firstWriter(env.db, b, loop.path);
  await refused(
    env.db,
    a,
    o,
    new RegExp(`${o} is in use: job ${first.job} \\(process \\d+\\) is writing ${loop.path}`),
  );
  // A link to the device, as /dev/disk/by-id/… is.
  const byId = env.file('by-id-loop');
  fs.symlinkSync(loop.path, byId);
  await refused(env.db, a, byId, new RegExp(`is in use: job ${first.job}`));
  expectExit(await first.run.done, 0);
  assert.equal(sha256(o), sha256(b), 'the file holds the first source, whole');
});

test('two loop devices over one file: the second is refused while the first is written', async (t) => {
  if (!requireRoot(t)) return;
  const { env, a, b, o } = setUp(t, 'claim-two-loops');
  const one = env.attach(o);
  const two = env.attach(o);
  const first = await firstWriter(env.db, a, one.path);
  await refused(env.db, b, two.path, new RegExp(`${two.path} is in use: job ${first.job}`));
  expectExit(await first.run.done, 0);
  assert.equal(sha256(o), sha256(a));
});

test('a partition of a loop device being written: the file and the disk are refused, the other partition is not', async (t) => {
  if (!requireRoot(t)) return;
  const { env, a, o } = setUp(t, 'claim-loop-part');
  execFileSync('sfdisk', ['--quiet', o], { input: 'label: gpt\n,12M\n,12M\n' });
  const loop = env.attach(o, { partscan: true });
  const [p1, p2] = [`${loop.path}p1`, `${loop.path}p2`];
  // A kernel without partition table parsers scans nothing: partx adds them (BLKPG).
  if (!fs.existsSync(p2)) execFileSync('partx', ['--add', loop.path]);
  for (let i = 0; i < 50 && !fs.existsSync(p2); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(fs.existsSync(p1) && fs.existsSync(p2), 'the partitions appeared');
  const part = env.file('part.img');
  writeRandomFile(part, 12 * MIB, 43);
  const first = await firstWriter(env.db, part, p1);
  await refused(env.db, a, o, new RegExp(`${o} is in use: job ${first.job}`));
  await refused(env.db, a, loop.path, /is in use/); // the disk holding the partition
  // Its sibling is other bytes of the same file: written side by side.
  const other = env.file('other.img');
  writeRandomFile(other, 12 * MIB, 44);
  const second = await runCli(['clone', other, p2, '--yes', '--json'], { db: env.db });
  expectExit(second, 0);
  expectExit(await first.run.done, 0);
  const start1 = Number(/start=\s*(\d+)/.exec(execFileSync('sfdisk', ['-d', o]).toString())![1]);
  assert.ok(readRange(o, start1 * 512, 12 * MIB).equals(fs.readFileSync(part)));
});

test('another name for the same file — a symlink, a bind mount of its folder — is refused', async (t) => {
  if (!requireRoot(t)) return;
  const { env, a, b, o } = setUp(t, 'claim-names');
  const link = env.file('link.img');
  fs.symlinkSync(o, link);
  const mountPoint = tempDir('drivetwin-claim-bound-');
  const bound = mountPoint.dir;
  execFileSync('mount', ['--bind', env.dir, bound]);
  t.after(() => {
    execFileSync('umount', ['-l', bound]);
    mountPoint.cleanup();
  });
  const first = await firstWriter(env.db, a, o);
  await refused(env.db, b, link, new RegExp(`is in use: job ${first.job}`));
  await refused(env.db, b, `${bound}/o.img`, new RegExp(`is in use`));
  expectExit(await first.run.done, 0);
  assert.equal(sha256(o), sha256(a));
});
