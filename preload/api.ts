// The contract between the renderer and the backend: what `window.driveTwin` is.
//
// Types and constants only — no imports, nothing that needs Node or Electron — so the
// preload (contextBridge over ipcRenderer), the browser bridge client (WebSocket) and
// the handlers in main/api.ts all build against this one file. Every value that
// crosses is plain data (structured-clone and JSON safe): no classes, no functions
// except the listener passed to `on`.

// ---------------------------------------------------------------------------
// Drives

export type JobId = number;

/** usable: go ahead; confirm: only after the user explicitly confirms; refused: never. */
export type VerdictLevel = 'usable' | 'confirm' | 'refused';

export interface DriveVerdict {
  level: VerdictLevel;
  /** Why, in words to show the user (may be empty when usable). */
  reasons: string[];
}

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
}

/** Target verdicts depend on the chosen source (overlap, size) and on what the user allows. */
export interface DriveQuery {
  /** The chosen source path: a target on it, or smaller than it, is refused. */
  source?: string;
  /** Show mounted drives as `confirm` instead of `refused` (the target then needs allowMounted). */
  allowMounted?: boolean;
  /** Show the system drive as `confirm` instead of `refused` (the target then needs confirmSystemName). */
  allowSystem?: boolean;
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
// Image files and dialogs

export interface Capabilities {
  /** 'electron': the desktop window; 'web': the browser bridge (`npm run web`). */
  transport: 'electron' | 'web';
  /**
   * Native open/save dialogs exist. When false, pickImageToOpen/pickImageToSave
   * without a typed path return null: offer a text field and pass what is typed.
   */
  dialogs: boolean;
  /** process.platform of the machine whose drives these are. */
  platform: string;
  version: string;
}

// ---------------------------------------------------------------------------
// Jobs

export interface CloneOptions {
  /** Bytes: a power of two, 4 KiB–1 GiB, a multiple of every device's block size. Default 1 MiB. */
  regionSize?: number;
  /** Most regions in flight at once, 1–4096. Default 32. */
  threshold?: number;
  /** Adjacent regions copied as one I/O, 1–threshold. Default 8. */
  batch?: number;
  /** Percent of wall time allowed for I/O, 1–100. Default 100. */
  throttle?: number;
  /** Bytes per second, 0 for no cap. Default 0. */
  maxRate?: number;
  /** Skip writing zero regions. null/absent: yes for image files, no for drives. */
  sparse?: boolean | null;
  /** Delimit unreadable source blocks, write zeros there, go on. Default false. */
  ignoreErrors?: boolean;
  /** Write each destination strictly in order (zoned drives). Default false. */
  sequential?: boolean;
  /** Compare source and destinations when done. Default false. */
  verify?: boolean;
  /** Copy only what an ext2/3/4 or FAT32 file system on the source uses. Default false. */
  usedOnly?: boolean;
  /** With usedOnly: write zeros over the free space of drive targets. Default false. */
  zeroFree?: boolean;
}

export interface CloneTarget {
  path: string;
  /** Required (true) for every drive target: the user confirmed it will be overwritten. */
  confirmed?: boolean;
  /** Required for a mounted drive target: the user accepts writing it while in use. */
  allowMounted?: boolean;
  /** Required for a system drive target: exactly the drive's `name`, as the user typed it. */
  confirmSystemName?: string;
}

export interface CloneRequest {
  source: string;
  /** One or more, no path twice. Drives need `confirmed: true`. */
  targets: CloneTarget[];
  options?: CloneOptions;
  /** A new job (erase and copy) even where a job for this source and these targets exists. */
  fresh?: boolean;
}

/** new: erase and copy; resume: go on with an unfinished job; update: copy what differs. */
export type CloneIntent = 'new' | 'resume' | 'update';

/** What startClone would do, from every check, before anything is written. */
export interface ClonePlan {
  intent: CloneIntent;
  /** The existing job it would resume or update. */
  job: JobId | null;
  /** The image's size (uncompressed); an estimate while sizeKnown is false. */
  bytesTotal: number;
  sizeKnown: boolean;
  regionSize: number;
  /** 0 while a stream's size is unknown. */
  regionsTotal: number;
  /** Already copied (resume, update): what the job's record holds. */
  regionsHydrated: number;
}

export interface ResumeRequest {
  /** Required (true) when the job writes to a drive. */
  confirmed?: boolean;
  /** Only these may change on resume. */
  options?: Pick<CloneOptions, 'threshold' | 'batch' | 'throttle' | 'maxRate' | 'verify'>;
  /** Destinations (paths) to finish without, for good. */
  drop?: string[];
}

export interface ThrottleChange {
  /** 1–100. */
  percent?: number;
  /** Bytes per second, 0 for no cap. */
  maxRate?: number;
}

/** verifying: copied, being compared. done: copied (see `verified`). */
export type JobState = 'running' | 'paused' | 'verifying' | 'interrupted' | 'done' | 'failed';
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
}

