// Compressed images made by Debian's own tools, cloned through the real CLI: each
// kind byte-identical, and a kill -9 mid-clone resumed without rewriting what was
// already hydrated.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { sha256, tempDir, writeMixedFile } from '../helpers/files';

const MIB = 1024 * 1024;

function setUp(t: TestContext, size: number) {
  const tmp = tempDir('drivetwin-compressed-');
  t.after(() => tmp.cleanup());
  const image = path.join(tmp.dir, 'disk.img');
  writeMixedFile(image, size, 21);
  return { dir: tmp.dir, image, want: sha256(image), db: path.join(tmp.dir, 'jobs.db') };
}

/** The compressed file as the real tool makes it. */
function compress(kind: string, image: string): string {
  const out = `${image}.${kind}`;
  const sh = (cmd: string): void => void execFileSync('sh', ['-c', cmd]);
  if (kind === 'gz') sh(`gzip -c '${image}' > '${out}'`);
  if (kind === 'xz') sh(`xz -T2 -0 -c '${image}' > '${out}'`);
  if (kind === 'zst') sh(`zstd -q -c '${image}' > '${out}'`);
  if (kind === 'bz2') sh(`bzip2 -c '${image}' > '${out}'`);
  if (kind === 'zip')
    sh(`cd '${path.dirname(image)}' && zip -q '${out}' '${path.basename(image)}'`);
  return out;
}

for (const kind of ['gz', 'xz', 'zst', 'bz2', 'zip']) {
  test(`a .${kind} image made by the real tool clones byte-identically`, async (t) => {
    const env = setUp(t, 40 * MIB + 4321);
    const source = compress(kind, env.image);
    const dest = path.join(env.dir, 'out.img');
    const r = await runCli(['clone', source, dest, '--json', '--verify'], { db: env.db });
    expectExit(r, 0);
    assert.equal(sha256(dest), env.want);
    assert.equal(only(r, 'done').verified, true);
  });
}

for (const kind of ['gz', 'xz', 'zst', 'bz2', 'zip']) {
  test(`kill -9 during a .${kind} clone, then resume: identical, nothing hydrated is written again`, async (t) => {
    const env = setUp(t, 96 * MIB);
    const source = compress(kind, env.image);
    const dest = path.join(env.dir, 'out.img');
    const args = ['clone', source, dest, '--json', '--max-rate', '32M'];
    const run = spawnCli(args, { db: env.db });
    const start = await run.waitEvent((e) => e.type === 'start');
    // Wait for a commit past the first second, then a random moment more.
    await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 0, 10_000);
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 800));
    run.child.kill('SIGKILL');
    const killed = await run.done;
    assert.equal(killed.signal, 'SIGKILL');

    const resumed = await runCli(
      args.filter((a) => a !== '--max-rate' && a !== '32M'),
      {
        db: env.db,
      },
    );
    expectExit(resumed, 0);
    const again = only(resumed, 'start');
    assert.equal(again.job, start.job);
    assert.equal(again.resumed, true);
    const hydrated = again.regionsHydrated as number;
    assert.ok(hydrated > 0, 'the first run committed regions before the kill');
    const done = only(resumed, 'done');
    // 96 regions of 1 MiB: what was committed is not copied again.
    assert.equal(hydrated + (done.regionsCopied as number), 96);
    assert.equal(sha256(dest), env.want);
  });
}
