// Sleep is inhibited while a copy runs, and only then: through a stand-in for
// systemd-inhibit (a script that records its pid and runs the command it is given, as the
// real one does), the holding process lives from job-started to done, and dies with
// DriveTwin even when DriveTwin is killed.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { SleepInhibitor, systemdInhibit } from '../../main/sleep-inhibitor';
import { tempDir } from '../helpers/files';

const alive = (pid: number): boolean =>
  fs.existsSync(`/proc/${pid}`) &&
  !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));

async function until(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A systemd-inhibit stand-in: writes its pid to `pidFile`, then runs its command. */
function fakeInhibit(dir: string): { program: string; pidFile: string } {
  const program = path.join(dir, 'systemd-inhibit');
  const pidFile = path.join(dir, 'pid');
  fs.writeFileSync(
    program,
    `#!/bin/sh\nwhile [ "\${1#--}" != "$1" ]; do shift; done\necho $$ > ${pidFile}\nexec "$@"\n`,
    { mode: 0o755 },
  );
  return { program, pidFile };
}

test('held from a job’s start to its end, released when no job runs', async (t) => {
  const tmp = tempDir('drivetwin-inhibit-');
  t.after(() => tmp.cleanup());
  const { program, pidFile } = fakeInhibit(tmp.dir);
  const inhibitor = new SleepInhibitor(systemdInhibit(spawn, () => program));
  const errors: Error[] = [];
  inhibitor.on('error', (e: Error) => errors.push(e));
  t.after(() => inhibitor.close());

  assert.equal(inhibitor.active, false);
  inhibitor.onEvent('job-started', { job: 1 } as never);
  inhibitor.onEvent('job-started', { job: 2 } as never);
  await until('the inhibitor to run', () => fs.existsSync(pidFile));
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.equal(inhibitor.active, true);
  assert.ok(alive(pid));
  inhibitor.onEvent('done', { job: 1 } as never);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(alive(pid), 'still held: job 2 runs');
  inhibitor.onEvent('done', { job: 2 } as never);
  assert.equal(inhibitor.active, false);
  await until('the inhibitor to end', () => !alive(pid));
  assert.deepEqual(errors, []);
});

test('DriveTwin killed: the inhibitor ends with it', async (t) => {
  const tmp = tempDir('drivetwin-inhibit-');
  t.after(() => tmp.cleanup());
  const { program, pidFile } = fakeInhibit(tmp.dir);
  const module = path.join(__dirname, '..', '..', 'main', 'sleep-inhibitor.js');
  const parent = spawn(
    process.execPath,
    [
      '-e',
      `const { spawn } = require('node:child_process');
       const { systemdInhibit } = require(${JSON.stringify(module)});
       systemdInhibit(spawn, () => ${JSON.stringify(program)})(() => {});
       setInterval(() => {}, 1000);`,
    ],
    { stdio: 'ignore' },
  );
  t.after(() => parent.kill('SIGKILL'));
  await until('the inhibitor to run', () => fs.existsSync(pidFile));
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.ok(alive(pid));
  parent.kill('SIGKILL');
  await until('the inhibitor to end with its parent', () => !alive(pid));
});
