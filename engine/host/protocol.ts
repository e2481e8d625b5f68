// The one message protocol between an engine host and whoever drives it (the desktop
// app's engine supervisor): commands in, replies and the sessions' events out. The
// events themselves are the contract in ../events.ts.

import type { DoneEvent, EngineEvent, Intent, JobOptions, UsedSpaceInfo } from '../events';

/** The end of a job that stopped before copying anything more (it failed, or its engine died). */
export function doneWithoutCopy(job: number, state: 'interrupted' | 'failed'): DoneEvent {
  return {
    type: 'done',
    job,
    state,
    resumable: true,
    bytesRead: 0,
    bytesWritten: 0,
    regionsCopied: 0,
    unreadableBytes: 0,
    unreadable: [],
    failedDestinations: [],
    seconds: 0,
  };
}

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
  /** A download (the source is a URL): the SHA-256 it must have, in hexadecimal. */
  sha256?: string;
  /** Serve the destination over NBD on this Unix socket while it hydrates (given to the user). */
  serve?: string;
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
  /** A used-only clone: what it reads of each partition. */
  usedSpace: UsedSpaceInfo | null;
}

export type HostCommand =
  | { type: 'plan'; request: HostCloneRequest }
  /** What a used-only copy of `source` reads (regions of `regionSize`, default 1 MiB). */
  | { type: 'used-space'; source: string; regionSize?: number }
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
