// The live system calls that go through koffi, run for real on this system: the macOS
// drive-cache flush's ioctl binding (on a file it answers ENOTTY, "nothing to flush")
// and its errors.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { liveOsCalls } from '../../engine/drives/os-calls';
import { libc } from '../../engine/io/libc';

test('libc loads through koffi here', () => {
  assert.ok(libc(), 'koffi and libc load on Linux');
});

test('syncCache: a descriptor with no drive cache behind it is not an error; a bad one is', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-oscalls-'));
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, 'x');
  const live = liveOsCalls();
  const fd = fs.openSync(file, 'r+');
  try {
    await live.syncCache(fd, file);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true });
  }
  await assert.rejects(live.syncCache(fd, file), (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, 'EBADF');
    assert.match(e.message, /flushing the drive's cache failed \(EBADF\)/);
    return true;
  });
});
