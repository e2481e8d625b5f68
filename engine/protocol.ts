// The one message protocol between an engine and whoever drives it (the CLI's
// --json output, the desktop app's engine host). Every event has a `type`.

import type { Range } from './geometry';
import type { JobOptions, Mode } from './metadata';

export interface StartEvent {
  type: 'start';
  job: number;
  resumed: boolean;
  source: string;
  destinations: string[];
  regionSize: number;
  regionsTotal: number;
  regionsHydrated: number;
  bytesTotal: number;
  /** A delta re-clone of a finished job: the regions found to differ, about to be copied. */
  delta?: number;
}

export interface ProgressEvent {
  type: 'progress';
  job: number;
  bytesDone: number;
  /** Estimated from the compressed position while sizeKnown is false. */
  bytesTotal: number;
  sizeKnown: boolean;
  regionsHydrated: number;
  regionsTotal: number;
  hydrating: number;
  /** Bytes per second over the last few seconds. */
  rate: number;
  /** Seconds left at that rate, or null while unknown. */
  eta: number | null;
  paused: boolean;
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

export interface DoneEvent {
  type: 'done';
  job: number;
  state: 'done' | 'interrupted' | 'failed';
  bytesRead: number;
  bytesWritten: number;
  regionsCopied: number;
  unreadableBytes: number;
  unreadable: Range[];
  failedDestinations: string[];
  seconds: number;
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

export type EngineEvent = StartEvent | ProgressEvent | ErrorEvent | ModeEvent | DoneEvent;

// ---------------------------------------------------------------------------
// The engine host (engine/host.ts): commands in, replies and events out, the same
// whatever the transport (child_process IPC, Electron's parentPort, an
// authenticated local socket for the elevated engine).

/** Region map changes; run lists are flat [first, count, first, count, …] by region index. */
export interface RegionMapEvent {
  type: 'region-map';
  job: number;
  /** true: hydrated/unreadable are the whole map; false: what was added since the last one. */
  reset: boolean;
  regionSize: number;
  regionsTotal: number;
  hydrated: number[];
  /** Replaces the previous set: read from the source, not yet committed. */
  hydrating: number[];
  unreadable: number[];
}

export interface VerifyProgressEvent {
  type: 'verify-progress';
  job: number;
  bytesDone: number;
  bytesTotal: number;
}

/** Progress as the host sends it: with the throttle in force. */
export interface HostProgressEvent extends ProgressEvent {
  throttle: { percent: number; maxRate: number };
}

export type HostEvent =
  | StartEvent
  | HostProgressEvent
  | ErrorEvent
  | ModeEvent
  | DoneEvent
  | RegionMapEvent
  | VerifyProgressEvent;

export interface HostCloneRequest {
  source: string;
  destinations: string[];
  regionSize?: number;
  /** What is not given takes the engine's defaults (engine/setup.ts DEFAULT_OPTIONS). */
  options: Partial<JobOptions>;
  allowMounted?: boolean;
  allowSystem?: boolean;
}

export type HostCommand =
  /** `confirmed`: the drive paths the user confirmed; any other drive to be written is refused. */
  | { type: 'start'; request: HostCloneRequest; confirmed: string[] }
  | { type: 'resume'; job: number; options?: Partial<JobOptions>; confirmed: string[] }
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
  hello: { kind: 'hello'; pid: number; elevated: boolean };
  reply: HostReply;
  event: { kind: 'event'; event: HostEvent };
}

export type HostOutbound = HostMessages[keyof HostMessages];

/** First line the elevated host writes on the socket, before anything else. */
export interface HostAuth {
  kind: 'auth';
  token: string;
}
