// The app's Eject button on each system (main/eject.ts), with the system's calls faked:
// Linux refuses a mounted drive; macOS ejects with diskutil, and after a refusal
// unmounts by force, ejects again and says so; Windows ejects a disk with no drive
// letter through IOCTL_STORAGE_EJECT_MEDIA, its volumes let go of first.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ejectDrive, ejectTool } from '../../main/eject';
import { listedDrive } from '../helpers/drives';
import { fakeWin32 } from '../helpers/fake-win32';

/** A run that records each command and fails those `refuse` names. */
function recorder(refuse: (args: string[]) => string | null = () => null) {
  const calls: string[] = [];
  const run = async (program: string, args: string[]): Promise<string> => {
    calls.push([program, ...args].join(' '));
    const why = refuse(args);
    if (why) throw Object.assign(new Error('exit 1'), { stderr: why });
    return '';
  };
  return { calls, run };
}

test('each system has its tool: udisksctl or eject, diskutil, Windows itself', () => {
  assert.equal(
    ejectTool('linux', (n) => (n === 'eject' ? '/usr/bin/eject' : null)),
    'eject',
  );
  assert.equal(ejectTool('darwin'), 'diskutil');
  assert.equal(
    ejectTool('win32', undefined, () => fakeWin32([], { volumes: [] })),
    'windows',
  );
  assert.equal(
    ejectTool('win32', undefined, () => null),
    null,
    'no koffi: no eject',
  );
});

test('Linux: a mounted drive is refused, an unmounted one powered off', async () => {
  const { calls, run } = recorder();
  const mounted = listedDrive('/dev/sdb', { mountpoints: ['/media/x'] });
  await assert.rejects(ejectDrive('/dev/sdb', [mounted], 'udisksctl', run), /in use/);
  const r = await ejectDrive('/dev/sdb', [listedDrive('/dev/sdb')], 'udisksctl', run);
  assert.equal(r.ejected, true);
  assert.deepEqual(calls, ['udisksctl power-off --block-device /dev/sdb']);
});

test('macOS: mounted is fine; a refused eject is forced, and the message says so', async () => {
  let refusals = 1;
  const { calls, run } = recorder((args) =>
    args[0] === 'eject' && refusals-- > 0
      ? 'Unmount of disk4 failed: at least one volume could not be unmounted\nUnmount was dissented by PID 47781 (/usr/bin/tail)'
      : null,
  );
  const stick = listedDrive('/dev/disk4', { mountpoints: ['/Volumes/NO NAME'] });
  const r = await ejectDrive('/dev/disk4', [stick], 'diskutil', run);
  assert.deepEqual(calls, [
    '/usr/sbin/diskutil eject /dev/disk4',
    '/usr/sbin/diskutil unmountDisk force /dev/disk4',
    '/usr/sbin/diskutil eject /dev/disk4',
  ]);
  assert.equal(r.ejected, true);
  assert.match(
    r.message,
    /refused at first \(Unmount of disk4 failed.*\): it was unmounted by force/,
  );
  // Even the force refused: not ejected, said why.
  const stubborn = recorder(() => 'Volume is busy');
  const no = await ejectDrive('/dev/disk4', [stick], 'diskutil', stubborn.run);
  assert.deepEqual(no, { ejected: false, message: 'It could not be ejected: Volume is busy' });
});

test('Windows: a disk with no drive letter is ejected; a holder is named', async () => {
  const calls: string[] = [];
  const volume = {
    name: '\\\\?\\Volume{0b5e7c44-2a1d-4f6e-9c3b-5d8e1f2a3b4c}\\',
    paths: [],
    extents: [{ disk: 2, offset: 1048576, length: 1 << 29 }],
  };
  const win = fakeWin32(calls, { volumes: [volume] });
  const disk = listedDrive('\\\\.\\PHYSICALDRIVE2');
  const r = await ejectDrive(disk.path, [disk], 'windows', recorder().run, () => win);
  assert.equal(r.ejected, true);
  assert.deepEqual(calls.slice(3), [
    'CreateFileW \\\\?\\Volume{0b5e7c44-2a1d-4f6e-9c3b-5d8e1f2a3b4c} = 100',
    'FSCTL_LOCK_VOLUME 100',
    'FSCTL_DISMOUNT_VOLUME 100',
    'IOCTL_STORAGE_EJECT_MEDIA 100',
    'CloseHandle 100',
  ]);
  const held = fakeWin32([], {
    volumes: [{ ...volume, paths: ['E:\\'] }],
    lockFailures: Infinity,
    holders: [{ pid: 4120, name: 'Windows Explorer' }],
  });
  const no = await ejectDrive(disk.path, [disk], 'windows', recorder().run, () => held);
  assert.equal(no.ejected, false);
  assert.equal(
    no.message,
    'It could not be ejected: Windows Explorer (PID 4120) holds E:: close it and try again',
  );
});
