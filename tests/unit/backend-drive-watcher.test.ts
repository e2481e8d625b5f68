// The drive watcher: polls, diffs, and says what was plugged in, pulled out or changed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Drive } from '../../engine/drives/classify';
import { listedDrive } from '../helpers/drives';
import { diffDrives, DriveWatcher, type DrivesDiff } from '../../main/drive-watcher';

test('diffDrives names what was added, removed and changed', () => {
  const before = [listedDrive('/dev/sda'), listedDrive('/dev/sdb'), listedDrive('/dev/sdc')];
  const after = [
    listedDrive('/dev/sda'),
    listedDrive('/dev/sdb', { mountpoints: ['/media/x'] }),
    listedDrive('/dev/sdd'),
  ];
  assert.deepEqual(diffDrives(before, after), {
    added: ['/dev/sdd'],
    removed: ['/dev/sdc'],
    changed: ['/dev/sdb'],
  });
  assert.deepEqual(diffDrives(after, after), { added: [], removed: [], changed: [] });
});

test('the watcher reports the first list, then only changes; a failing poll is reported once', async () => {
  let now: Drive[] = [listedDrive('/dev/sda', { system: true })];
  let fail = false;
  let calls = 0;
  const watcher = new DriveWatcher(async () => {
    calls += 1;
    if (fail) throw new Error('drivelist broke');
    return now;
  }, 10);
  const changes: DrivesDiff[] = [];
  const errors: Error[] = [];
  watcher.on('change', (d: DrivesDiff) => changes.push(d));
  watcher.on('error', (e: Error) => errors.push(e));

  await watcher.poll();
  assert.deepEqual(
    changes.map((c) => c.added),
    [['/dev/sda']],
  );
  await watcher.poll();
  assert.equal(changes.length, 1, 'nothing changed, nothing said');

  now = [...now, listedDrive('/dev/sdb')]; // plugged in
  await watcher.poll();
  assert.deepEqual(changes[1].added, ['/dev/sdb']);
  assert.equal(changes[1].drives.length, 2);

  fail = true;
  await watcher.poll();
  await watcher.poll();
  assert.equal(errors.length, 1);
  assert.equal(watcher.current?.length, 2, 'the last good list stays');
  fail = false;

  now = [now[0]]; // pulled out
  const [a, b] = await Promise.all([watcher.poll(), watcher.poll()]);
  assert.equal(a, b, 'concurrent polls share one listing');
  assert.deepEqual(changes[2].removed, ['/dev/sdb']);

  const before = calls;
  watcher.start();
  await new Promise((r) => setTimeout(r, 100));
  watcher.stop();
  assert.ok(calls - before >= 3, `polled ${calls - before} times in 100 ms at 10 ms`);
  const stoppedAt = calls;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls, stoppedAt, 'stop() stops polling');
});
