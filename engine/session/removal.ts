// After a job: each drive destination, once closed, handed back to its system — the
// partition table read again, ejected when asked — and whether it may be pulled out
// now (drives/platform.ts afterCopy). The session puts the answer in its done event.

import { drivePlatform, type Removal } from '../drives/platform';
import type { Device } from '../io/device';

export type { Removal };

/**
 * The drives among `devices` (all closed), each with its removal; `eject` only when
 * the copy is good. A failure to say is a removal that is not safe, with the reason.
 */
export async function releaseDrives(
  devices: Device[],
  eject: boolean,
): Promise<Map<string, Removal>> {
  const platform = drivePlatform();
  const drives = devices.filter((d) => d.kind === 'block');
  const removals = await Promise.all(
    drives.map((d) =>
      platform
        .afterCopy(d.path, eject)
        .catch((e: Error): Removal => ({ safeToRemove: false, ejected: false, note: e.message })),
    ),
  );
  return new Map(drives.map((d, i) => [d.path, removals[i]]));
}
