// The contract between the renderer and the backend: what `window.driveTwin` is — its
// calls here, its events and the data they carry in ./events.ts.
//
// Types and constants only — no imports but types from ./events, nothing that needs
// Node or Electron — so the preload (contextBridge over ipcRenderer), the browser
// bridge client (WebSocket) and the handlers in main/api.ts all build against these two
// files. Every value that crosses is plain data (structured-clone and JSON safe): no
// classes, no functions except the listener passed to `on`.

import type {
  ByteRange,
  CloneIntent,
  DriveContents,
  DriveInfo,
  DriveRole,
  DriveTwinEventName,
  DriveTwinEvents,
  JobId,
  JobOptionsInfo,
  MetadataMode,
  RegionMapChange,
  UsedSpaceInfo,
} from './events';

// ---------------------------------------------------------------------------
// Drives, image files and dialogs

/** Target verdicts depend on the chosen source (overlap, size) and on what the user allows. */
export interface DriveQuery {
  /** The chosen source path: a target on it, or smaller than it, is refused. */
  source?: string;
  /** Show mounted drives as `confirm` instead of `refused` (the target then needs allowMounted). */
  allowMounted?: boolean;
  /** Show the system drive as `confirm` instead of `refused` (the target then needs confirmSystemName). */
  allowSystem?: boolean;
}

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
  /**
   * listFolder browses the backend's files (home, /media, /mnt, /run/media): the file
   * dialog of the browser, where there are no native dialogs.
   */
  fileBrowser: boolean;
  /** How ejectDrive makes a drive safe to remove here; null: it can't (nothing to do it with). */
  eject: 'udisksctl' | 'eject' | 'diskutil' | 'windows' | null;
  /** Who shows a desktop notification when a copy ends: the app (Electron) or the page. */
  notifications: 'app' | 'page';
}

/** A folder of the backend's file system, for the browser's file dialog. */
export interface FolderListing {
  /** The folder listed (absolute); '' for the list of places. */
  path: string;
  /** Its parent, when it is inside a place; null at a place or the list of places. */
  parent: string | null;
  entries: FolderEntry[];
}

export interface FolderEntry {
  name: string;
  path: string;
  kind: 'folder' | 'file';
  /** Bytes (files). */
  size: number;
}

/** What ejectDrive did. */
export interface EjectResult {
  /** true: it is safe to unplug now. */
  ejected: boolean;
  /** What happened, in words to show (why not, when it did not). */
  message: string;
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
  /** Copy only what the source's file systems use, partition by partition (usedSpace says what). Default false. */
  usedOnly?: boolean;
  /** With usedOnly: write zeros over the free space of drive targets. Default false. */
  zeroFree?: boolean;
  /** Copy only up to the end of the source's last partition, with a table for each target's size (a smaller target). Default false. */
  fit?: boolean;
  /** New GPT disk and partition GUIDs, or a new MBR disk signature, on every target. Default false. */
  newIds?: boolean;
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
  /** A full path, or an http(s) URL: a download, read as it is copied. */
  source: string;
  /** One or more, no path twice. Drives need `confirmed: true`. */
  targets: CloneTarget[];
  options?: CloneOptions;
  /** A new job (erase and copy) even where a job for this source and these targets exists. */
  fresh?: boolean;
  /**
   * A download: the SHA-256 (64 hexadecimal digits) the whole file must hash to, else the
   * job fails. Without it, a `.sha256` file next to the URL is used where there is one.
   */
  sha256?: string;
  /**
   * "Use it now" (Linux): while it copies, the first target is served as a block device
   * over NBD on a Unix socket, as it will be; the `serving` event says where.
   */
  serve?: boolean;
}

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
  /** The source's partition table: where its last partition ends, the least a fitted target holds. */
  partitions?: { table: 'gpt' | 'mbr'; end: number; fitSize: number } | null;
  /** With usedOnly: what the copy reads of each partition, and in all. */
  usedSpace?: UsedSpaceInfo | null;
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
// The API

