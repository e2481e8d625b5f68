// The handlers against a stand-in engine that only records commands: the contract's
// shape, the confirmation rules for drive targets, dialogs and the text-field
// fallback, and engine events renamed for the renderer.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { HostCommand, HostEvent } from '../../engine/host/protocol';
import { createBackend, type Dialogs, type Engine } from '../../main/api';
import { EVENT_CHANNELS, EVENTS, INVOKE_CHANNELS, METHODS } from '../../preload/api';
import { tempDir, writeRandomFile } from '../helpers/files';
import { listedDrive } from '../helpers/drives';

function fakeEngine() {
  const commands: HostCommand[] = [];
  const listeners = new Set<(e: HostEvent) => void>();
  const engine: Engine = {
    async request(command) {
      commands.push(command);
      if (command.type === 'start') return { job: 7, intent: 'new' };
      if (command.type === 'list-jobs') return { jobs: [], live: [] };
      return null;
    },
    onEvent(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    running: () => false,
  };
  return { engine, commands, emit: (e: HostEvent) => listeners.forEach((l) => l(e)) };
}

/** An unattached loop device node: a real block device path that nothing will write. */
function spareBlockDevice(): string | null {
  for (let i = 7; i >= 0; i--) {
    const p = `/dev/loop${i}`;
    try {
      if (fs.statSync(p).isBlockDevice()) return p;
    } catch {
      // next
    }
  }
  return null;
}

test('the contract: one handler and one IPC channel per method, one channel per event', () => {
  const { engine } = fakeEngine();
  const backend = createBackend({
    engine,
    listDrives: async () => [],
    dialogs: null,
    transport: 'electron',
  });
  assert.deepEqual(Object.keys(backend.handlers).sort(), [...METHODS].sort());
  const channels = [...Object.values(INVOKE_CHANNELS), ...Object.values(EVENT_CHANNELS)];
  assert.equal(new Set(channels).size, METHODS.length + EVENTS.length);
  assert.ok(channels.every((c) => c.startsWith('drivetwin:')));
  assert.equal(INVOKE_CHANNELS.startClone, 'drivetwin:call:startClone');
  assert.equal(EVENT_CHANNELS['region-map'], 'drivetwin:event:region-map');
  backend.close();
});

test('dialogs pick images; without dialogs a typed path is checked instead', async (t) => {
  const tmp = tempDir('drivetwin-api-dialogs-');
  t.after(() => tmp.cleanup());
  const image = path.join(tmp.dir, 'disk.img');
  writeRandomFile(image, 1 << 20, 1);
  let answer: string | null = image;
  const dialogs: Dialogs = {
    open: async () => answer,
    save: async () => path.join(tmp.dir, 'out.img'),
  };
  const { engine } = fakeEngine();
  const withDialogs = createBackend({
    engine,
    listDrives: async () => [],
    dialogs,
    transport: 'electron',
  });
  assert.equal((await withDialogs.handlers.capabilities()).dialogs, true);
  assert.equal((await withDialogs.handlers.pickImageToOpen())?.path, image);
  answer = null;
  assert.equal(await withDialogs.handlers.pickImageToOpen(), null, 'cancelled');
  assert.equal((await withDialogs.handlers.pickImageToSave())?.size, 0);
  const listed = await withDialogs.handlers.listDrives();
  assert.deepEqual(listed.map((d) => d.path).sort(), [image, path.join(tmp.dir, 'out.img')].sort());

  const web = createBackend({
    engine,
    listDrives: async () => [],
    dialogs: null,
    transport: 'web',
  });
  assert.equal((await web.handlers.capabilities()).dialogs, false);
  assert.equal(await web.handlers.pickImageToOpen(), null);
  assert.equal((await web.handlers.pickImageToOpen(image))?.verdicts.source.level, 'usable');
  const fail = async (p: string, code: string, message: RegExp) => {
    const reply = await web.call('pickImageToOpen', [p]);
    assert.equal(reply.ok, false);
    if (!reply.ok) {
      assert.equal(reply.error.code, code);
      assert.match(reply.error.message, message);
    }
  };
  await fail('disk.img', 'invalid', /full path/);
  await fail(path.join(tmp.dir, 'nope.img'), 'not-found', /does not exist/);
  await fail(tmp.dir, 'refused', /not an image file/);
  const save = await web.call('pickImageToSave', [path.join(tmp.dir, 'no', 'x.img')]);
  assert.equal(save.ok === false && save.error.code, 'not-found');
});

test('a system drive target needs its exact name typed; a mounted one needs allowMounted', async (t) => {
  const dev = spareBlockDevice();
  if (!dev) return t.skip('no block device node to stand in for a drive');
  const tmp = tempDir('drivetwin-api-confirm-');
  t.after(() => tmp.cleanup());
  const source = path.join(tmp.dir, 'src.img');
  writeRandomFile(source, 1 << 20, 2);
  let drives = [listedDrive(dev, { system: true, name: 'Samsung SSD 980' })];
  const { engine, commands } = fakeEngine();
  const backend = createBackend({
    engine,
    listDrives: async () => drives,
    dialogs: null,
    transport: 'electron',
  });
  const start = (target: Record<string, unknown>) =>
    backend.call('startClone', [{ source, targets: [{ path: dev, ...target }] }]);
  const refusedWith = async (target: Record<string, unknown>, message: RegExp) => {
    const reply = await start(target);
    assert.equal(reply.ok, false, JSON.stringify(target));
    if (!reply.ok) assert.match(reply.error.message, message);
  };

  await refusedWith({ confirmed: true }, /running system/);
  await refusedWith(
    { confirmed: true, confirmSystemName: 'samsung ssd 980' },
    /confirmSystemName must be its name, "Samsung SSD 980"/,
  );
  await refusedWith({ confirmSystemName: 'Samsung SSD 980' }, /confirm/);
  assert.equal(commands.length, 0);
  const ok = await start({ confirmed: true, confirmSystemName: 'Samsung SSD 980' });
  assert.deepEqual(ok, { ok: true, value: { job: 7, intent: 'new' } });
  const started = commands.at(-1) as Extract<HostCommand, { type: 'start' }>;
  assert.deepEqual(started.confirmed, [dev]);
  assert.equal(started.request.allowSystem, true);
  assert.equal(started.request.allowMounted, false);

  drives = [listedDrive(dev, { mountpoints: ['/media/usb'] })];
  await refusedWith({ confirmed: true }, /mounted at \/media\/usb/);
  await refusedWith(
    { confirmed: true, confirmSystemName: 'Disk' },
    /only for the drive that holds the system/,
  );
  assert.ok((await start({ confirmed: true, allowMounted: true })).ok);
  assert.equal(
    (commands.at(-1) as Extract<HostCommand, { type: 'start' }>).request.allowMounted,
    true,
  );

  drives = []; // unplugged since the renderer listed it
  await refusedWith({ confirmed: true }, /no longer connected/);
  assert.equal(commands.filter((c) => c.type === 'start').length, 2);
});

test('engine events reach the renderer under the contract names, without the protocol type', () => {
  const { engine, emit } = fakeEngine();
  const backend = createBackend({
    engine,
    listDrives: async () => [],
    dialogs: null,
    transport: 'web',
  });
  const got: Array<[string, unknown]> = [];
  const off = backend.onEvent((event, payload) => got.push([event, payload]));
  emit({ type: 'mode', job: 3, mode: 'ro', reason: 'commit failed' });
  emit({
    type: 'verify-progress',
    job: 3,
    phase: 'verifying',
    bytesDone: 1,
    bytesTotal: 2,
    rate: 0,
    eta: null,
  });
  off();
  emit({ type: 'mode', job: 3, mode: 'fail', reason: 'x' });
  assert.deepEqual(got, [
    ['mode', { job: 3, mode: 'ro', reason: 'commit failed' }],
    [
      'verify-progress',
      { job: 3, phase: 'verifying', bytesDone: 1, bytesTotal: 2, rate: 0, eta: null },
    ],
  ]);
});
