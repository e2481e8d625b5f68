// A download stopped by its reader or its user: a reader that stops reading (a paused
// job) is not a stalled server, and a job stopped while its download waits to try again
// stops at once, resumable.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { RemoteFile } from '../../engine/io/http/remote-file';
import { expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { sha256, tempDir, writeMixedFile } from '../helpers/files';
import { startServer, type TestServer } from '../helpers/http-server';

const MIB = 1024 * 1024;
const SIZE = 32 * MIB;

let dir = '';
let cleanup = (): void => undefined;
let server: TestServer;
let want = '';

before(async () => {
  ({ dir, cleanup } = tempDir('drivetwin-download-stops-'));
  writeMixedFile(path.join(dir, 'disk.img'), SIZE, 41);
  want = sha256(path.join(dir, 'disk.img'));
  server = await startServer();
  server.serve('disk.img', path.join(dir, 'disk.img'));
});

after(async () => {
  await server?.close();
  cleanup();
});

test('a reader that waits longer than the timeout between reads is no stalled server', async (t) => {
  process.env.DRIVETWIN_HTTP_TIMEOUT = '1';
  t.after(() => delete process.env.DRIVETWIN_HTTP_TIMEOUT);
  const file = await RemoteFile.open(server.url('disk.img'), null);
  const chunks = file.stream({ bytes: 0 })[Symbol.asyncIterator]();
  const first = await chunks.next();
  assert.ok(!first.done);
  await new Promise((resolve) => setTimeout(resolve, 2500));
  let length = (first.value as Buffer).length;
  for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
    length += (next.value as Buffer).length;
  }
  assert.equal(length, SIZE);
  assert.equal(file.retries, 0, 'nothing was tried again');
});

test('stopped while its download waits to try again: it stops at once, and resumes', async (t) => {
  server.misbehave({ dropEvery: 8 * MIB, drops: 1, rate: 4 * MIB });
  t.after(() => {
    server.misbehave({});
    server.heal('disk.img');
  });
  const db = path.join(dir, 'jobs.db');
  const dest = path.join(dir, 'out.img');
  const slow = { DRIVETWIN_HTTP_RETRY_DELAY: '25' };
  const run = spawnCli(['clone', server.url('disk.img'), dest, '--json'], { db, env: slow });
  const start = await run.waitEvent((e) => e.type === 'start');
  await run.waitEvent((e) => e.type === 'error' && /trying again in 25 s/.test(String(e.message)));
  const stoppedAt = Date.now();
  run.child.kill('SIGTERM');
  const r = await run.done;
  assert.ok(Date.now() - stoppedAt < 15_000, 'it did not wait out the pause');
  assert.equal(r.code, 130);
  assert.equal(only(r, 'done').state, 'interrupted');
  server.misbehave({});
  const again = await runCli(['resume', String(start.job), '--json'], { db });
  expectExit(again, 0);
  assert.equal(sha256(dest), want);
});
