// The Windows calls of engine/drives/win32-kernel.ts, as far as they can be checked off
// Windows: koffi parses every declaration (on any system), the control codes are
// winioctl.h's CTL_CODE values, and the structures Windows fills are read at the right
// offsets. The calls themselves ran under Wine (README, "Run under Wine";
// scripts/wine-kernel32.js).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import koffi from 'koffi';
import {
  CODES,
  DECLARATIONS,
  parseExtents,
  parseProcessInfo,
  WinError,
} from '../../engine/drives/win32-kernel';

/** CTL_CODE(DeviceType, Function, Method, Access), winioctl.h. */
const ctl = (device: number, fn: number, method: number, access: number): number =>
  ((device << 16) | (access << 14) | (fn << 2) | method) >>> 0;

test('every declaration parses, named as declared', () => {
  for (const decls of Object.values(DECLARATIONS)) {
    for (const [name, declaration] of Object.entries(decls)) {
      assert.doesNotThrow(() => koffi.proto(declaration), name);
      assert.match(declaration, new RegExp(`__stdcall ${name}\\(`));
    }
  }
});

test("the control codes are winioctl.h's", () => {
  const FILE_DEVICE_FILE_SYSTEM = 9;
  const IOCTL_DISK_BASE = 7;
  const IOCTL_VOLUME_BASE = 0x56;
  const IOCTL_STORAGE_BASE = 0x2d;
  const [BUFFERED, ANY, READ, WRITE] = [0, 0, 1, 2];
  assert.equal(CODES.FSCTL_LOCK_VOLUME, ctl(FILE_DEVICE_FILE_SYSTEM, 6, BUFFERED, ANY));
  assert.equal(CODES.FSCTL_DISMOUNT_VOLUME, ctl(FILE_DEVICE_FILE_SYSTEM, 8, BUFFERED, ANY));
  assert.equal(
    CODES.IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS,
    ctl(IOCTL_VOLUME_BASE, 0, BUFFERED, ANY),
  );
  assert.equal(CODES.IOCTL_DISK_UPDATE_PROPERTIES, ctl(IOCTL_DISK_BASE, 0x50, BUFFERED, ANY));
  assert.equal(CODES.IOCTL_DISK_ARE_VOLUMES_READY, ctl(IOCTL_DISK_BASE, 0x87, BUFFERED, READ));
  assert.equal(CODES.IOCTL_STORAGE_MEDIA_REMOVAL, ctl(IOCTL_STORAGE_BASE, 0x201, BUFFERED, READ));
  assert.equal(CODES.IOCTL_STORAGE_EJECT_MEDIA, ctl(IOCTL_STORAGE_BASE, 0x202, BUFFERED, READ));
  assert.ok(WRITE > READ);
});

test('VOLUME_DISK_EXTENTS and RM_PROCESS_INFO are read where Windows writes them', () => {
  const extents = Buffer.alloc(8 + 2 * 24);
  extents.writeUInt32LE(2, 0);
  extents.writeUInt32LE(1, 8);
  extents.writeBigInt64LE(1048576n, 16);
  extents.writeBigInt64LE(268435456n, 24);
  extents.writeUInt32LE(3, 32);
  extents.writeBigInt64LE(4096n, 40);
  extents.writeBigInt64LE(512n, 48);
  assert.deepEqual(parseExtents(extents), [
    { disk: 1, offset: 1048576, length: 268435456 },
    { disk: 3, offset: 4096, length: 512 },
  ]);
  const info = Buffer.alloc(668 * 2);
  info.writeUInt32LE(4120, 0);
  info.write('VLC media player', 12, 'utf16le');
  info.writeUInt32LE(7, 668);
  info.write('explorer.exe', 668 + 12, 'utf16le');
  assert.deepEqual(parseProcessInfo(info, 2), [
    { pid: 4120, name: 'VLC media player' },
    { pid: 7, name: 'explorer.exe' },
  ]);
  assert.equal(new WinError('FSCTL_LOCK_VOLUME', 5).code, 'ERROR_ACCESS_DENIED');
  assert.equal(new WinError('x', 1234).message, 'x failed: error 1234');
});
