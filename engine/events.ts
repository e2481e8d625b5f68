// The contract's data: what a job session says (its events, in order) and what they
// carry — byte ranges, metadata modes, a job's options — and what is on a drive.
// Written once, here; the engine builds them, the host and the CLI forward them, and
// the preload's contract (preload/events.ts, preload/api.ts) names them for the
// renderer, which type-checks this file too.
//
// Types only: no imports, nothing that needs Node, Electron or the DOM; every value is
// plain data (structured-clone and JSON safe).

export interface Range {
  offset: number;
  length: number;
}

/** The job's metadata: read-write; read-only (a commit failed: keep what is committed); fail. */
export type Mode = 'rw' | 'ro' | 'fail';

export interface JobOptions {
  threshold: number;
  batch: number;
  throttle: number;
  maxRate: number;
  sparse: boolean | null;
  ignoreErrors: boolean;
  sequential: boolean;
  verify: boolean;
  /** Copy only what the source's file systems use (ext2/3/4, FAT, NTFS, exFAT; per partition). */
  usedOnly: boolean;
  /** With usedOnly: write zeros over free space on drives (images get holes anyway). */
  zeroFree: boolean;
  /** Copy only up to the end of the last partition, with a partition table for each destination's size. */
  fit: boolean;
  /** New GPT disk and partition GUIDs, or a new MBR disk signature, on every destination. */
  newIds: boolean;
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

/** One part of a source as a used-only copy sees it: a partition, or the file system on all of it. */
export interface UsedArea {
  /** The partition's number (1, 2, … as the table numbers it; 5 on for MBR logical ones); 0: the whole source. */
  partition: number;
  /** Bytes from the start of the source, and its size. */
  offset: number;
  size: number;
  /** What it holds: ext4, ntfs, exfat, fat32, swap, xfs, …; null: nothing recognised. */
  fs: string | null;
  /**
   * used: only what its file system uses is copied; whole: all of it (a kind DriveTwin
   * doesn't read); skipped: swap (its header only) or a partition holding no data.
   */
  copy: 'used' | 'whole' | 'skipped';
  /** Bytes of it copied. */
  bytes: number;
  /** Why it is copied whole or skipped, in words; null for a used-space one. */
  note: string | null;
}

/** What a used-only copy of a source reads, decided before anything is written. */
export interface UsedSpaceInfo {
  /** The source's partition table; 'none': one file system on the whole source. */
  table: 'gpt' | 'mbr' | 'none';
  areas: UsedArea[];
  /** Bytes outside every partition that are copied as they are: the tables, boot code, gaps between partitions. */
  outsideBytes: number;
  /** Bytes after the last partition that belong to none (a GPT's backup aside): left out. */
  afterLastBytes: number;
  /** Bytes the copy reads: every region holding a used byte, the tables and gaps between partitions included. */
  bytesToCopy: number;
  /** Bytes a full copy would read (to the end of the last partition with --fit). */
  bytesTotal: number;
}

// ---------------------------------------------------------------------------
// A job session's events

export type Intent = 'new' | 'resume' | 'update';

/** The SHA-256 a download must have, and who said so: 'given' (the user), or a .sha256 file's URL. */
export interface ExpectedSha256 {
  hex: string;
  from: string;
}

/** A download (the source is a URL), as it goes. */
export interface DownloadProgress {
  url: string;
  /** Bytes received from the server in this session (sent again or dropped ones too). */
  bytes: number;
  /** The file's size where the server said it (compressed, for a compressed image). */
  size: number | null;
  /** Bytes per second received over the last second or so. */
  rate: number;
  /** Connections that failed and were tried again. */
  retries: number;
  /** What the whole file is hashed against as it passes; null: nothing. */
  sha256: ExpectedSha256 | null;
}

/** How a download went, at the end of a session. */
export interface DownloadSummary {
  url: string;
  bytes: number;
  retries: number;
  sha256: ExpectedSha256 | null;
  /**
   * The whole file was read and hashed: true when it matched, false when not (then the job
   * failed). Null: it was not read whole in this session, or there was nothing to check.
   */
  sha256Matched: boolean | null;
}

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
  /** While sizeKnown is false: that the size is a guess, what happens if it is wrong, how to know. */
  sizeNote?: string;
  /** The options in force. */
  options: JobOptions;
  /** An update: the regions found to differ, about to be copied. */
  delta?: number;
  /** A used-only copy: what it reads of each partition. */
  usedSpace?: UsedSpaceInfo;
  /** The source is a URL: what is downloaded. */
  download?: DownloadProgress;
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
  /** Bytes done per second over this run so far, pauses left out (0 until a second is counted). */
  averageRate: number;
  /** Seconds left at that rate; null while paused or not yet known. */
  eta: number | null;
  paused: boolean;
  /** The throttle in force. */
  throttle: { percent: number; maxRate: number };
  /**
   * The pair's full speed, bytes per second: the copy's throughput when nothing held it
   * back, as last measured (null until then). A throttle percent is that share of it.
   */
  fullSpeed: number | null;
  status: string;
  /** The source is a URL: the download's own rate (`rate` is the writing's). */
  download?: DownloadProgress;
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
  /**
   * A download's connection that failed and is tried again after `delayMs` (attempt
   * `attempt` of `attempts`): no byte is lost, nothing unreadable. `offset` is where in the
   * downloaded file it stood.
   */
  retry?: { attempt: number; attempts: number; delayMs: number };
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
  /** Regions a client wrote through the served disk: theirs, not the source's, so not compared. */
  written?: Range[];
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
  /**
   * Not done, and a resume can finish it. False when the source is damaged (a compressed
   * image that can't be decoded past `error`'s place) or the image turned out bigger than
   * a drive it was written to: the job can only be started again (clone --fresh).
   */
  resumable: boolean;
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
  /** The source is a URL: what was downloaded, and whether its SHA-256 matched. */
  download?: DownloadSummary;
}

/**
 * The destination served over NBD while it hydrates (--serve): `listening` (up, before
 * any client), `serving` (clients came or went: `clients` are connected now), `waiting`
 * (the copy is done; served until the last client leaves), `closed`.
 */
export interface ServeEvent {
  type: 'serve';
  job: number;
  state: 'listening' | 'serving' | 'waiting' | 'closed';
  /** The Unix socket, and the URI clients attach: nbd+unix:///?socket=… */
  socket: string;
  uri: string;
  clients: number;
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
  /** Replaces the previous set: in flight. */
  hydrating: number[];
  /** Replaces the previous set: written to every destination, waiting for the next commit. */
  written: number[];
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
  | ServeEvent
  | DoneEvent;