export interface JobSummary {
  job: JobId;
  state: JobState;
  /** Running in an engine right now (state running or paused). */
  live: boolean;
  /** resumeJob may be called (interrupted or failed, not live). */
  resumable: boolean;
  mode: MetadataMode;
  source: string;
  /** failed: why it left the job (it comes back on resume unless dropped). */
  destinations: Array<{ path: string; size: number; failed: string | null; dropped: boolean }>;
  bytesTotal: number;
  regionSize: number;
  regionsHydrated: number;
  regionsTotal: number;
  unreadableBytes: number;
  options: JobOptionsInfo;
  error: string | null;
  /** Every destination compared equal (true), differed (false), or not verified (null). */
  verified: boolean | null;
  copySeconds: number;
  verifySeconds: number;
  /** dm-clone style: `<region size> <hydrated>/<total> <hydrating> <features> <core args> <mode>`. */
  statusLine: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface ByteRange {
  offset: number;
  length: number;
}

export interface VerifyReport {
  job: JobId;
  /** True when every readable byte of every destination equals the source. */
  verified: boolean;
  /** Per destination path: byte ranges (whole regions) that differ. */
  mismatches: Record<string, ByteRange[]>;
  /** Source ranges that could not be read, so were not compared. */
  skipped: ByteRange[];
  seconds: number;
}

export type MapFormat = 'json' | 'ddrescue';

export interface MapExport {
  format: MapFormat;
  /** A file name to offer when saving, e.g. `drivetwin-job-3.map`. */
  fileName: string;
  /** MIME type for a download. */
  mimeType: string;
  text: string;
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
  destinations: Array<{ path: string; equal: boolean; mismatches: ByteRange[]; regions: number[] }>;
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

export type Unsubscribe = () => void;

// ---------------------------------------------------------------------------
// The API

/**
 * `window.driveTwin`. Every method returns a promise; a refused or malformed call
 * rejects with an Error whose message says why, in words to show the user. Its
 * `code` (ApiErrorCode) is set by the web bridge client; contextBridge drops custom
 * Error properties, so under Electron only `message` is sure to arrive.
 */
export interface DriveTwinApi {
  capabilities(): Promise<Capabilities>;
  /** Drives, loop devices and picked image files, each with a verdict per role. */
  listDrives(query?: DriveQuery): Promise<DriveInfo[]>;
  /**
   * An image to read. With `typedPath` (the text-field fallback) that path is checked
   * and returned; without, the open dialog is shown (null when cancelled or when
   * dialogs are unavailable). The picked image joins listDrives.
   */
  pickImageToOpen(typedPath?: string): Promise<DriveInfo | null>;
  /** An image file to write (may not exist yet): as pickImageToOpen, with a save dialog. */
  pickImageToSave(typedPath?: string): Promise<DriveInfo | null>;

  /** What startClone would do (erase and copy, resume, update), checked, nothing written. */
  planClone(request: CloneRequest): Promise<ClonePlan>;
  startClone(request: CloneRequest): Promise<{ job: JobId; intent: CloneIntent }>;
  /** Pause hydration: in-flight regions finish, nothing new is read. */
  pause(job: JobId): Promise<void>;
  /** Resume hydration of a paused job. */
  resume(job: JobId): Promise<void>;
  /** Stop: in-flight regions finish and are committed; the job stays resumable. */
  cancel(job: JobId): Promise<void>;
  setThrottle(job: JobId, change: ThrottleChange): Promise<void>;

