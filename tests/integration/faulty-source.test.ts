// A source that really returns EIO (nbdkit's ddrescue filter under a loop device):
// with --ignore-errors the unreadable extents are delimited to the logical block,
// recorded (done event, map, ddrescue mapfile), written as zeros, and everything
// else is copied; without it the job stops, resumable, with the error shown
// (invariant 6).

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { runCli, type CliEvent, type CliResult, explain, only } from '../helpers/cli';
import { tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { faultyDrive, type NbdDrive } from '../helpers/nbd';

const KIB = 1024;
const MIB = 1024 * KIB;
const SIZE = 24 * MIB;
const REGION = 64 * KIB;
const BATCH = 8;

interface Extent {
  offset: number;
  length: number;
}

/** A single sector, a run across a region boundary (8 MiB), a 64 KiB run; aligned to `s`. */
function badExtents(s: number): Extent[] {
  return [
    { offset: 3 * MIB + 5 * s, length: s },
    { offset: 8 * MIB - Math.max(2 * KIB, s), length: Math.max(4 * KIB, 2 * s) },
    { offset: 16 * MIB + 12 * KIB, length: 64 * KIB },
  ];
}

/**
 * Checks that may fail independently: each failure is collected so that one run
 * reports every deviation; `end()` fails the test with all of them.
 */
class Checks {
  readonly failures: string[] = [];
  check(label: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.failures.push(`${label}: ${(e as Error).message.split('\n').slice(0, 12).join('\n')}`);
    }
  }
  end(): void {
    assert.equal(this.failures.length, 0, `\n${this.failures.join('\n\n')}`);
  }
}

function extents(value: unknown): Extent[] {
  assert.ok(Array.isArray(value), `a list of extents, not ${JSON.stringify(value)}`);
  return (value as Extent[]).map(({ offset, length }) => ({ offset, length }));
}

async function mapJson(db: string, job: number): Promise<CliEvent> {
  const r = await runCli(['map', String(job), '--format', 'json'], { db });
  assert.equal(r.code, 0, explain(r));
  return only(r, 'map');
}

function regionHydrated(map: CliEvent, region: number): boolean {
  return (map.hydrated as Array<{ first: number; count: number }>).some(
    (run) => region >= run.first && region < run.first + run.count,
  );
}

/** The destination equals the source outside `bad` and reads zeros inside. */
function assertCopiedAround(source: string, dest: string, bad: Extent[]): void {
  const want = fs.readFileSync(source);
  for (const e of bad) want.fill(0, e.offset, e.offset + e.length);
  const got = fs.readFileSync(dest);
  assert.equal(got.length, want.length, 'destination size');
  if (got.equals(want)) return;
  let at = 0;
  while (got[at] === want[at]) at++;
  const inBad = bad.some((e) => at >= e.offset && at < e.offset + e.length);
  assert.fail(
    `destination differs at byte ${at} (${inBad ? 'inside a bad extent: not zero' : 'outside the bad extents: not the source'})`,
  );
}

interface Env {
  db: string;
  image: string;
  dest: string;
  bad: Extent[];
  drive: NbdDrive;
  src: string;
}

async function setUp(t: TestContext, sectorSize: 512 | 4096, seed: number): Promise<Env> {
  const tmp = tempDir('drivetwin-faulty-source-');
  const held: { drive?: NbdDrive } = {};
  t.after(() => {
    held.drive?.stop({ kill: true });
    tmp.cleanup();
  });
  const image = path.join(tmp.dir, 'source.img');
  writeRandomFile(image, SIZE, seed);
  const bad = badExtents(sectorSize);
  const drive = await faultyDrive(image, bad, { sectorSize });
  held.drive = drive;
  assert.equal(drive.loop!.sectorSize, sectorSize);
  return {
    db: path.join(tmp.dir, 'jobs.db'),
    image,
    dest: path.join(tmp.dir, 'dest.img'),
    bad,
    drive,
    src: drive.loop!.path,
  };
}

