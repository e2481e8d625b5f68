// Check, claim, then write: a second writer is refused before it writes, a locked
// database or a flag that can't apply refuses the whole clone, and nothing is written.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import Database from 'better-sqlite3';
import { test, type TestContext } from 'node:test';
import { type CliEvent, explain, expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { sha256, writeRandomFile } from '../helpers/files';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

function jobsOf(db: string) {
  return runCli(['jobs', '--json'], { db }).then((r) => {
    expectExit(r, 0);
    return r.events;
  });
}

test('two clones onto the same image file at once: the second is refused, naming the job; the file holds one source whole', async (t) => {
  const env = workspace(t, 'claim-two');
  const a = env.file('a.img');
  const b = env.file('b.img');
  const dst = env.file('dst.img');
  writeRandomFile(a, 48 * MIB, 1);
  writeRandomFile(b, 48 * MIB, 2);
  const first = spawnCli(['clone', a, dst, '--max-rate', '24M', '--json'], { db: env.db });
  const started = await first.waitEvent((e) => e.type === 'start');
  const second = await runCli(['clone', b, dst, '--json'], { db: env.db });
  expectExit(second, 2);
  const error = only(second, 'error');
  assert.match(
    error.message as string,
    new RegExp(`${dst} is in use: job ${started.job} \\(process \\d+\\) is writing it`),
    explain(second),
  );
  assert.ok(!second.events.some((e) => e.type === 'start'), explain(second));
  const r = await first.done;
  expectExit(r, 0);
  assert.equal(sha256(dst), sha256(a), 'the destination holds the first source, whole');
  assert.equal((await jobsOf(env.db)).length, 1, 'the refused clone made no job');
});

test('the same job resumed twice at the same moment: one runs it, the other is refused', async (t) => {
  const env = workspace(t, 'claim-resume');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeRandomFile(src, 64 * MIB, 3);
  const run = spawnCli(['clone', src, dst, '--max-rate', '32M', '--json'], { db: env.db });
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 0);
  run.child.kill('SIGKILL');
  await run.done;
  const [job] = await jobsOf(env.db);
  assert.equal(job.state, 'interrupted');
  const both = await Promise.all([
    runCli(['resume', String(job.job), '--json'], { db: env.db }),
    runCli(['resume', String(job.job), '--json'], { db: env.db }),
  ]);
  const codes = both.map((r) => r.code).sort();
  assert.deepEqual(codes, [0, 2], both.map(explain).join('\n'));
  const refused = both.find((r) => r.code === 2)!;
  assert.match(
    only(refused, 'error').message as string,
    new RegExp(`job ${job.job} is already running|is in use`),
    explain(refused),
  );
  assert.equal(sha256(dst), sha256(src));
});

