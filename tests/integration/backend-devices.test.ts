// The handlers on real drives (loop devices, as root): a drive target needs the
// user's explicit confirmation, a drive that disappeared can't be written, the system
// drive is refused, and a clone onto a drive survives a killed engine.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { listDrives } from '../../engine/drives/list';
import { startBackend } from '../helpers/backend';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { attachLoop, requireRoot, type LoopDevice } from '../helpers/loop';

const MIB = 1024 * 1024;

function setUp(t: TestContext, prefix: string) {
  const tmp = tempDir(`drivetwin-backend-${prefix}-`);
  const loops: LoopDevice[] = [];
  t.after(() => {
    for (const l of loops) l.detach();
    tmp.cleanup();
  });
  const file = (name: string): string => path.join(tmp.dir, name);
  const harness = startBackend(t, { dbPath: file('jobs.db'), progressMs: 100, listDrives });
  return {
    ...harness,
    file,
    /** An empty drive of `size` bytes. */
    drive(name: string, size: number): LoopDevice {
      const f = file(name);
      fs.writeFileSync(f, '');
      fs.truncateSync(f, size);
      const l = attachLoop(f);
      loops.push(l);
      return l;
    },
  };
}

function devSha(dev: string, length?: number): string {
  execFileSync('blockdev', ['--flushbufs', dev]);
  return sha256(dev, length);
}

test('a drive target is written only with the confirmation, and then byte-identically', async (t) => {
  if (!requireRoot(t)) return;
  const h = setUp(t, 'confirm');
  writeRandomFile(h.file('src.img'), 24 * MIB, 21);
  const drive = h.drive('drive.img', 32 * MIB);
  const empty = devSha(drive.path);

  const drives = await h.call('listDrives', { source: h.file('src.img') });
  const listed = drives.find((d) => d.path === drive.path);
  assert.ok(listed, `${drive.path} is listed`);
  assert.equal(listed.verdicts.target.level, 'confirm');
  assert.match(listed.verdicts.target.reasons.join(' '), /overwritten/);
  // Its own backing file as the source: refused.
  const own = await h.call('listDrives', { source: drive.file });
  assert.equal(own.find((d) => d.path === drive.path)?.verdicts.target.level, 'refused');

  for (const target of [{ path: drive.path }, { path: drive.path, confirmed: false }]) {
    await assert.rejects(h.call('startClone', { source: h.file('src.img'), targets: [target] }), {
      code: 'refused',
      message: /confirm/,
    });
  }
  assert.deepEqual(
    h.commands.filter((c) => c.type !== 'list-jobs'),
    [],
  );
  assert.equal(devSha(drive.path), empty);

  const { job } = await h.call('startClone', {
    source: h.file('src.img'),
    targets: [{ path: drive.path, confirmed: true }],
  });
  const done = await h.waitFor('done', (d) => d.job === job);
  assert.equal(done.state, 'done');
  assert.equal(devSha(drive.path, 24 * MIB), sha256(h.file('src.img')));
});

test('a drive that disappeared is refused, and so is the system drive', async (t) => {
  if (!requireRoot(t)) return;
  const h = setUp(t, 'gone');
  writeRandomFile(h.file('src.img'), 4 * MIB, 22);
  const drive = h.drive('drive.img', 8 * MIB);
  assert.ok((await h.call('listDrives')).some((d) => d.path === drive.path));
  drive.detach();
  await assert.rejects(
    h.call('startClone', {
      source: h.file('src.img'),
      targets: [{ path: drive.path, confirmed: true }],
    }),
    { code: 'refused', message: /no longer connected/ },
  );

  const system = (await h.call('listDrives')).find((d) => d.system && d.kind === 'block');
  if (system) {
    // Never sent with everything allowed: only the refusals are tried on the real disk.
    for (const target of [
      { path: system.path, confirmed: true },
      { path: system.path, confirmed: true, confirmSystemName: `${system.name}x` },
      { path: system.path, confirmed: true, confirmSystemName: system.name },
    ]) {
      await assert.rejects(h.call('startClone', { source: h.file('src.img'), targets: [target] }), {
        code: 'refused',
      });
    }
    const shown = await h.call('listDrives', { allowSystem: true, allowMounted: true });
    assert.equal(shown.find((d) => d.path === system.path)?.verdicts.target.level, 'confirm');
  } else {
    t.diagnostic('no system drive listed on this machine');
  }
  assert.deepEqual(
    h.commands.filter((c) => c.type !== 'list-jobs'),
    [],
  );
});

test('a clone onto a drive survives a killed engine and resumes, confirmed again, to a byte-identical end', async (t) => {
  if (!requireRoot(t)) return;
  const h = setUp(t, 'kill');
  writeRandomFile(h.file('src.img'), 64 * MIB, 23);
  const drive = h.drive('drive.img', 64 * MIB);
  const { job } = await h.call('startClone', {
    source: h.file('src.img'),
    targets: [{ path: drive.path, confirmed: true }],
    options: { maxRate: 24 * MIB },
  });
  await h.waitFor('progress', (p) => p.job === job && p.regionsHydrated >= 12);
  process.kill(h.engine.jobPid(job)!, 'SIGKILL');
  assert.equal((await h.waitFor('done', (d) => d.job === job)).state, 'interrupted');
  const [summary] = await h.call('listJobs');
  assert.equal(summary.resumable, true);

  await assert.rejects(h.call('resumeJob', job), { code: 'refused', message: /confirm/ });
  await h.call('resumeJob', job, { confirmed: true, options: { maxRate: 0 } });
  const done = await h.waitFor('done', (d) => d.job === job && d.state !== 'interrupted');
  assert.equal(done.state, 'done');
  assert.equal(devSha(drive.path), sha256(h.file('src.img')));
});

test('a compressed image is listed and size-checked at the size it holds, not its file size', async (t) => {
  if (!requireRoot(t)) return;
  const h = setUp(t, 'xz-size');
  // 24 MiB of which 16 MiB zeros: the .xz is well under the 16 MiB drive below.
  const image = h.file('image.img');
  writeRandomFile(image, 8 * MIB, 22);
  fs.truncateSync(image, 24 * MIB);
  execFileSync('xz', ['-T2', '-k', image]);
  const xz = `${image}.xz`;
  assert.ok(fs.statSync(xz).size < 16 * MIB);
  const small = h.drive('small.img', 16 * MIB);

  const picked = await h.call('pickImageToOpen', xz);
  assert.equal(picked?.size, 24 * MIB);
  assert.equal(picked?.sizeKnown, true);
  const drives = await h.call('listDrives', { source: xz });
  const verdict = drives.find((d) => d.path === small.path)?.verdicts.target;
  assert.equal(verdict?.level, 'refused');
  assert.match(verdict?.reasons.join(' ') ?? '', /smaller than the source \(24(\.0)? MiB\)/);
  await assert.rejects(
    h.call('startClone', { source: xz, targets: [{ path: small.path, confirmed: true }] }),
    /smaller than the source/,
  );
});