/** What a finished --ignore-errors clone must show: exit 3, the exact extents everywhere, zeros there. */
async function assertRescued(
  env: Env,
  r: CliResult,
  label: string,
  checks: Checks,
): Promise<number> {
  assert.equal(r.code, 3, `${label}: exit 3 expected\n${explain(r)}`);
  const done = only(r, 'done');
  const job = done.job as number;
  assert.equal(done.state, 'done');
  const total = env.bad.reduce((n, e) => n + e.length, 0);
  checks.check(`${label}: done event`, () => {
    assert.deepEqual(extents(done.unreadable), env.bad, 'done.unreadable');
    assert.equal(done.unreadableBytes, total);
  });

  const map = await mapJson(env.db, job);
  assert.equal(map.size, SIZE);
  assert.equal(map.regionSize, REGION);
  assert.equal(map.regionsHydrated, map.regionsTotal, 'every region hydrated');
  checks.check(`${label}: map --format json`, () =>
    assert.deepEqual(extents(map.unreadable), env.bad, 'map.unreadable equals the bad extents'),
  );

  checks.check(`${label}: destination bytes`, () =>
    assertCopiedAround(env.image, env.dest, env.bad),
  );

  // GNU ddrescue mapfile: exactly the bad extents '-', the rest '+'.
  const dd = await runCli(['map', String(job), '--format', 'ddrescue'], { db: env.db });
  assert.equal(dd.code, 0, explain(dd));
  const lines = dd.stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
  const blocks = lines.slice(1).map((l) => {
    const [pos, size, status] = l.trim().split(/\s+/);
    return { pos: Number(pos), size: Number(size), status };
  });
  let pos = 0;
  const minus: Extent[] = [];
  for (const b of blocks) {
    assert.equal(b.pos, pos, `mapfile blocks are contiguous: ${dd.stdout}`);
    assert.ok(b.status === '+' || b.status === '-', `status ${b.status}: ${dd.stdout}`);
    if (b.status === '-') {
      const last = minus[minus.length - 1];
      if (last && last.offset + last.length === b.pos) last.length += b.size;
      else minus.push({ offset: b.pos, length: b.size });
    }
    pos += b.size;
  }
  assert.equal(pos, SIZE, 'the mapfile covers the source');
  checks.check(`${label}: ddrescue mapfile`, () =>
    assert.deepEqual(minus, env.bad, `'-' blocks of the mapfile\n${dd.stdout}`),
  );
  if (spawnSync('ddrescuelog', ['--version']).status === 0) {
    const file = `${env.dest}.map`;
    fs.writeFileSync(file, dd.stdout);
    execFileSync('ddrescuelog', ['-t', file], { stdio: 'pipe' });
    const listed = execFileSync('ddrescuelog', ['-l-', '-b', '512', file], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
    const want = env.bad.flatMap((e) =>
      Array.from({ length: e.length / 512 }, (_, i) => e.offset / 512 + i),
    );
    checks.check(`${label}: ddrescuelog -l-`, () =>
      assert.deepEqual(listed, want, 'ddrescuelog -l- lists exactly the bad sectors'),
    );
  }
  return job;
}

for (const sectorSize of [512, 4096] as const) {
  test(`faulty ${sectorSize}-byte-sector source, --ignore-errors: exact unreadable extents, zeros there, the rest copied (exit 3)`, async (t) => {
    if (!requireRoot(t)) return;
    const env = await setUp(t, sectorSize, 70 + sectorSize);
    const r = await runCli(
      ['clone', env.src, env.dest, '--ignore-errors', '--region-size', '64K', '--yes', '--json'],
      { db: env.db },
    );
    const checks = new Checks();
    await assertRescued(env, r, 'clone --ignore-errors', checks);
    // Each unreadable extent was reported as a non-fatal error naming the source.
    const errors = r.events.filter((e) => e.type === 'error');
    assert.ok(errors.length >= env.bad.length, explain(r));
    for (const e of errors) {
      assert.equal(e.fatal, false, JSON.stringify(e));
      assert.equal(e.device, env.src);
    }
    t.diagnostic(
      `unreadable extents found: ${JSON.stringify(only(r, 'done').unreadable)} (${sectorSize}-byte sectors)`,
    );
    checks.end();
  });

  test(`faulty ${sectorSize}-byte-sector source without --ignore-errors: exit 1, error shown, resumable; then --ignore-errors finishes (exit 3)`, async (t) => {
    if (!requireRoot(t)) return;
    const env = await setUp(t, sectorSize, 80 + sectorSize);
    const args = [
      'clone',
      env.src,
      env.dest,
      '--region-size',
      '64K',
      '--batch',
      String(BATCH),
      '--yes',
      '--json',
    ];
    const r = await runCli(args, { db: env.db });
    assert.equal(r.code, 1, `exit 1 expected\n${explain(r)}`);
    const start = only(r, 'start');
    const job = start.job as number;
    const done = only(r, 'done');
    assert.notEqual(done.state, 'done', explain(r));
    const checks = new Checks();

    // An error event names the source and a byte offset inside a bad extent.
    const fatal = r.events.filter((e) => e.type === 'error' && e.fatal === true);
    assert.ok(fatal.length > 0, `a fatal error event\n${explain(r)}`);
    const inBad = (o: number) => env.bad.some((e) => o >= e.offset && o < e.offset + e.length);
    const pointed = fatal.filter((e) => {
      const named = e.device === env.src || String(e.message).includes(env.src);
      const m = /at byte (\d+)/.exec(String(e.message));
      const offset = typeof e.offset === 'number' ? e.offset : m ? Number(m[1]) : NaN;
      return named && inBad(offset);
    });
    checks.check('the error event', () =>
      assert.ok(
        pointed.length > 0,
        `an error naming ${env.src} and an offset inside a bad extent ${JSON.stringify(env.bad)}; got ${JSON.stringify(fatal)}`,
      ),
    );

    // Not done: failed (or interrupted), resumable, error kept.
    const status = await runCli(['status', String(job), '--json'], { db: env.db });
    assert.equal(status.code, 0, explain(status));
    const st = only(status, 'status');
    assert.ok(st.state === 'failed' || st.state === 'interrupted', JSON.stringify(st));
    assert.ok(st.error, `status shows the error: ${JSON.stringify(st)}`);
    const jobs = await runCli(['jobs', '--json'], { db: env.db });
    const record = jobs.events.find((e) => e.job === job);
    assert.ok(record, jobs.stdout);
    assert.ok(record.state === 'failed' || record.state === 'interrupted', JSON.stringify(record));
    assert.ok(record.error, JSON.stringify(record));

    // Regions before the first bad one are hydrated (but for those sharing its failed batch).
    const map = await mapJson(env.db, job);
    const firstBad = Math.floor(env.bad[0].offset / REGION);
    const missing: number[] = [];
    for (let region = 0; region <= firstBad - BATCH; region++) {
      if (!regionHydrated(map, region)) missing.push(region);
    }
    checks.check('hydrated before the failure', () =>
      assert.deepEqual(
        missing,
        [],
        `regions before the bad region ${firstBad} not hydrated (map ${JSON.stringify(map)})`,
      ),
    );
    assert.equal(
      regionHydrated(map, firstBad),
      false,
      'the region holding the bad sector is not hydrated',
    );
    assert.ok((map.regionsHydrated as number) < (map.regionsTotal as number));
    assert.deepEqual(
      extents(map.unreadable),
      [],
      'nothing recorded as unreadable without --ignore-errors',
    );
    t.diagnostic(
      `stopped with ${String(map.regionsHydrated)}/${String(map.regionsTotal)} regions hydrated`,
    );

    // The same clone with --ignore-errors resumes the job and finishes.
    const again = await runCli([...args, '--ignore-errors'], { db: env.db });
    const resumed = again.events.find((e) => e.type === 'start');
    assert.ok(resumed, explain(again));
    checks.check('clone again after the failure', () => {
      assert.equal(resumed.job, job, `the failed job ${job} resumes (not a new job)`);
      assert.equal(resumed.resumed, true);
    });
    checks.check('the resumed clone', () =>
      assert.equal(again.code, 3, `exit 3 expected\n${explain(again)}`),
    );
    if (again.code === 3)
      await assertRescued(env, again, 'clone --ignore-errors after the failure', checks);
    checks.end();
  });
}
