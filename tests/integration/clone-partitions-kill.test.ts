// The partition table goes last: a copy killed (-9) at a random moment before its end
// leaves the target's old table as it was (`sfdisk -d` says so, and the job's map has
// the regions of the tables — at the start, and the backup GPT at the end — unhydrated), and resuming it finishes byte-identical where the
// sizes match — also from a compressed source, whose table is read again from its start
// — and with a correct GPT where the copy was fitted to a smaller drive.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { runCli, spawnCli, explain, only } from '../helpers/cli';
import { sha256 } from '../helpers/files';
import { type LoopDevice, requireRoot } from '../helpers/loop';
import {
  GIB,
  assertPartitionsCopied,
  assertSgdiskClean,
  gptLayout,
  partitionedImage,
  requireTools,
  run,
} from '../helpers/partitioned';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const RATE = 256 * MIB;
/**
 * Random bytes in the third partition (no file system there): the rest of the image is
 * holes, which are not read, so without them the copy would be over before any kill.
 */
const DATA = 384 * MIB;
const THIRD_PARTITION = MIB + 800 * MIB;

/** The 2 GiB GPT source, with DATA bytes to copy at the start of its third partition. */
function busySource(env: Workspace): { file: string; files: string } {
  const src = partitionedImage(env, 'src.img', 2 * GIB, gptLayout(1.5 * GIB));
  const fd = fs.openSync(src.file, 'r+');
  try {
    const chunk = Buffer.alloc(8 * MIB);
    for (let done = 0; done < DATA; done += chunk.length) {
      crypto.randomFillSync(chunk);
      fs.writeSync(fd, chunk, 0, chunk.length, THIRD_PARTITION + done);
    }
  } finally {
    fs.closeSync(fd);
  }
  return src;
}
const OLD_TABLE =
  'label: dos\nlabel-id: 0x0badcafe\nstart=2048, size=409600, type=83\nstart=411648, type=7\n';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A target that held something else: an MBR of another layout. */
function oldDisk(env: Workspace, name: string, size: number): { dev: LoopDevice; dump: string } {
  const file = env.file(name);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
  const dev = env.attach(file);
  run('sfdisk', ['--quiet', '--no-reread', dev.path], OLD_TABLE);
  return { dev, dump: run('sfdisk', ['-d', dev.path]) };
}

/** Empties the target and writes its old table again. */
function reset(dev: LoopDevice): void {
  const size = fs.statSync(dev.file).size;
  fs.truncateSync(dev.file, 0);
  fs.truncateSync(dev.file, size);
  execFileSync('blockdev', ['--flushbufs', dev.path]);
  run('sfdisk', ['--quiet', '--no-reread', dev.path], OLD_TABLE);
}

/**
 * Starts `args`, kills it -9 at a random moment within the copy, and checks the old
 * table is still there. Returns the job, or null when the copy finished first.
 */
async function killMidCopy(
  env: Workspace,
  args: string[],
  dev: LoopDevice,
  oldDump: string,
  log: (m: string) => void,
  backupHeld = false,
): Promise<number | null> {
  const run1 = spawnCli([...args, '--max-rate', '256M', '--yes', '--json'], { db: env.db });
  const start = await run1.waitEvent((e) => e.type === 'start');
  // A stream is read whole (at RATE); an image's holes are not read at all.
  const busy = args[1].endsWith('.zst') ? (start.bytesTotal as number) : DATA;
  const expectedMs = (busy / RATE) * 1000;
  const delay = 200 + Math.round(Math.random() * expectedMs * 0.8);
  await sleep(delay);
  run1.child.kill('SIGKILL');
  const r = await run1.done;
  if (r.code === 0) {
    log(`finished before the kill at ${delay} ms`);
    return null;
  }
  assert.equal(r.signal, 'SIGKILL', explain(r));
  execFileSync('blockdev', ['--flushbufs', dev.path]);
  assert.equal(run('sfdisk', ['-d', dev.path]), oldDump, `killed at ${delay} ms: the old table`);
  const job = start.job as number;
  const map = only(await runCli(['map', String(job), '--format', 'json'], { db: env.db }), 'map');
  const runs = map.hydrated as Array<{ first: number; count: number }>;
  const hydrated = (r: number): boolean => runs.some((h) => h.first <= r && r < h.first + h.count);
  assert.ok(!hydrated(0), 'the region holding the tables is not hydrated');
  const last = (map.regionsTotal as number) - 1;
  if (backupHeld) assert.ok(!hydrated(last), 'nor the one holding the backup GPT');
  log(
    `killed at ${delay} ms with ${String(map.regionsHydrated)}/${String(map.regionsTotal)} regions`,
  );
  return job;
}

