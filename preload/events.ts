// The events of the contract — what `window.driveTwin.on(event, listener)` delivers —
// and the data they carry: drives with their verdicts, and a job's id, intent, options,
// mode and byte ranges. The calls in ./api.ts answer with the same data.
//
// Like ./api.ts: types only, no imports, nothing that needs Node or Electron; every
// value is plain data (structured-clone and JSON safe).

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

/** One partition, as its table and its file system say. */
export interface PartitionContents {
  /** 1, 2, … as the table numbers it. */
  number: number;
  /** Bytes from the start of the drive, and its size. */
  offset: number;
  size: number;
  /** The partition's own name (GPT), if any. */
  name: string | null;
  /** ext4, vfat, ntfs, swap, crypto_LUKS…; null: none recognised. */
  fsType: string | null;
  /** The file system's label. */
  label: string | null;
}

/** What is on a drive or image file now (what a copy onto it erases). */
export interface DriveContents {
  path: string;
  size: number;
  /** False when it could not be looked at (see `why`): nothing is known of it. */
  examined: boolean;
  why: string | null;
  /** gpt, dos (MBR)…; null: none. */
  partitionTable: string | null;
  partitions: PartitionContents[];
  /** A file system on the whole drive (no partition table). */
  filesystem: { type: string; label: string | null } | null;
  /** An image file that does not exist yet (it will be created). */
  newFile: boolean;
  /**
   * Nothing on it: every byte was read and is zero (checked only when it is small enough
   * to read at once), or a new or empty file. False whenever that was not proven.
   */
  blank: boolean;
  /** Nothing recognised, and the parts read (the start and the end) hold data. */
  dataSeen: boolean;
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
// Jobs

export type JobId = number;

/** new: erase and copy; resume: go on with an unfinished job; update: copy what differs. */
export type CloneIntent = 'new' | 'resume' | 'update';

export type MetadataMode = 'rw' | 'ro' | 'fail';

export interface JobOptionsInfo {
  threshold: number;
  batch: number;
  throttle: number;
  maxRate: number;
  sparse: boolean | null;
  ignoreErrors: boolean;
  sequential: boolean;
  verify: boolean;
  usedOnly?: boolean;
  zeroFree?: boolean;
  /** Copied up to the end of the last partition, with a table for each target's size. */
  fit?: boolean;
  /** New GPT disk and partition GUIDs (or MBR disk signature) on every target. */
  newIds?: boolean;
}

export interface ByteRange {
  offset: number;
  length: number;
}

// ---------------------------------------------------------------------------
// Events

export interface JobStarted {
  job: JobId;
  intent: CloneIntent;
  /** intent is not 'new'. */
  resumed: boolean;
  source: string;
  destinations: string[];
  regionSize: number;
  regionsTotal: number;
  regionsHydrated: number;
  /** The image's size (uncompressed); an estimate while sizeKnown is false. */
  bytesTotal: number;
  sizeKnown: boolean;
  /** The options in force. */
  options: JobOptionsInfo;
  /** An update: how many regions were found to differ. */
  delta?: number;
}

/** Sent every ~300 ms while a job copies (paused jobs too, with no bytes moving). */
export interface JobProgress {
  job: JobId;
  /**
   * copying; flushing: all written, the last flush and commit run; comparing (before an
   * update) and verifying (after a copy): bytesDone, rate and eta are theirs (as in
   * verify-progress).
   */
  phase: 'copying' | 'flushing' | 'comparing' | 'verifying';
  bytesDone: number;
  bytesTotal: number;
  sizeKnown: boolean;
  /** Committed: on every destination and flushed. */
  regionsHydrated: number;
  /** Written to every destination, waiting for the next commit. */
  regionsWritten: number;
  /** Regions in flight. hydrated + written + hydrating ≤ total. */
  hydrating: number;
  regionsTotal: number;
  /** Bytes per second over about the last second (since the last pause or throttle change). */
  rate: number;
  /** Seconds left at that rate; null while paused or not yet known. */
  eta: number | null;
  paused: boolean;
  /** The throttle in force. */
  throttle: { percent: number; maxRate: number };
  status: string;
}

/**
 * Region map changes, compact. Every run list is flat: [first, count, first, count, …]
 * by region index, ascending, non-overlapping.
 *
 * `reset: true` (the first message of a job, and regionMap()): `hydrated` and
 * `unreadable` are the whole map. `reset: false`: they are regions newly hydrated /
 * found unreadable since the previous message (add them). `hydrating` always replaces
 * the previous hydrating set (regions read from the source but not yet committed).
 */
export interface RegionMapChange {
  job: JobId;
  reset: boolean;
  regionSize: number;
  regionsTotal: number;
  hydrated: number[];
  hydrating: number[];
  /** Regions holding source blocks that could not be read (written as zeros). */
  unreadable: number[];
}

export interface JobError {
  /** null: not about one job (e.g. the engine could not start). */
  job: JobId | null;
  message: string;
  device?: string;
  offset?: number;
  length?: number;
  /** True when the job stopped because of it (it stays resumable). */
  fatal: boolean;
}

export interface ModeChange {
  job: JobId;
  mode: MetadataMode;
  reason: string;
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
  mismatches?: ByteRange[];
}

export interface JobDone {
  job: JobId;
  intent?: CloneIntent;
  /** done: every destination still in the job holds every region. interrupted and failed jobs are resumable. */
  state: 'done' | 'interrupted' | 'failed';
  error?: string | null;
  bytesRead: number;
  bytesWritten: number;
  regionsCopied: number;
  unreadableBytes: number;
  unreadable: ByteRange[];
  failedDestinations: string[];
  /** Per destination: its result (and its verify result). */
  destinations?: DestinationResult[];
  seconds: number;
  copySeconds?: number;
  verifySeconds?: number;
  /** Set when the job verified: true only when every destination compared equal. */
  verified?: boolean;
  mismatches?: ByteRange[];
}

/** Comparing before an update, or verifying after a copy. */
export interface VerifyProgress {
  job: JobId;
  phase: 'comparing' | 'verifying';
  bytesDone: number;
  bytesTotal: number;
  rate: number;
  eta: number | null;
}

/** A job's verify: per destination, equal or the ranges that differ. */
export interface JobVerified {
  job: JobId;
  equal: boolean;
  destinations: Array<{
    path: string;
    equal: boolean;
    mismatches: ByteRange[];
    regions: number[];
    /** Its rewritten partition table (checked apart from the compare) is wrong: why. */
    tableProblem?: string;
  }>;
  skipped: ByteRange[];
  seconds: number;
}

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
}

export type DriveTwinEventName = keyof DriveTwinEvents;
