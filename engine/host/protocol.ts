// The one message protocol between an engine and whoever drives it (the CLI's
// --json output, the desktop app's engine host). Every event has a `type`.

import type { Range } from '../geometry';
import type { Mode } from '../store/job-record';
import type { JobOptions } from '../options';

export type Intent = 'new' | 'resume' | 'update';

export interface StartEvent {
  type: 'start';
  job: number;
  /** Decided before anything was written: a new job, the resume of one, or an update (delta). */
  intent: Intent;
  /** intent is not 'new'. */
  resumed: boolean;
  source: string;
  destinations: string[];
  regionSize: number;
  regionsTotal: number;
  regionsHydrated: number;
  /** The image's real size (uncompressed); an estimate while sizeKnown is false. */
  bytesTotal: number;
  sizeKnown: boolean;
  /** The options in force. */
  options: JobOptions;
  /** An update: the regions found to differ, about to be copied. */
  delta?: number;
}

export type Phase = 'copying' | 'flushing' | 'comparing' | 'verifying';

export interface ProgressEvent {
  type: 'progress';
  job: number;
  /**
   * copying; flushing: everything is written, the last flush and commit run; comparing
   * (before an update) and verifying (after a copy): bytesDone, rate and eta are theirs.
   */
  phase: Phase;
  bytesDone: number;
  /** Estimated from the compressed position while sizeKnown is false. */
  bytesTotal: number;
  sizeKnown: boolean;
  /** Committed: on every destination, flushed, recorded. */
  regionsHydrated: number;
  /** On every destination, waiting for the next commit. */
  regionsWritten: number;
  /** In flight. hydrated + written + hydrating ≤ total. */
  hydrating: number;
  regionsTotal: number;
  /** Bytes per second over the last second or so (since the last pause or throttle change). */
  rate: number;
  /** Seconds left at that rate; null while paused or not yet known. */
  eta: number | null;
  paused: boolean;
  /** The throttle in force. */
  throttle: { percent: number; maxRate: number };
  status: string;
}

export interface ErrorEvent {
  type: 'error';
  job: number | null;
  message: string;
  device?: string;
  offset?: number;
  length?: number;
  /** True when the error stops the job (a dropped destination does not). */
  fatal: boolean;
}

export interface ModeEvent {
  type: 'mode';
  job: number;
  mode: Mode;
  reason: string;
}

/** Comparing before an update, or verifying after a copy. */
export interface VerifyProgressEvent {
  type: 'verify-progress';
  job: number;
  phase: 'comparing' | 'verifying';
  bytesDone: number;
  bytesTotal: number;
  rate: number;
  eta: number | null;
}

/** The verify of a job: per destination, equal or the regions that differ. */
export interface VerifyEvent {
  type: 'verify';
  job: number;
  /** Every destination still in the job compared equal. */
  equal: boolean;
  destinations: Array<{
    path: string;
    equal: boolean;
    mismatches: Range[];
    regions: number[];
    /** Its rewritten partition table (compared apart) is wrong: why. */
    tableProblem?: string;
  }>;
  /** Source ranges that could not be read, so were not compared. */
  skipped: Range[];
  seconds: number;
}

export interface DestinationResult {
  path: string;
  /** done: holds every region; failed: left the job (error says why); unfinished: the job stopped. */
  state: 'done' | 'failed' | 'unfinished';
  error: string | null;
  /** Bytes that reached it in this session (a backup's: compressed). */
  bytesWritten: number;
  /** Set when it was verified. */
  verified?: boolean;
  mismatches?: Range[];
  /**
   * Drives: once closed, whether it may be pulled out now (every write flushed, nothing
   * of it left mounted by the copy), whether it was ejected, and what the user should know.
   */
  removal?: { safeToRemove: boolean; ejected: boolean; note: string | null };
}

export interface DoneEvent {
  type: 'done';
  job: number;
  intent?: Intent;
  /** done: every destination still in the job holds every region. */
  state: 'done' | 'interrupted' | 'failed';
  error?: string | null;
  bytesRead: number;
  bytesWritten: number;
  regionsCopied: number;
  unreadableBytes: number;
  unreadable: Range[];
  failedDestinations: string[];
  destinations?: DestinationResult[];
  /** Wall time of the whole session; copySeconds and verifySeconds of its parts. */
  seconds: number;
  copySeconds?: number;
  verifySeconds?: number;
  /** Set when the job verified: true only when every destination compared equal. */
  verified?: boolean;
  mismatches?: Range[];
}

