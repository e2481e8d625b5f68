// The one message protocol between an engine and whoever drives it (the CLI's
// --json output, the desktop app's engine host). Every event has a `type`.

import type { Range } from './geometry';
import type { Mode } from './metadata';

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
}

export interface ProgressEvent {
  type: 'progress';
  job: number;
  bytesDone: number;
  bytesTotal: number;
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

export type EngineEvent = StartEvent | ProgressEvent | ErrorEvent | ModeEvent | DoneEvent;