async function resumeToEnd(env: Workspace, job: number, again: string[] | null): Promise<void> {
  const args = again ? [...again, '--yes', '--json'] : ['resume', String(job), '--yes', '--json'];
  const r = await runCli(args, { db: env.db });
  assert.equal(r.code, 0, explain(r));
  assert.equal(only(r, 'start').job, job, 'the same job goes on');
  assert.equal(only(r, 'done').state, 'done');
}

test('kill -9 before the end: the old partition table stays; resume finishes', async (t) => {
  if (!requireRoot(t) || !requireTools(t)) return;
  const env = workspace(t, 'parts-kill');
  const src = busySource(env);
  const want = sha256(src.file);
  const { dev, dump } = oldDisk(env, 'dst.img', 2 * GIB);
  let killed = 0;

  for (let round = 0; round < 3; round++) {
    await t.test(`same size, round ${round + 1}: identical after the resume`, async (st) => {
      reset(dev);
      const args = ['clone', src.file, dev.path];
      const job = await killMidCopy(env, args, dev, dump, (m) => st.diagnostic(m), true);
      if (job === null) return;
      killed += 1;
      st.after(() => runCli(['forget', String(job)], { db: env.db }));
      await resumeToEnd(env, job, round % 2 === 0 ? null : args);
      execFileSync('blockdev', ['--flushbufs', dev.path]);
      assert.equal(sha256(dev.path), want, 'byte-identical to the source');
    });
  }
  assert.ok(killed >= 2, `only ${killed} of 3 rounds were killed mid-copy`);

  await t.test('from a .zst image: the table is read again from the stream’s start', async (st) => {
    const zst = env.file('src.img.zst');
    run('zstd', ['-q', '-1', '-c', src.file, '-o', zst]);
    for (let attempt = 0; attempt < 3; attempt++) {
      reset(dev);
      const job = await killMidCopy(env, ['clone', zst, dev.path], dev, dump, (m) =>
        st.diagnostic(m),
      );
      if (job === null) continue;
      await resumeToEnd(env, job, null);
      execFileSync('blockdev', ['--flushbufs', dev.path]);
      assert.equal(sha256(dev.path), want);
      return;
    }
    assert.fail('the copy from the .zst image always finished before the kill');
  });

  await t.test('fitted onto a smaller drive: the old table stays, then a clean GPT', async (st) => {
    const small = oldDisk(env, 'small.img', 1638 * MIB);
    for (let attempt = 0; attempt < 3; attempt++) {
      reset(small.dev);
      const args = ['clone', src.file, small.dev.path, '--fit'];
      const job = await killMidCopy(env, args, small.dev, small.dump, (m) => st.diagnostic(m));
      if (job === null) continue;
      await resumeToEnd(env, job, null);
      assertSgdiskClean(small.dev.path);
      assertPartitionsCopied(src.file, small.dev.path, src.files);
      return;
    }
    assert.fail('the fitted copy always finished before the kill');
  });
});

test('--fit and --new-ids are fixed for a job: a resume or a re-run can’t change them', async (t) => {
  if (!requireRoot(t) || !requireTools(t)) return;
  const env = workspace(t, 'parts-fixed');
  const src = busySource(env);
  const { dev, dump } = oldDisk(env, 'dst.img', 2 * GIB);
  let job: number | null = null;
  for (let attempt = 0; attempt < 3 && job === null; attempt++) {
    reset(dev);
    job = await killMidCopy(env, ['clone', src.file, dev.path], dev, dump, (m) => t.diagnostic(m));
  }
  assert.ok(job !== null, 'killed mid-copy');
  const r = await runCli(['clone', src.file, dev.path, '--new-ids', '--yes'], { db: env.db });
  assert.equal(r.code, 2, explain(r));
  assert.match(r.stderr, new RegExp(`--new-ids can't change for job ${job}`));
  assert.equal(run('sfdisk', ['-d', dev.path]), dump, 'nothing was written');
});
