// Taking the destinations and the job before the first byte is written: an exclusive
// OS lock on every destination, as its system has one (drives/platform.ts: drives are
// prepared and opened exclusively — O_EXCL on Linux, O_EXLOCK on macOS and Windows;
// image files get flock where it exists), then the same for every other name of what it
// writes (drives/overlap.ts otherNames: a loop device's backing file, an image file's
// loop devices), then the job's row in the database. A second writer — another
// DriveTwin process or session by whatever name, or any program that takes the same
// locks — is refused here, and told which job or program holds the destination.

import fs from 'node:fs';
import { DriveError, drivePlatform } from '../drives/platform';
import { otherNames } from '../drives/overlap';
import type { SystemSnapshot } from '../drives/topology';
import { BlockDevice } from '../io/block-device';
import { hasFlock, tryFlock } from '../io/flock';
import { type Identity, identifyPath } from '../io/identity';
import { MetadataError } from '../store/database';
import type { Metadata } from '../store/metadata';
import { Refused, closeAll } from '../io/open';
import type { Plan } from './plan';

export interface Claim {
  /** Drives opened exclusively for writing, by destination index in the job. */
  readonly drives: Map<number, BlockDevice>;
  /** Files the claim created (removed again if the job never starts). */
  readonly created: string[];
  /** Gives everything up; `unclaimed`: also removes the files the claim created. Never throws. */
  release(unclaimed?: boolean): Promise<void>;
}

const LOCK_BUSY = new Set(['EWOULDBLOCK', 'EAGAIN', 'EBUSY']);

/**
 * Who holds `file`, for the message: a running job of ours writing it by any of its
 * `names` (or one of whose destinations is another name for them), the program the
 * system names, or another.
 */
function holder(
  meta: Metadata,
  file: string,
  names: string[],
  named: string | null,
  snapshot: () => SystemSnapshot,
): string {
  const ours = new Set(names);
  const writes = (dest: string): boolean => {
    if (ours.has(dest)) return true;
    try {
      const other = otherNames(dest, snapshot());
      return [...other.files.map((f) => f.path), ...other.drives].some((n) => ours.has(n));
    } catch {
      return false;
    }
  };
  const jobs = meta
    .listJobs()
    .filter((j) => j.state === 'running' || j.state === 'verifying')
    .flatMap((j) =>
      j.destinations
        .filter((d) => writes(d.path))
        .map((d) => `job ${j.id} (process ${j.pid}) is writing ${d.path === file ? 'it' : d.path}`),
    );
  if (jobs.length > 0) return jobs.join('; ');
  return (
    named ?? 'another DriveTwin job or another program holds it (mounted, or opened exclusively)'
  );
}

const busy = (): Error => Object.assign(new Error('locked elsewhere'), { code: 'EWOULDBLOCK' });

/** Every destination of the plan, claimed by every name it has; nothing is written. */
export async function claimDestinations(meta: Metadata, plan: Plan): Promise<Claim> {
  const drives = new Map<number, BlockDevice>();
  /** Lock files and other names held: descriptors closed at release. */
  const held: number[] = [];
  const created: string[] = [];
  const release = async (unclaimed = false): Promise<void> => {
    await closeAll([...drives.values()]);
    drives.clear();
    for (const fd of held.splice(0)) {
      try {
        fs.closeSync(fd);
      } catch {
        // A file served by a process that is gone fails to close (ENOTCONN); it is let go of all the same.
      }
    }
    if (unclaimed) for (const file of created) fs.rmSync(file, { force: true });
  };
  let seen: SystemSnapshot | null = null;
  const snapshot = (): SystemSnapshot => (seen ??= drivePlatform().readSnapshot());
  try {
    for (const d of plan.destinations) {
      const file = d.probe.path;
      let names = [file];
      try {
        const other = otherNames(file, snapshot());
        names = [file, ...other.files.map((f) => f.path), ...other.drives];
        if (d.probe.kind === 'block') {
          drives.set(d.index, await BlockDevice.open(file, true));
        } else {
          const existed = fs.existsSync(file);
          const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
          held.push(fd);
          if (!existed) created.push(file);
          await drivePlatform().lockFile(fd);
        }
        for (const f of other.files) {
          if (!hasFlock()) break;
          const fd = fs.openSync(f.path, fs.constants.O_RDONLY);
          held.push(fd);
          if (!tryFlock(fd, f.shared ? 'shared' : 'exclusive')) throw busy();
        }
        // Linux's exclusive open (only Linux has loop devices over files): refused while
        // another writer or a mount holds the drive, and keeps them out while we hold it.
        for (const drive of other.drives) {
          held.push(fs.openSync(drive, fs.constants.O_RDONLY | fs.constants.O_EXCL));
        }
      } catch (e) {
        // direct-io's flock errors carry their code only in the message.
        const code =
          (e as NodeJS.ErrnoException).code ?? /^E[A-Z]+/.exec((e as Error).message)?.[0];
        if (code && LOCK_BUSY.has(code)) {
          const named = e instanceof DriveError ? e.holder : null;
          throw new Refused(
            `destination ${file} is in use: ${holder(meta, file, names, named, snapshot)}`,
          );
        }
        throw new Refused(`can't open destination ${file} for writing: ${(e as Error).message}`);
      }
    }
  } catch (e) {
    await release(true);
    throw e;
  }
  return { drives, created, release };
}

/** The job's row: a new one, or the existing job taken for this process. */
export function claimJob(meta: Metadata, plan: Plan, identities: Map<number, Identity>): number {
  try {
    if (!plan.record) {
      for (const id of plan.replaces) meta.forget(id);
      return meta.createJob({
        source: plan.sourcePath,
        // 0 until a stream's end is read.
        sourceSize: Number.isFinite(plan.geometry.regionCount) ? plan.geometry.size : 0,
        sourceIdentity: plan.sourceIdentity,
        regionSize: plan.geometry.regionSize,
        regionsTotal: Number.isFinite(plan.geometry.regionCount) ? plan.geometry.regionCount : 0,
        options: plan.options,
        destinations: plan.destinations.map((d) => ({
          path: d.probe.path,
          size: identities.get(d.index)!.size,
          identity: identities.get(d.index)!,
        })),
      });
    }
    // Until an update has compared, or while a copy is verified, the job is what it was: copied.
    const verifying = plan.intent === 'update' || plan.verifyOnly;
    meta.claimJob(plan.record.id, plan.options, verifying ? 'verifying' : 'running');
    for (const index of plan.drop) meta.dropDestination(plan.record.id, index);
    return plan.record.id;
  } catch (e) {
    if (e instanceof MetadataError) throw new Refused(e.message);
    throw e;
  }
}

/** Identities of the claimed destinations, recorded with a new job. */
export function claimedIdentities(p: Plan, claim: Claim): Map<number, Identity> {
  const size = Number.isFinite(p.geometry.regionCount) ? p.geometry.size : 0;
  const out = new Map<number, Identity>();
  for (const d of p.destinations) {
    const drive = claim.drives.get(d.index);
    out.set(
      d.index,
      identifyPath(d.probe.path, drive ?? { kind: 'file', size, logicalBlockSize: 512 }),
    );
  }
  return out;
}
