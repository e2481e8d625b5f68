// Every run ends with a `done` event that tells the truth about every destination,
// whatever failed — a destination served over FUSE whose server dies, a job database
// truncated or overwritten under the copy — and a job that can be resumed after it.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { type CliEvent, explain, expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { sha256, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { pluggableDrive } from '../helpers/nbd';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

test('a destination served over FUSE whose server dies mid-copy: a done event says it failed and the other is done; no unhandled error', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'end-fuse');
  const src = env.file('src.img');
  writeRandomFile(src, 48 * MIB, 51);
  const other = env.file('other.img');
  const backing = env.file('backing.img');
  fs.writeFileSync(backing, '');
  fs.truncateSync(backing, 48 * MIB);
  const drive = await pluggableDrive(backing);
  t.after(() => drive.stop({ kill: true }));
  const run = spawnCli(['clone', src, other, drive.file, '--max-rate', '16M', '--json'], {
    db: env.db,
  });
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 4);
  // nbdkit killed, nbdfuse and its mount left: the FUSE file's server is gone.
  const nbdkit = Number(fs.readFileSync(path.join(path.dirname(drive.file), 'nbdkit.pid'), 'utf8'));
  process.kill(nbdkit, 'SIGKILL');
  const r = await run.done;
  expectExit(r, 1);
  const done = only(r, 'done');
  assert.equal(done.state, 'failed', explain(r));
  const results = done.destinations as Array<{ path: string; state: string; error: string }>;
  assert.equal(results.find((d) => d.path === other)?.state, 'done', explain(r));
  assert.equal(results.find((d) => d.path === drive.file)?.state, 'failed', explain(r));
  assert.match(results.find((d) => d.path === drive.file)!.error, /ENOTCONN|EIO|ECONNABORTED/);
  assert.ok(r.events.at(-1)?.type === 'done', 'done is the last word');
  assert.doesNotMatch(r.stderr, /^drivetwin: /m, 'no error escaped the session');
  assert.equal(sha256(other), sha256(src));
});

async function jobOf(db: string, id: number): Promise<CliEvent> {
  const r = await runCli(['jobs', '--json'], { db });
  expectExit(r, 0);
  const found = r.events.find((e) => e.job === id);
  assert.ok(found, `job ${id} is listed: ${r.stdout}${r.stderr}`);
  return found;
}

for (const [what, damage] of [
  ['truncated', (db: string) => fs.truncateSync(db, 0)],
  [
    'overwritten',
    (db: string) => {
      const fd = fs.openSync(db, 'r+');
      fs.writeSync(fd, Buffer.alloc(fs.fstatSync(fd).size, 0x5a), 0, undefined, 0);
      fs.closeSync(fd);
    },
  ],
] as const) {
  test(`the job database ${what} mid-copy: the copy stops saying so, the job is written again, status and resume work`, async (t) => {
    const env = workspace(t, `end-db-${what}`);
    const src = env.file('src.img');
    const dst = env.file('dst.img');
    writeRandomFile(src, 96 * MIB, 52);
    const run = spawnCli(['clone', src, dst, '--max-rate', '24M', '--json'], { db: env.db });
    await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 4);
    damage(env.db);
    const r = await run.done;
    expectExit(r, 1);
    const done = only(r, 'done');
    assert.notEqual(done.state, 'done', explain(r));
    const messages = r.events.filter((e) => e.type === 'error').map((e) => e.message as string);
    assert.ok(
      messages.some((m) => /the job database .* was damaged or replaced during the copy/.test(m)),
      explain(r),
    );
    assert.ok(
      messages.some((m) => /written again .* resume job \d+ to go on/.test(m)),
      explain(r),
    );
    const id = done.job as number;
    const status = await runCli(['status', String(id)], { db: env.db });
    expectExit(status, 0);
    const record = await jobOf(env.db, id);
    assert.notEqual(record.state, 'done');
    assert.ok((record.regionsHydrated as number) > 0, JSON.stringify(record));
    const back = await runCli(['resume', String(id), '--max-rate', '0', '--json'], {
      db: env.db,
    });
    expectExit(back, 0);
    assert.ok((only(back, 'start').regionsHydrated as number) > 0, 'it went on where it was');
    assert.equal(sha256(dst), sha256(src));
  });
}