  listJobs(): Promise<JobSummary[]>;
  /** Continue an interrupted or failed job onto the same source and destinations. */
  resumeJob(job: JobId, request?: ResumeRequest): Promise<{ job: JobId }>;
  /** Remove a job that is not running from the history. */
  forgetJob(job: JobId): Promise<void>;
  /** Compare source and destinations of a job (progress as 'verify-progress'). */
  verify(job: JobId): Promise<VerifyReport>;
  /** The whole region map now (a `reset: true` RegionMapChange). */
  regionMap(job: JobId): Promise<RegionMapChange>;
  exportMap(job: JobId, format: MapFormat): Promise<MapExport>;

  on<E extends DriveTwinEventName>(
    event: E,
    listener: (payload: DriveTwinEvents[E]) => void,
  ): Unsubscribe;
}

export type DriveTwinMethod = Exclude<keyof DriveTwinApi, 'on'>;

/** Exactly the methods to bind, in both transports. */
export const METHODS = [
  'capabilities',
  'listDrives',
  'pickImageToOpen',
  'pickImageToSave',
  'planClone',
  'startClone',
  'pause',
  'resume',
  'cancel',
  'setThrottle',
  'listJobs',
  'resumeJob',
  'forgetJob',
  'verify',
  'regionMap',
  'exportMap',
] as const satisfies readonly DriveTwinMethod[];

export const EVENTS = [
  'drives-changed',
  'job-started',
  'progress',
  'region-map',
  'error',
  'mode',
  'done',
  'verify-progress',
  'verified',
] as const satisfies readonly DriveTwinEventName[];

// Compile-time check that METHODS and EVENTS name every member (and nothing else).
type Missing<All, Listed> = Exclude<All, Listed>;
const everyMethod: Missing<DriveTwinMethod, (typeof METHODS)[number]> extends never ? true : false =
  true;
const everyEvent: Missing<DriveTwinEventName, (typeof EVENTS)[number]> extends never
  ? true
  : false = true;
void everyMethod;
void everyEvent;

export type MethodArgs<M extends DriveTwinMethod> = Parameters<DriveTwinApi[M]>;
export type MethodResult<M extends DriveTwinMethod> = Awaited<ReturnType<DriveTwinApi[M]>>;

// ---------------------------------------------------------------------------
// On the wire (both transports)

/**
 * Why a call failed. invalid: the arguments don't fit the contract (nothing reached
 * the engine); refused: a safety check said no (nothing written); not-found: no such
 * job or drive; busy: the job is running / not running; engine: the engine failed.
 */
export type ApiErrorCode = 'invalid' | 'refused' | 'not-found' | 'busy' | 'engine' | 'unavailable';

export interface ApiFailure {
  code: ApiErrorCode;
  message: string;
  /** For `invalid`: one line per problem, e.g. `targets.0.path: expected a string`. */
  issues?: string[];
}

/** What a handler answers: the preload / bridge client unwraps it (rejecting with message and code). */
export type Reply<T = unknown> = { ok: true; value: T } | { ok: false; error: ApiFailure };

/** Electron IPC: one invoke channel per method, one channel per event. */
export const IPC_PREFIX = 'drivetwin:';
export const INVOKE_CHANNELS = Object.fromEntries(
  METHODS.map((m) => [m, `${IPC_PREFIX}call:${m}`]),
) as { readonly [M in DriveTwinMethod]: `drivetwin:call:${M}` };
export const EVENT_CHANNELS = Object.fromEntries(
  EVENTS.map((e) => [e, `${IPC_PREFIX}event:${e}`]),
) as { readonly [E in DriveTwinEventName]: `drivetwin:event:${E}` };

/** Web bridge (WebSocket at /bridge?token=…), JSON text frames. */
export const BRIDGE_PATH = '/bridge';
/** WebSocket close code for a missing or wrong token. */
export const BRIDGE_CLOSE_UNAUTHORIZED = 4401;

export type BridgeClientMessage = { t: 'call'; id: number; method: string; args: unknown[] };

export type BridgeServerMessage =
  /** First message on an accepted connection (the token was right). */
  | { t: 'ready' }
  | { t: 'reply'; id: number; reply: Reply }
  | {
      [E in DriveTwinEventName]: { t: 'event'; event: E; payload: DriveTwinEvents[E] };
    }[DriveTwinEventName];