export type Unsubscribe = () => void;

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
   * An image to read. With `typedPath` (the text-field fallback) that path is checked — or,
   * an http(s) URL, what the server has there (its size; a 404 or an untrusted certificate
   * is refused with the reason) —
   * and returned; without, the open dialog is shown (null when cancelled or when
   * dialogs are unavailable). The picked image joins listDrives.
   */
  pickImageToOpen(typedPath?: string): Promise<DriveInfo | null>;
  /** An image file to write (may not exist yet): as pickImageToOpen, with a save dialog. */
  pickImageToSave(typedPath?: string): Promise<DriveInfo | null>;
  /** Takes a picked image off one list (it stays on the other if it is there too). */
  forgetImage(path: string, role: DriveRole): Promise<void>;
  /**
   * What is on a drive or image file now: its partition table, each partition's label,
   * file system and size, or that it is blank — what a copy onto it would erase.
   */
  driveContents(path: string): Promise<DriveContents>;
  /** A folder of the backend's files (no path: the places). Only where fileBrowser is true. */
  listFolder(path?: string): Promise<FolderListing>;
  /** Makes a drive safe to unplug (after a copy): powers it off or ejects it. */
  ejectDrive(path: string): Promise<EjectResult>;

  /**
   * What a copy of only the used space of `source` reads, partition by partition, for
   * regions of `regionSize` (default 1 MiB); rejects with why it can't be done (a file
   * system not cleanly unmounted, a mounted partition…). Reads the source only.
   */
  usedSpace(source: string, regionSize?: number): Promise<UsedSpaceInfo>;
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
  /**
   * Whether the backend can be reached: the listener gets the status now, then every
   * change. In Electron it is always connected; over the web bridge it is lost when the
   * bridge stops or goes silent (within 2 s), and connected again by itself.
   */
  onConnection(listener: (status: ConnectionStatus) => void): Unsubscribe;
  /**
   * The full path of a File dropped on the window (Electron's webUtils.getPathForFile),
   * to pass to pickImageToOpen / pickImageToSave. null where a dropped file has no path
   * the backend could open (a browser).
   */
  pathOfFile(file: unknown): string | null;
}

/**
 * connecting: not yet heard; connected; lost: gone or silent, trying again by itself;
 * refused: this page has no valid token (nothing will change until it is opened again).
 */
export type ConnectionState = 'connecting' | 'connected' | 'lost' | 'refused';

export interface ConnectionStatus {
  state: ConnectionState;
  /**
   * no-token: the page was opened without one; bad-token: the bridge refused it (another
   * bridge, or restarted with a new one); closed: the connection closed; silent: nothing
   * heard for too long. null while connecting or connected.
   */
  reason: 'no-token' | 'bad-token' | 'closed' | 'silent' | null;
  /** Date.now() when the backend was last heard from (0: never). */
  lastHeard: number;
}

/** Members of `window.driveTwin` that are not calls to the backend. */
export type LocalMember = 'on' | 'onConnection' | 'pathOfFile';

export type DriveTwinMethod = Exclude<keyof DriveTwinApi, LocalMember>;

/** Exactly the methods to bind, in both transports. */
export const METHODS = [
  'capabilities',
  'listDrives',
  'pickImageToOpen',
  'pickImageToSave',
  'forgetImage',
  'driveContents',
  'listFolder',
  'ejectDrive',
  'usedSpace',
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
  'serving',
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

/**
 * Web bridge: a WebSocket at /bridge, JSON text frames. The page's first message is
 * `auth` with the token (from the URL's #fragment, never a cookie or a query); nothing
 * else is answered before it.
 */
export const BRIDGE_PATH = '/bridge';
/** WebSocket close code for a missing or wrong token. */
export const BRIDGE_CLOSE_UNAUTHORIZED = 4401;

export type BridgeClientMessage =
  | { t: 'auth'; token: string }
  | { t: 'call'; id: number; method: string; args: unknown[] }
  /** Nothing heard for a while: is the bridge there? It answers `pong` at once. */
  | { t: 'ping' };

export type BridgeServerMessage =
  /** First message on an accepted connection (the token was right). */
  | { t: 'ready' }
  /** At least every half second: the backend is there. */
  | { t: 'alive' }
  /** The answer to a ping. */
  | { t: 'pong' }
  | { t: 'reply'; id: number; reply: Reply }
  | {
      [E in DriveTwinEventName]: { t: 'event'; event: E; payload: DriveTwinEvents[E] };
    }[DriveTwinEventName];
