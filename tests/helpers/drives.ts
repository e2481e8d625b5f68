import assert from 'node:assert/strict';
import type { Drive } from '../../engine/drives/classify';

/** The drive listed at `p`; fails the test, naming what is listed, when there is none. */
export function byPath(drives: Drive[], p: string): Drive {
  const drive = drives.find((d) => d.path === p);
  assert.ok(drive, `${p} is listed (listed: ${drives.map((d) => d.path).join(', ')})`);
  return drive;
}
