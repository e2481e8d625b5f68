// The target-safety rules give one sentence wherever they are asked: the drive list's
// verdicts (what the renderer shows), the backend's check before a clone, and the
// engine's check before the first byte (what the CLI prints).

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { type Drive, imageFileDrive } from '../../engine/drives/classify';
import { type Facts, pathFacts } from '../../engine/drives/facts';
import { listDrives } from '../../engine/drives/list';
import {
  destinationProblems,
  namedTwice,
  sourceVerdict,
  targetVerdict,
  verdictFor,
} from '../../engine/drives/safety';
import { createBackend, type Engine } from '../../main/api';
import { tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

/** A writable, unused, unmounted 1 GiB drive, but for `over`. */
function driveFacts(over: Partial<Facts>): Facts {
  const nothing = pathFacts('/dev/drivetwin-no-such-drive');
  return { ...nothing, path: '/dev/sdx', kind: 'block', name: 'Disk', size: 1024 * MIB, ...over };
}

/** A backend over the real drive list whose engine must never be asked. */
function backend(t: TestContext) {
  const engine: Engine = {
    request: async (command) => assert.fail(`the engine was asked to ${command.type}`),
    onEvent: () => () => undefined,
    running: () => false,
  };
  const api = createBackend({ engine, listDrives, dialogs: null, transport: 'web' });
  t.after(() => api.close());
  /** The message startClone refuses `targets` with. */
  return async (source: string, targets: Array<{ path: string; confirmed?: boolean }>) => {
    const reply = await api.call('startClone', [{ source, targets }]);
    assert.equal(reply.ok, false, 'refused');
    return reply.ok ? '' : reply.error.message;
  };
}

test('a drive that is in use: mounted, swap, or held open by device-mapper — refused unless allowed', () => {
  const held = driveFacts({ holders: ['/dev/mapper/vault', '/dev/dm-1'] });
  assert.deepEqual(targetVerdict(held), {
    level: 'refused',
    reasons: ['/dev/sdx is in use by /dev/mapper/vault, /dev/dm-1'],
  });
  assert.deepEqual(targetVerdict(held, { allowMounted: true }).reasons, [
    'everything on /dev/sdx (Disk, 1.00 GiB) will be overwritten',
    '/dev/sdx is in use by /dev/mapper/vault, /dev/dm-1: it will be written while in use',
  ]);
  const mounted = driveFacts({ mountpoints: ['/media/x', '[SWAP]'], holders: ['/dev/dm-1'] });
  assert.deepEqual(targetVerdict(mounted).reasons, [
    '/dev/sdx is mounted at /media/x and is in use as swap',
  ]);
  // The listing says the same of a listed drive that something holds open.
  const drive: Drive = {
    path: '/dev/sdx',
    name: 'Disk',
    size: 1024 * MIB,
    logicalBlockSize: 512,
    bus: 'usb',
    removable: true,
    readOnly: false,
    mountpoints: [],
    holders: ['/dev/mapper/vault'],
    system: false,
    kind: 'block',
    serial: null,
    backingFile: null,
  };
  assert.deepEqual(verdictFor(drive, 'target').reasons, [
    '/dev/sdx is in use by /dev/mapper/vault',
  ]);
});

test('the system drive, and a partition of it, name what holds the running system', () => {
  assert.deepEqual(targetVerdict(driveFacts({ system: true })).reasons, [
    '/dev/sdx holds the running system',
  ]);
  const partition = driveFacts({ path: '/dev/sdx2', system: true, wholeDisk: '/dev/sdx' });
  assert.deepEqual(targetVerdict(partition).reasons, [
    '/dev/sdx2 is on /dev/sdx, which holds the running system',
  ]);
  assert.equal(targetVerdict(partition, { allowSystem: true }).level, 'confirm');
});

test('the size rule: a drive smaller than the source is refused; an image file is grown', () => {
  const small = driveFacts({ size: 16 * MIB - 4096 });
  assert.deepEqual(targetVerdict(small, { sourceSize: 16 * MIB }).reasons, [
    '/dev/sdx (16.0 MiB) is smaller than the source (16.0 MiB)',
  ]);
  assert.equal(targetVerdict(small, { sourceSize: 16 * MIB - 4096 }).level, 'confirm');
  const file = driveFacts({ path: '/x/a.img', kind: 'file', drivePath: false, size: MIB });
  assert.equal(targetVerdict(file, { sourceSize: 16 * MIB }).level, 'usable');
  // A target that is part of the source is refused for that, not for being smaller.
  const part = driveFacts({
    path: '/dev/sdx1',
    size: MIB,
    overlap: { source: '/dev/sdx', kind: 'within', inner: 'target', how: { as: 'partition of' } },
  });
  assert.deepEqual(targetVerdict(part, { sourceSize: 16 * MIB }).reasons, [
    '/dev/sdx1 is a partition of the source /dev/sdx',
  ]);
});

test('the size rule and partitions: a smaller drive that holds them takes a fitted copy, with the numbers', () => {
  const GIB = 1024 * MIB;
  const source = 2 * GIB;
  const partitions = { end: 1.5 * GIB, fitSize: 1.5 * GIB + 33 * 512 };
  const card = driveFacts({ size: 1.6 * GIB });
  const fitted = targetVerdict(card, { sourceSize: source, partitions, fit: true });
  assert.equal(fitted.level, 'confirm');
  assert.match(fitted.reasons.join(' '), /only its partitions are copied.*ends at 1\.50 GiB/);
  // Not asked to fit: refused, and told how.
  const asked = targetVerdict(card, { sourceSize: source, partitions });
  assert.equal(asked.level, 'refused');
  assert.match(asked.reasons[0], /but its partitions fit: .*Copy only them with --fit/);
  // Too small even for the partitions: refused with the numbers, fit or not.
  const small = driveFacts({ size: 1.4 * GIB });
  for (const fit of [true, false]) {
    assert.deepEqual(targetVerdict(small, { sourceSize: source, partitions, fit }).reasons, [
      "/dev/sdx (1.40 GiB) is smaller than the source (2.00 GiB) and its partitions don't fit: " +
        "the last partition ends at 1.50 GiB and its GPT's backup needs 16.5 KiB after it; this drive holds 1.40 GiB",
    ]);
  }
  // A stream of unknown size: a fitted copy's size is known, and checked.
  assert.equal(targetVerdict(small, { partitions, fit: true }).level, 'refused');
  assert.equal(targetVerdict(card, { partitions, fit: true }).level, 'confirm');
  // Without a partition table nothing changes.
  assert.deepEqual(targetVerdict(card, { sourceSize: source, fit: true }).reasons, [
    '/dev/sdx (1.60 GiB) is smaller than the source (2.00 GiB)',
  ]);
});

test('a drive that is gone, a device the system does not know, a folder: one sentence each role', () => {
  const gone = pathFacts('/dev/drivetwin-no-such-drive');
  assert.equal(gone.kind, 'missing');
  assert.equal(gone.drivePath, true, 'a missing /dev path is a drive, never a file to create');
  for (const verdict of [targetVerdict(gone), sourceVerdict(gone)]) {
    assert.deepEqual(verdict, {
      level: 'refused',
      reasons: ['/dev/drivetwin-no-such-drive is not connected'],
    });
  }
  const unknown = driveFacts({ unknownDevice: true });
  assert.deepEqual(targetVerdict(unknown).reasons, [
    '/dev/sdx is not a block device the system knows',
  ]);
  const folder = pathFacts('/tmp');
  assert.deepEqual(targetVerdict(folder).reasons, ['/tmp is a folder']);
  assert.deepEqual(sourceVerdict(folder).reasons, ['/tmp is a folder']);
});

test('a new image file in a folder that does not exist: the same sentence from the listing, the engine and the backend', async (t) => {
  const tmp = tempDir('drivetwin-safety-folder-');
  t.after(() => tmp.cleanup());
  const source = path.join(tmp.dir, 'src.img');
  writeRandomFile(source, MIB, 1);
  const nowhere = path.join(tmp.dir, 'nowhere', 'copy.img');
  const sentence = `${nowhere} can't be created: folder ${path.join(tmp.dir, 'nowhere')} does not exist`;
  assert.deepEqual(verdictFor(imageFileDrive(nowhere), 'target', { sourcePath: source }), {
    level: 'refused',
    reasons: [sentence],
  });
  assert.deepEqual(destinationProblems(source, nowhere), [sentence]);
  assert.equal(await backend(t)(source, [{ path: nowhere }]), sentence);
  // In a folder that exists it is a file to create (even under /dev/shm, unlike /dev itself).
  const shm = path.join(tmp.dir, 'new.img');
  assert.deepEqual(destinationProblems(source, shm), []);
});

test('a target named twice, by the same path or another name for it', async (t) => {
  const tmp = tempDir('drivetwin-safety-twice-');
  t.after(() => tmp.cleanup());
  const source = path.join(tmp.dir, 'src.img');
  writeRandomFile(source, MIB, 2);
  const a = path.join(tmp.dir, 'a.img');
  const link = path.join(tmp.dir, 'link.img');
  fs.writeFileSync(a, '');
  fs.symlinkSync(a, link);
  assert.equal(namedTwice([a, path.join(tmp.dir, 'b.img')]), null);
  assert.equal(namedTwice([a, a]), `${a} is named twice`);
  assert.equal(namedTwice([a, link]), `${link} is named twice`);
  assert.equal(
    namedTwice([path.join(tmp.dir, 'new.img'), `${tmp.dir}/./new.img`]),
    `${tmp.dir}/./new.img is named twice`,
  );
  assert.equal(await backend(t)(source, [{ path: a }, { path: link }]), `${link} is named twice`);
});

test('a loop device smaller than the source: the same sentence from the listing, the engine and the backend', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'safety-small');
  const source = env.file('src.img');
  writeRandomFile(source, 16 * MIB, 3);
  const small = env.loop('small.img', 12 * MIB);
  const sentence = `${small.path} (12.0 MiB) is smaller than the source (16.0 MiB)`;

  const listed = (await listDrives()).find((d) => d.path === small.path);
  assert.ok(listed, `${small.path} is listed`);
  const opts = { sourcePath: source, sourceSize: 16 * MIB };
  assert.deepEqual(verdictFor(listed, 'target', opts), { level: 'refused', reasons: [sentence] });
  assert.deepEqual(destinationProblems(source, small.path, { sourceSize: 16 * MIB }), [sentence]);
  assert.equal(await backend(t)(source, [{ path: small.path, confirmed: true }]), sentence);
});

test('an attached block device DriveTwin does not list is refused by the backend', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'safety-unlisted');
  const source = env.file('src.img');
  writeRandomFile(source, MIB, 4);
  // A loop device with no backing file is not listed, but its node is a block device.
  const loop = env.loop('gone.img', MIB);
  loop.detach();
  if (!fs.statSync(loop.path, { throwIfNoEntry: false })?.isBlockDevice()) {
    return t.skip(`${loop.path} went away with its binding`);
  }
  assert.equal(
    await backend(t)(source, [{ path: loop.path, confirmed: true }]),
    `${loop.path} is not a drive DriveTwin lists (no longer connected?)`,
  );
});
