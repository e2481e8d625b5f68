// A job as the database records it: its state, its metadata mode and its
// destinations, read from the rows of the jobs and destinations tables.

import type { Mode } from '../events';
import type { Identity } from '../io/identity';
import { DEFAULT_OPTIONS, type JobOptions } from '../options';

/** `verifying`: copied, and being compared; a verify that never ended reads as done, not verified. */
export type JobState = 'running' | 'verifying' | 'interrupted' | 'done' | 'failed';
export type { Mode };

export interface DestinationRecord {
  index: number;
  path: string;
  size: number;
  identity: Identity;
  /** Why it left the job (a failed write or flush, or the user dropped it), or null. */
  failed: string | null;
  /** The user chose to finish without it: it never comes back. */
  dropped: boolean;
}

export interface JobRecord {
  id: number;
  source: string;
  sourceSize: number;
  sourceIdentity: Identity;
  regionSize: number;
  regionsTotal: number;
  regionsHydrated: number;
  unreadableBytes: number;
  options: JobOptions;
  state: JobState;
  mode: Mode;
  /** The process that last ran it, for messages: whether it runs is its lock's to say. */
  pid: number | null;
  error: string | null;
  /** Why a resume can't finish it (its compressed source is damaged, its image is bigger than a drive), or null. */
  unresumable: string | null;
  statusLine: string | null;
  /** Every destination still in the job compared equal (true), differed (false), or not verified. */
  verified: boolean | null;
  copySeconds: number;
  verifySeconds: number;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  destinations: DestinationRecord[];
}

export interface JobRow {
  id: number;
  source: string;
  source_size: number;
  source_identity: string;
  region_size: number;
  regions_total: number;
  regions_hydrated: number;
  unreadable_bytes: number;
  options: string;
  state: JobState;
  mode: Mode;
  pid: number | null;
  error: string | null;
  unresumable: string | null;
  status_line: string | null;
  verified: number | null;
  copy_seconds: number;
  verify_seconds: number;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

export interface DestinationRow {
  idx: number;
  path: string;
  size: number;
  identity: string;
  failed: string | null;
  dropped: number;
}

/** `held`: some process holds the job's lock (store/job-lock.ts): it runs now. */
export function toRecord(row: JobRow, destinationRows: DestinationRow[], held: boolean): JobRecord {
  const destinations = destinationRows.map((d) => ({
    index: d.idx,
    path: d.path,
    size: d.size,
    identity: JSON.parse(d.identity) as Identity,
    failed: d.failed,
    dropped: d.dropped === 1,
  }));
  return {
    id: row.id,
    source: row.source,
    sourceSize: row.source_size,
    sourceIdentity: JSON.parse(row.source_identity) as Identity,
    regionSize: row.region_size,
    regionsTotal: row.regions_total,
    regionsHydrated: row.regions_hydrated,
    unreadableBytes: row.unreadable_bytes,
    // Jobs recorded before an option existed ran without it.
    options: { ...DEFAULT_OPTIONS, ...(JSON.parse(row.options) as Partial<JobOptions>) },
    state: liveState(row, held),
    mode: row.mode,
    pid: row.pid,
    error: row.error,
    unresumable: row.unresumable ?? null,
    statusLine: row.status_line,
    verified: row.verified === null ? null : row.verified === 1,
    copySeconds: row.copy_seconds,
    verifySeconds: row.verify_seconds,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    destinations,
  };
}

/**
 * A job marked running whose lock nobody holds was killed: it is interrupted. One killed
 * while verifying was copied: it is done, and not verified.
 */
function liveState(row: Pick<JobRow, 'state'>, held: boolean): JobState {
  if (row.state === 'running' && !held) return 'interrupted';
  if (row.state === 'verifying' && !held) return 'done';
  return row.state;
}

/**
 * Whether a resume can go on with the job: it stopped (interrupted, or failed) and not for
 * good — a damaged source, another file than expected, an image bigger than a drive.
 */
export function canResume(job: Pick<JobRecord, 'state' | 'unresumable'>): boolean {
  return (job.state === 'interrupted' || job.state === 'failed') && job.unresumable === null;
}
