// Taking the destinations and the job before the first byte is written: an exclusive
// OS lock on every destination, as its system has one (drives/platform.ts: drives are
// prepared and opened exclusively — O_EXCL on Linux, O_EXLOCK on macOS and Windows;
// image files get flock where it exists), then the job's row in the database. A second
// writer — another DriveTwin process or session, or any program that takes the same
// locks — is refused here, and told which job or program holds the destination.

import fs from 'node:fs';
import { DriveError, drivePlatform } from '../drives/platform';
import { BlockDevice } from '../io/block-device';
import type { Identity } from '../io/identity';
import { MetadataError } from '../store/database';
import type { Metadata } from '../store/metadata';
import { Refused, closeAll } from '../io/open';
import type { Plan } from './plan';

export interface Claim {
  /** Drives opened exclusively for writing, by destination index in the job. */
  readonly drives: Map<number, BlockDevice>;
  /** Files the claim created (removed again if the job never starts). */
  readonly created: string[];
  /** Gives everything up; `unclaimed`: also removes the files the claim created. */
  release(unclaimed?: boolean): Promise<void>;
}

const LOCK_BUSY = new Set(['EWOULDBLOCK', 'EAGAIN', 'EBUSY']);

/** Who holds `file`, for the message: a running job of ours, the program the system names, or another. */
function holder(meta: Metadata, file: string, named: string | null): string {
  const jobs = meta.runningJobsWriting(file);
  if (jobs.length > 0) {
    return jobs.map((j) => `job ${j.id} (process ${j.pid}) is writing it`).join('; ');
  }
  return (
    named ?? 'another DriveTwin job or another program holds it (mounted, or opened exclusively)'
  );
}

/** Every destination of the plan, claimed; nothing is written. */
export async function claimDestinations(meta: Metadata, plan: Plan): Promise<Claim> {
  const drives = new Map<number, BlockDevice>();
  const locks: number[] = [];
  const created: string[] = [];
  const release = async (unclaimed = false): Promise<void> => {
    await closeAll([...drives.values()]);
    drives.clear();
    for (const fd of locks.splice(0)) fs.closeSync(fd);
    if (unclaimed) for (const file of created) fs.rmSync(file, { force: true });
  };
  try {
    for (const d of plan.destinations) {
      const file = d.probe.path;
      try {
        if (d.probe.kind === 'block') {
          drives.set(d.index, await BlockDevice.open(file, true));
          continue;
        }
        const existed = fs.existsSync(file);
        const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
        locks.push(fd);
        if (!existed) created.push(file);
        await drivePlatform().lockFile(fd);
      } catch (e) {
        // direct-io's flock errors carry their code only in the message.
        const code =
          (e as NodeJS.ErrnoException).code ?? /^E[A-Z]+/.exec((e as Error).message)?.[0];
        if (code && LOCK_BUSY.has(code)) {
          const named = e instanceof DriveError ? e.holder : null;
          throw new Refused(`destination ${file} is in use: ${holder(meta, file, named)}`);
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
