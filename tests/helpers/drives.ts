import assert from 'node:assert/strict';
import type { Drive } from '../../engine/drives/classify';

/** The drive listed at `p`; fails the test, naming what is listed, when there is none. */
export function byPath(drives: Drive[], p: string): Drive {
  const drive = drives.find((d) => d.path === p);
  assert.ok(drive, `${p} is listed (listed: ${drives.map((d) => d.path).join(', ')})`);
  return drive;
}

/** A listed drive for tests that need one, as drivelist and the system picture would give it. */
export function listedDrive(p: string, extra: Partial<Drive> = {}): Drive {
  return {
    path: p,
    name: 'Disk',
    size: 1 << 30,
    logicalBlockSize: 512,
    bus: 'nvme',
    removable: false,
    readOnly: false,
    mountpoints: [],
    holders: [],
    system: false,
    kind: 'block',
    serial: null,
    backingFile: null,
    ...extra,
  };
}