test('a job database locked by another program: refused after the wait, the destination untouched', async (t) => {
  const env = workspace(t, 'claim-locked');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeRandomFile(src, 16 * MIB, 4);
  writeRandomFile(dst, 64 * MIB, 5);
  const before = sha256(dst);
  expectExit(await runCli(['jobs'], { db: env.db }), 0); // the database exists
  // Another program holds the write lock (a write transaction left open).
  const holder = spawn(
    process.execPath,
    [
      '-e',
      `const db = new (require(${JSON.stringify(require.resolve('better-sqlite3'))}))(process.argv[1]);
       db.prepare('BEGIN IMMEDIATE').run();
       process.stdout.write('locked\\n');
       setInterval(() => {}, 1000);`,
      env.db,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => holder.kill('SIGKILL'));
  await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
  const r = await runCli(['clone', src, dst, '--json'], { db: env.db });
  expectExit(r, 2);
  assert.match(
    only(r, 'error').message as string,
    /is locked by another program; nothing was written/,
  );
  assert.equal(sha256(dst), before, 'the destination was not touched');
  assert.equal(fs.statSync(dst).size, 64 * MIB, 'nor resized');
  holder.kill('SIGKILL');
  assert.deepEqual(await jobsOf(env.db), []);
});

test('a re-run of a finished pair with flags that cannot apply is refused, not ignored', async (t) => {
  const env = workspace(t, 'claim-flags');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeRandomFile(src, 8 * MIB, 6);
  expectExit(await runCli(['clone', src, dst], { db: env.db }), 0);
  const jobsBefore = await jobsOf(env.db);
  fs.writeFileSync(src, Buffer.alloc(MIB, 7), { flag: 'r+' }); // a change an update would copy
  const before = sha256(dst);
  for (const [flags, message] of [
    [['--region-size', '3'], /region size 3 is not a power of two/],
    [['--region-size', '64K'], /--region-size can't change for job 1/],
    [['--from-map', env.file('missing.map')], /--from-map .*missing\.map: ENOENT/],
    [['--used-only'], /--used-only can't change for job 1/],
    [['--no-sparse'], /--sparse \/ --no-sparse can't change for job 1/],
  ] as const) {
    const r = await runCli(['clone', src, dst, ...flags, '--json'], { db: env.db });
    expectExit(r, 2);
    assert.match(only(r, 'error').message as string, message, explain(r));
    assert.ok(!r.events.some((e) => e.type === 'start'), explain(r));
    assert.equal(sha256(dst), before, `${flags.join(' ')}: nothing may be written`);
  }
  assert.deepEqual(await jobsOf(env.db), jobsBefore, 'the job is as it was');
});

test('--fresh starts a new job where an update would have run', async (t) => {
  const env = workspace(t, 'claim-fresh');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeRandomFile(src, 8 * MIB, 8);
  expectExit(await runCli(['clone', src, dst], { db: env.db }), 0);
  const update = await runCli(['clone', src, dst, '--json'], { db: env.db });
  expectExit(update, 0);
  assert.equal(only(update, 'start').intent, 'update');
  const fresh = await runCli(['clone', src, dst, '--fresh', '--json'], { db: env.db });
  expectExit(fresh, 0);
  const start = only(fresh, 'start');
  assert.equal(start.intent, 'new');
  assert.equal(start.job, 2);
  assert.equal(only(fresh, 'done').regionsCopied, 8);
  assert.equal(sha256(dst), sha256(src));
});

/** `node bin/drivetwin.js ARGS` under a parent that never reaps it: killed, it stays a zombie. */
function unreapedCli(
  args: string[],
  db: string,
  log: string,
): { pid: Promise<number>; parent: ChildProcess } {
  const bin = require.resolve('../../../bin/drivetwin.js');
  const quoted = [process.execPath, bin, ...args].map((a) => `'${a}'`).join(' ');
  const parent = spawn('sh', ['-c', `${quoted} >'${log}' 2>&1 & echo $!; exec sleep 120`], {
    env: { ...process.env, DRIVETWIN_DB: db },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const pid = new Promise<number>((resolve) =>
    parent.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))),
  );
  return { pid, parent };
}

async function waitForState(db: string, state: string): Promise<CliEvent> {
  for (let i = 0; i < 300; i++) {
    const [job] = await jobsOf(db);
    if (job?.state === state) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no job ${state}: ${JSON.stringify(await jobsOf(db))}`);
}

test('a job killed -9 whose process is a zombie is interrupted, not running: it resumes', async (t) => {
  const env = workspace(t, 'claim-zombie');
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeRandomFile(src, 32 * MIB, 9);
  const { pid, parent } = unreapedCli(
    ['clone', src, dst, '--max-rate', '4M', '--json'],
    env.db,
    env.file('cli.log'),
  );
  t.after(() => parent.kill('SIGKILL'));
  const job = await waitForState(env.db, 'running');
  const cli = await pid;
  process.kill(cli, 'SIGKILL');
  // The kernel keeps the pid while nobody reaps it: signal 0 still reaches it.
  await new Promise((r) => setTimeout(r, 200));
  assert.match(fs.readFileSync(`/proc/${cli}/stat`, 'utf8'), /\) Z /, 'a zombie');
  const [now] = await jobsOf(env.db);
  assert.equal(now.state, 'interrupted', 'its lock went with it, whatever its pid shows');
  const resumed = await runCli(['resume', String(job.job), '--json'], { db: env.db });
  expectExit(resumed, 0);
  assert.equal(sha256(dst), sha256(src));
});

/** A 32 MiB clone at 4 MiB/s, started; and a way to set what its row says. */
async function runningClone(t: TestContext, prefix: string, seed: number) {
  const env = workspace(t, prefix);
  const src = env.file('src.img');
  const dst = env.file('dst.img');
  writeRandomFile(src, 32 * MIB, seed);
  const run = spawnCli(['clone', src, dst, '--max-rate', '4M', '--json'], { db: env.db });
  const start = await run.waitEvent((e) => e.type === 'start');
  const setRow = (assignments: string, ...values: unknown[]): void => {
    const db = new Database(env.db);
    db.prepare(`UPDATE jobs SET ${assignments} WHERE id = ?`).run(...values, start.job);
    db.close();
  };
  return { env, src, dst, run, start, setRow };
}

test('a job whose recorded process id now belongs to another process is not running: it resumes', async (t) => {
  const { env, src, dst, run, start, setRow } = await runningClone(t, 'claim-pid-reused', 10);
  run.child.kill('SIGKILL');
  await run.done;
  // Its pid, reused: the row names a process that is alive (this test's own).
  setRow(`state = 'running', pid = ?`, process.pid);
  const [job] = await jobsOf(env.db);
  assert.equal(job.state, 'interrupted', 'a live pid does not make it running');
  const resumed = await runCli(['resume', String(start.job), '--json'], { db: env.db });
  expectExit(resumed, 0);
  assert.equal(sha256(dst), sha256(src));
});

test('while a job runs, its lock refuses a second resume, however its pid looks', async (t) => {
  const { env, run, start, setRow } = await runningClone(t, 'claim-held', 12);
  setRow('pid = ?', 999999999);
  const [job] = await jobsOf(env.db);
  assert.equal(job.state, 'running', 'a dead pid does not make it interrupted');
  const second = await runCli(['resume', String(start.job), '--json'], { db: env.db });
  expectExit(second, 2);
  assert.match(only(second, 'error').message as string, /already running/);
  run.child.kill('SIGTERM');
  expectExit(await run.done, 130);
});

test('a clone and a job list opening a new job database at the same moment: both find it whole', async (t) => {
  const env = workspace(t, 'claim-new-db');
  const src = env.file('src.img');
  writeRandomFile(src, MIB, 13);
  for (let round = 0; round < 8; round++) {
    const db = env.file(`jobs-${round}.db`);
    const [clone, jobs] = await Promise.all([
      runCli(['clone', src, env.file(`dst-${round}.img`), '--json'], { db }),
      runCli(['jobs', '--json'], { db }),
    ]);
    expectExit(clone, 0);
    expectExit(jobs, 0);
  }
});
