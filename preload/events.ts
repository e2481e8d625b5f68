// The events of the contract — what `window.driveTwin.on(event, listener)` delivers —
// and the data they carry: drives with their verdicts, and a job's id, intent, options,
// mode and byte ranges. The calls in ./api.ts answer with the same data.
//
// Like ./api.ts: types only — the job's data is the engine's, imported as types (erased
// from the compiled preload) — nothing that needs Node or Electron; every value is plain
// data (structured-clone and JSON safe).

import type {
  DestinationResult,
  DoneEvent,
  DriveContents,
  ErrorEvent,
  Intent,
  JobOptions,
  Mode,
  ModeEvent,
  PartitionContents,
  ProgressEvent,
  Range,
  RegionMapEvent,
  ServeEvent,
  StartEvent,
  VerifyEvent,
  VerifyProgressEvent,
} from '../engine/events';

// ---------------------------------------------------------------------------
// Drives

/** usable: go ahead; confirm: only after the user explicitly confirms; refused: never. */
export type VerdictLevel = 'usable' | 'confirm' | 'refused';

export interface DriveVerdict {
  level: VerdictLevel;
  /** Why, in words to show the user (may be empty when usable). */
  reasons: string[];
}

/** The list a drive or image is chosen from. */
export type DriveRole = 'source' | 'target';

/** A drive, a loop device with a backing file, or an image file the user picked. */
export interface DriveInfo {
  /** What to pass back as a source or target path. */
  path: string;
  /** What to show; for a system drive, what the user must type to confirm it. */
  name: string;
  /** Bytes (0 for an image file still to be created); a compressed image's uncompressed size. */
  size: number;
  /** False for a compressed image whose format does not say its size: `size` is an estimate. */
  sizeKnown: boolean;
  logicalBlockSize: number;
  bus: string | null;
  removable: boolean;
  readOnly: boolean;
  /** Of the drive and everything on it; swap shows as `[SWAP]`. */
  mountpoints: string[];
  /** Holds the running OS or its boot partition. */
  system: boolean;
  kind: 'block' | 'file';
  serial: string | null;
  /** For a loop device: the image file behind it. */
  backingFile: string | null;
  /** May it be read from (source) or written (target)? Target verdicts follow the DriveQuery. */
  verdicts: { source: DriveVerdict; target: DriveVerdict };
  /** An image file the user picked: the lists it was picked for (empty for drives). */
  pickedAs: DriveRole[];
}

export interface DrivesChanged {
  drives: DriveInfo[];
  /** Paths that appeared / disappeared since the previous message. */
  added: string[];
  removed: string[];
  /** Paths present before and after whose details (size, mounts, read-only…) changed. */
  changed: string[];
}

// ---------------------------------------------------------------------------
// Jobs: the engine's events (engine/events.ts) as the renderer receives them — each
// without its `type`, which the event's name carries.

type Payload<E extends { type: string }> = Omit<E, 'type'>;

export type JobId = number;
/** new: erase and copy; resume: go on with an unfinished job; update: copy what differs. */
export type CloneIntent = Intent;
export type MetadataMode = Mode;
export type JobOptionsInfo = JobOptions;
export type ByteRange = Range;
export type { DestinationResult, DriveContents, PartitionContents };

export type JobStarted = Payload<StartEvent>;
/** Sent every ~300 ms while a job copies (paused jobs too, with no bytes moving). */
export type JobProgress = Payload<ProgressEvent>;
/**
 * Region map changes, compact: `reset: true` (the first message of a job, and
 * regionMap()) carries the whole map; `reset: false` what was added since the previous
 * message; `hydrating` always replaces the previous set.
 */
export type RegionMapChange = Payload<RegionMapEvent>;
/** `job` null: not about one job (e.g. the engine could not start). */
export type JobError = Payload<ErrorEvent>;
export type ModeChange = Payload<ModeEvent>;
export type JobDone = Payload<DoneEvent>;
export type VerifyProgress = Payload<VerifyProgressEvent>;
export type JobVerified = Payload<VerifyEvent>;
/** The copy served as a disk while it copies ("Use it now"): where, and how many are attached. */
export type JobServing = Payload<ServeEvent>;

/** Event name → payload. */
export interface DriveTwinEvents {
  'drives-changed': DrivesChanged;
  'job-started': JobStarted;
  progress: JobProgress;
  'region-map': RegionMapChange;
  error: JobError;
  mode: ModeChange;
  done: JobDone;
  'verify-progress': VerifyProgress;
  verified: JobVerified;
  serving: JobServing;
}

export type DriveTwinEventName = keyof DriveTwinEvents;
