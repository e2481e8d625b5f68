// DriveTwin's Windows-only calls (engine/drives/win32-kernel.ts: volume enumeration,
// disk extents, FSCTL_LOCK_VOLUME / FSCTL_DISMOUNT_VOLUME, the disk IOCTLs, Restart
// Manager) made for real by Windows Node: under Wine here, where it shows what Wine
// implements (README, "Run under Wine"), or on a Windows machine. Not part of npm test.
// Writes what each call answered to the file named by its argument.
//   NODE_SKIP_PLATFORM_CHECK=1 NODE_PATH=<folder with koffi's Windows build> \
//     wine64 node.exe scripts/wine-kernel32.js C:\\users\\out.txt
'use strict';
const fs = require('fs');
const out = [];
const say = (...a) =>
  out.push(a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' '));
const step = async (name, fn) => {
  try {
    say('OK  ', name, await fn());
  } catch (e) {
    say('FAIL', name, e.code || '', e.message);
  }
};
(async () => {
  say('node', process.version, process.platform, process.arch);
  const { liveWin32 } = require('../dist/engine/drives/win32-kernel');
  const {
    volumesOnDisk,
    volumeLabel,
    refusedWrite,
  } = require('../dist/engine/drives/win32-volumes');
  const win = liveWin32();
  say('liveWin32 loaded:', win !== null);
  if (!win) return;
  let vols = [];
  await step(
    'volumes (FindFirstVolumeW/FindNextVolumeW)',
    async () => (vols = await win.volumes()),
  );
  for (const v of vols) {
    await step(`volumePaths ${v}`, () => win.volumePaths(v));
    await step(`volumeExtents ${v}`, () => win.volumeExtents(v));
  }
  await step('volumesOnDisk 0', async () => (await volumesOnDisk(win, 0)).map(volumeLabel));
  let h = null;
  await step('open \\\\.\\C: (CreateFileW)', async () => (h = await win.open('\\\\.\\C:')));
  if (h !== null) {
    await step('FSCTL_LOCK_VOLUME C:', () => win.lockVolume(h));
    await step('FSCTL_DISMOUNT_VOLUME C:', () => win.dismountVolume(h));
    await step('CloseHandle', () => win.close(h));
  }
  const file = `${process.env.TEMP || 'C:\\users'}\\drivetwin-held.txt`;
  fs.writeFileSync(file, 'held');
  const fd = fs.openSync(file, 'r');
  await step('Restart Manager holders of a file this process holds open', () =>
    win.holders([file]),
  );
  fs.closeSync(fd);
  let d = null;
  await step(
    'open \\\\.\\PhysicalDrive0',
    async () => (d = await win.open('\\\\.\\PhysicalDrive0')),
  );
  if (d !== null) {
    await step('IOCTL_DISK_UPDATE_PROPERTIES', () => win.updateProperties(d));
    await step('IOCTL_DISK_ARE_VOLUMES_READY', () => win.volumesReady(d));
    await step('IOCTL_STORAGE_EJECT_MEDIA', () => win.ejectMedia(d));
    await step('CloseHandle', () => win.close(d));
  }
  await step('open a missing volume', () =>
    win.open('\\\\?\\Volume{00000000-0000-0000-0000-000000000000}'),
  );
  say('refusedWrite', refusedWrite({ code: 'EPERM' }, 0, 512, []).message);
})().finally(() =>
  fs.writeFileSync(process.argv[2] || 'drivetwin-kernel32.txt', out.join('\n') + '\n'),
);