/** The end of a job that stopped before copying anything more (it failed, or its engine died). */
export function doneWithoutCopy(job: number, state: 'interrupted' | 'failed'): DoneEvent {
  return {
    type: 'done',
    job,
    state,
    bytesRead: 0,
    bytesWritten: 0,
    regionsCopied: 0,
    unreadableBytes: 0,
    unreadable: [],
    failedDestinations: [],
    seconds: 0,
  };
}

/** Region map changes; run lists are flat [first, count, first, count, …] by region index. */
export interface RegionMapEvent {
  type: 'region-map';
  job: number;
  /** true: hydrated/unreadable are the whole map; false: what was added since the last one. */
  reset: boolean;
  regionSize: number;
  regionsTotal: number;
  hydrated: number[];
  /** Replaces the previous set: in flight or written, not yet committed. */
  hydrating: number[];
  unreadable: number[];
}

/** Everything a job session says, in order. */
export type EngineEvent =
  | StartEvent
  | ProgressEvent
  | ErrorEvent
  | ModeEvent
  | VerifyProgressEvent
  | VerifyEvent
  | RegionMapEvent
  | DoneEvent;

// ---------------------------------------------------------------------------
// The engine host (engine/host/host.ts): commands in, replies and events out, the same
// whatever the transport (child_process IPC, Electron's parentPort, an
// authenticated local socket for the elevated engine).

/** What the host sends: the sessions' events. */
export type HostEvent = EngineEvent;

export interface HostCloneRequest {
  source: string;
  destinations: string[];
  regionSize?: number;
  /** What the user chose; the rest takes the defaults (engine/options.ts), or the existing job's. */
  options: Partial<JobOptions>;
  allowMounted?: boolean;
  allowSystem?: boolean;
  /** A new job even where one exists for this source and these destinations. */
  fresh?: boolean;
  /** Eject drive destinations once the copy is done (hello's canEject says whether it can). */
  eject?: boolean;
}

/** What a clone would do, from every check, before anything is written. */
export interface ClonePlan {
  intent: Intent;
  /** The existing job it would resume or update. */
  job: number | null;
  bytesTotal: number;
  sizeKnown: boolean;
  regionSize: number;
  /** 0 while a stream's size is unknown. */
  regionsTotal: number;
  /** Already copied (resume, update): what the job's record holds. */
  regionsHydrated: number;
  /**
   * The source's partition table: where its last partition ends, and the least a drive
   * must hold to take a copy fitted to it (`fit`); null when it has none.
   */
  partitions: { table: 'gpt' | 'mbr'; end: number; fitSize: number } | null;
}

export type HostCommand =
  | { type: 'plan'; request: HostCloneRequest }
  /** `confirmed`: the drive paths the user confirmed; any other drive to be written is refused. */
  | { type: 'start'; request: HostCloneRequest; confirmed: string[] }
  | {
      type: 'resume';
      job: number;
      options?: Partial<JobOptions>;
      confirmed: string[];
      /** Destinations to finish without. */
      drop?: string[];
      eject?: boolean;
    }
  | { type: 'pause'; job: number }
  | { type: 'resume-hydration'; job: number }
  | { type: 'cancel'; job: number }
  | { type: 'set-throttle'; job: number; percent?: number; maxRate?: number }
  | { type: 'verify'; job: number }
  | { type: 'list-jobs' }
  | { type: 'forget'; job: number }
  | { type: 'region-map'; job: number }
  | { type: 'export-map'; job: number; format: 'json' | 'ddrescue' }
  /** Stop every job (committing what is in flight), then exit. */
  | { type: 'shutdown' };

export type HostErrorCode = 'refused' | 'not-found' | 'busy' | 'invalid' | 'engine';

export interface HostRequest {
  kind: 'request';
  id: number;
  command: HostCommand;
}

export type HostReply =
  | { kind: 'reply'; id: number; ok: true; result: unknown }
  | { kind: 'reply'; id: number; ok: false; error: { code: HostErrorCode; message: string } };

/** A running job as list-jobs reports it. */
export interface LiveJob {
  job: number;
  paused: boolean;
}

export interface HostMessages {
  /** First message from the host: ready for requests. */
  /** canEject: a finished job can eject its drives here (request `eject`). */
  hello: { kind: 'hello'; pid: number; elevated: boolean; canEject?: boolean };
  reply: HostReply;
  event: { kind: 'event'; event: HostEvent };
}

export type HostOutbound = HostMessages[keyof HostMessages];

/** First line the elevated host writes on the socket, before anything else. */
export interface HostAuth {
  kind: 'auth';
  token: string;
}
