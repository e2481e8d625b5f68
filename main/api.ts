// The handlers: plain functions implementing the contract in preload/api.ts. Bound to
// ipcMain by main/ipc.ts and to a WebSocket by main/web-bridge.ts; neither adds logic.
//
// Every argument is validated here (zod, strict: unknown keys are errors) before
// anything reaches the engine, and every drive target must carry the user's explicit
// confirmation. The engine checks everything again; this is where the user is told.

import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { type Drive, imageFileDrive } from '../engine/drives/classify';
import { imageSize } from '../engine/io/compressed/index';
import { driveFacts, type Facts, pathFacts } from '../engine/drives/facts';
import {
  inUse,
  namedTwice,
  sourceVerdict,
  targetVerdict,
  verdictFor,
} from '../engine/drives/safety';
import { MAX_REGION_SIZE, MIN_REGION_SIZE } from '../engine/geometry';
import type { JobRecord } from '../engine/job-record';
import type { HostCloneRequest, HostCommand, HostEvent, LiveJob } from '../engine/protocol';
import type {
  ApiErrorCode,
  ApiFailure,
  Capabilities,
  CloneIntent,
  ClonePlan,
  CloneRequest,
  DriveInfo,
  DriveQuery,
  DrivesChanged,
  DriveTwinEventName,
  DriveTwinEvents,
  DriveTwinMethod,
  JobDone,
  JobError,
  JobProgress,
  JobStarted,
  JobSummary,
  JobVerified,
  MapExport,
  MethodArgs,
  MethodResult,
  ModeChange,
  RegionMapChange,
  Reply,
  Unsubscribe,
  VerifyProgress,
  VerifyReport,
} from '../preload/api';
import { METHODS } from '../preload/api';
import type { DrivesDiff } from './drive-watcher';

// ---------------------------------------------------------------------------
// Dependencies

/** Which paths a command reads and writes: the engine host decides elevation from them. */
export interface Access {
  read: string[];
  write: string[];
}

/** The engine, wherever it runs (main/engine-host.ts's EngineSupervisor). */
export interface Engine {
  request(command: HostCommand, access?: Access): Promise<unknown>;
  /** Every event from every engine process, plus interruptions when one dies. */
  onEvent(listener: (event: HostEvent) => void): Unsubscribe;
  /** Whether an engine process runs this job now (where its commands go). */
  running(job: number): boolean;
}

export interface Dialogs {
  /** Absolute path of an existing image file, or null when cancelled. */
  open(): Promise<string | null>;
  /** Absolute path to write an image to, or null when cancelled. */
  save(): Promise<string | null>;
}

export interface DrivesChanges {
  on(event: 'change', listener: (diff: DrivesDiff) => void): unknown;
  off(event: 'change', listener: (diff: DrivesDiff) => void): unknown;
}

export interface BackendDeps {
  engine: Engine;
  /** Drives now (engine/drives/list.ts listDrives). */
  listDrives: () => Promise<Drive[]>;
  /** The drive watcher, for 'drives-changed'. */
  drivesChanges?: DrivesChanges;
  /** null: no native dialogs (the web bridge); the renderer offers a text field. */
  dialogs: Dialogs | null;
  transport: Capabilities['transport'];
  version?: string;
}

export type Handlers = { [M in DriveTwinMethod]: (...args: unknown[]) => Promise<MethodResult<M>> };

export interface Backend {
  /** The one entry point for both transports: validates, runs, never throws. */
  call(method: string, args: unknown[]): Promise<Reply>;
  /** The same, typed: throws ApiError. */
  handlers: Handlers;
  /** Every event, for the transport to forward. */
  onEvent<E extends DriveTwinEventName>(
    listener: (event: E, payload: DriveTwinEvents[E]) => void,
  ): Unsubscribe;
  close(): void;
}

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly issues?: string[],
  ) {
    super(message);
  }

  toFailure(): ApiFailure {
    return this.issues
      ? { code: this.code, message: this.message, issues: this.issues }
      : { code: this.code, message: this.message };
  }
}

// ---------------------------------------------------------------------------
// Schemas

const MAX_PATH = 4096;
const MAX_TARGETS = 16;

const pathText = z
  .string()
  .min(1, 'a path is needed')
  .max(MAX_PATH, `a path is at most ${MAX_PATH} characters`)
  .refine((s) => !s.includes('\0'), 'a path cannot contain a NUL character');

const jobId = z.int().min(1).max(Number.MAX_SAFE_INTEGER);
const percent = z.int().min(1).max(100);
const rate = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

const cloneOptions = z
  .strictObject({
    regionSize: z
      .int()
      .min(MIN_REGION_SIZE)
      .max(MAX_REGION_SIZE)
      .refine(isPowerOfTwo, 'region size must be a power of two')
      .optional(),
    threshold: z.int().min(1).max(4096).optional(),
    batch: z.int().min(1).max(4096).optional(),
    throttle: percent.optional(),
    maxRate: rate.optional(),
    sparse: z.boolean().nullable().optional(),
    ignoreErrors: z.boolean().optional(),
    sequential: z.boolean().optional(),
    verify: z.boolean().optional(),
    usedOnly: z.boolean().optional(),
    zeroFree: z.boolean().optional(),
  })
  .refine((o) => o.batch === undefined || o.batch <= (o.threshold ?? 32), {
    message: 'batch must not exceed the threshold',
    path: ['batch'],
  })
  .refine((o) => !o.zeroFree || o.usedOnly, {
    message: 'zeroFree only goes with usedOnly',
    path: ['zeroFree'],
  });

const cloneTarget = z.strictObject({
  path: pathText,
  confirmed: z.boolean().optional(),
  allowMounted: z.boolean().optional(),
  confirmSystemName: z.string().max(1024).optional(),
});

const cloneRequest = z.strictObject({
  source: pathText,
  targets: z.array(cloneTarget).min(1, 'at least one target is needed').max(MAX_TARGETS),
  options: cloneOptions.optional(),
  fresh: z.boolean().optional(),
});

const driveQuery = z.strictObject({
  source: pathText.optional(),
  allowMounted: z.boolean().optional(),
  allowSystem: z.boolean().optional(),
});

const resumeRequest = z.strictObject({
  confirmed: z.boolean().optional(),
  options: z
    .strictObject({
      threshold: z.int().min(1).max(4096).optional(),
      batch: z.int().min(1).max(4096).optional(),
      throttle: percent.optional(),
      maxRate: rate.optional(),
      verify: z.boolean().optional(),
    })
    .optional(),
  drop: z.array(pathText).max(MAX_TARGETS).optional(),
});

const throttleChange = z
  .strictObject({ percent: percent.optional(), maxRate: rate.optional() })
  .refine((c) => c.percent !== undefined || c.maxRate !== undefined, {
    message: 'give percent, maxRate or both',
  });

const ARGS = {
  capabilities: z.tuple([]),
  listDrives: z.tuple([driveQuery.optional()]),
  pickImageToOpen: z.tuple([pathText.optional()]),
  pickImageToSave: z.tuple([pathText.optional()]),
  planClone: z.tuple([cloneRequest]),
  startClone: z.tuple([cloneRequest]),
  pause: z.tuple([jobId]),
  resume: z.tuple([jobId]),
  cancel: z.tuple([jobId]),
  setThrottle: z.tuple([jobId, throttleChange]),
  listJobs: z.tuple([]),
  resumeJob: z.tuple([jobId, resumeRequest.optional()]),
  forgetJob: z.tuple([jobId]),
  verify: z.tuple([jobId]),
  regionMap: z.tuple([jobId]),
  exportMap: z.tuple([jobId, z.enum(['json', 'ddrescue'])]),
} satisfies { [M in DriveTwinMethod]: z.ZodType };

/** Argument names, for messages: "request.targets[0].confirmed: …". */
const ARG_NAMES: { [M in DriveTwinMethod]: string[] } = {
  capabilities: [],
  listDrives: ['query'],
  pickImageToOpen: ['typedPath'],
  pickImageToSave: ['typedPath'],
  planClone: ['request'],
  startClone: ['request'],
  pause: ['job'],
  resume: ['job'],
  cancel: ['job'],
  setThrottle: ['job', 'change'],
  listJobs: [],
  resumeJob: ['job', 'request'],
  forgetJob: ['job'],
  verify: ['job'],
  regionMap: ['job'],
  exportMap: ['job', 'format'],
};

function describeIssues(method: DriveTwinMethod, error: z.ZodError, given: number): string[] {
  return error.issues.map((issue) => {
    if (issue.path.length === 0 && (issue.code === 'too_big' || issue.code === 'too_small')) {
      const names = ARG_NAMES[method];
      const takes = names.length ? `(${names.join(', ')})` : 'no arguments';
      return `arguments: ${method} takes ${takes}, not ${given} argument${given === 1 ? '' : 's'}`;
    }
    let where = '';
    issue.path.forEach((p, i) => {
      if (i === 0 && typeof p === 'number') where = ARG_NAMES[method][p] ?? `argument ${p + 1}`;
      else if (typeof p === 'number') where += `[${p}]`;
      else where += `${where ? '.' : ''}${String(p)}`;
    });
    const missing = issue.code === 'invalid_type' && /received undefined$/.test(issue.message);
    return `${where || 'arguments'}: ${missing ? `missing (${issue.expected} expected)` : issue.message}`;
  });
}

function parseArgs<M extends DriveTwinMethod>(method: M, args: unknown[]): MethodArgs<M> {
  if (!Array.isArray(args)) throw new ApiError('invalid', `${method}: arguments must be a list`);
  // Trailing undefined (an omitted optional argument through IPC) is no argument.
  const given = [...args];
  while (given.length > 0 && given[given.length - 1] === undefined) given.pop();
  const parsed = (ARGS[method] as z.ZodType).safeParse(given);
  if (!parsed.success) {
    const issues = describeIssues(method, parsed.error, given.length);
    throw new ApiError('invalid', `${method}: ${issues.join('; ')}`, issues);
  }
  return parsed.data as MethodArgs<M>;
}

// ---------------------------------------------------------------------------
// Drives

/**
 * An image file as the copy sees it: a compressed image is as big as what it holds
 * (exact where its format says, else an estimate), not as its file.
 */
async function imageDrive(file: string): Promise<Drive & { sizeKnown: boolean }> {
  const drive = imageFileDrive(file);
  try {
    const { size, known } = await imageSize(drive.path);
    return { ...drive, size, sizeKnown: known };
  } catch {
    return { ...drive, sizeKnown: true }; // not there yet, or unreadable: its verdict says so
  }
}

function toDriveInfo(
  drive: Drive & { sizeKnown?: boolean },
  query: DriveQuery,
  sourceSize?: number,
): DriveInfo {
  return {
    path: drive.path,
    name: drive.name,
    size: drive.size,
    sizeKnown: drive.sizeKnown ?? true,
    logicalBlockSize: drive.logicalBlockSize,
    bus: drive.bus,
    removable: drive.removable,
    readOnly: drive.readOnly,
    mountpoints: [...drive.mountpoints],
    system: drive.system,
    kind: drive.kind,
    serial: drive.serial,
    backingFile: drive.backingFile,
    verdicts: {
      source: verdictFor(drive, 'source'),
      target: verdictFor(drive, 'target', {
        sourcePath: query.source,
        sourceSize,
        allowMounted: query.allowMounted,
        allowSystem: query.allowSystem,
      }),
    },
  };
}

function realOrResolved(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/** The listed drive that `p` names (any path to it), or undefined. */
function findDrive(drives: Drive[], p: string): Drive | undefined {
  const real = realOrResolved(p);
  return drives.find((d) => d.path === p || realOrResolved(d.path) === real);
}

/**
 * Facts about `p` for the safety rules: a listed drive as the user was shown it, and
 * anything else as it is now. A block device DriveTwin does not list is not written.
 */
function factsOf(p: string, drives: Drive[], source?: string): Facts {
  const listed = findDrive(drives, p);
  const st = statOrNull(p);
  if (listed?.kind === 'block' && st) return driveFacts(listed, source);
  if (st?.isBlockDevice()) {
    throw new ApiError('refused', `${p} is not a drive DriveTwin lists (no longer connected?)`);
  }
  return pathFacts(p, { source, drive: listed?.kind === 'block' });
}

function requireAbsolute(p: string, what: string): string {
  if (!path.isAbsolute(p)) throw new ApiError('invalid', `${what}: give a full path, not "${p}"`);
  return path.resolve(p);
}

// ---------------------------------------------------------------------------
// Events from the engine, as the contract names them

function omitType<T extends { type: string }>(e: T): Omit<T, 'type'> {
  const rest: Partial<T> = { ...e };
  delete rest.type;
  return rest as Omit<T, 'type'>;
}

type Emit = <E extends DriveTwinEventName>(event: E, payload: DriveTwinEvents[E]) => void;

function forwardEngineEvent(e: HostEvent, emit: Emit): void {
  switch (e.type) {
    case 'start':
      return emit('job-started', omitType(e) satisfies JobStarted);
    case 'progress':
      return emit('progress', omitType(e) satisfies JobProgress);
    case 'region-map':
      return emit('region-map', omitType(e) satisfies RegionMapChange);
    case 'error':
      return emit('error', omitType(e) satisfies JobError);
    case 'mode':
      return emit('mode', omitType(e) satisfies ModeChange);
    case 'done':
      return emit('done', omitType(e) satisfies JobDone);
    case 'verify-progress':
      return emit('verify-progress', omitType(e) satisfies VerifyProgress);
    case 'verify':
      return emit('verified', omitType(e) satisfies JobVerified);
  }
}

function engineError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const code = (e as { code?: unknown }).code;
  const known: ApiErrorCode[] = [
    'invalid',
    'refused',
    'not-found',
    'busy',
    'engine',
    'unavailable',
  ];
  const message = e instanceof Error ? e.message : String(e);
  return new ApiError(
    known.includes(code as ApiErrorCode) ? (code as ApiErrorCode) : 'engine',
    message,
  );
}

/** The engine's form of a clone request. */
function hostRequest(
  req: CloneRequest,
  allow: { allowMounted: boolean; allowSystem: boolean },
): HostCloneRequest {
  const { regionSize, ...options } = req.options ?? {};
  return {
    source: req.source,
    destinations: req.targets.map((t) => t.path),
    regionSize,
    options,
    allowMounted: allow.allowMounted,
    allowSystem: allow.allowSystem,
    fresh: req.fresh,
  };
}

// ---------------------------------------------------------------------------
// The backend

export function createBackend(deps: BackendDeps): Backend {
  const listeners = new Set<(event: DriveTwinEventName, payload: unknown) => void>();
  const emit: Emit = (event, payload) => {
    for (const l of [...listeners]) {
      try {
        l(event, payload);
      } catch {
        // one broken listener must not starve the others
      }
    }
  };
  /** Image files the user picked: they join the drive list. */
  const images = new Set<string>();

  const unsubscribeEngine = deps.engine.onEvent((e) => forwardEngineEvent(e, emit));
  const onDrives = async (diff: DrivesDiff): Promise<void> => {
    const payload: DrivesChanged = {
      drives: (await withImages(diff.drives)).map((d) => toDriveInfo(d, {})),
      added: diff.added,
      removed: diff.removed,
      changed: diff.changed,
    };
    emit('drives-changed', payload);
  };
  deps.drivesChanges?.on('change', onDrives);

  async function withImages(drives: Drive[]): Promise<Array<Drive & { sizeKnown?: boolean }>> {
    const out: Array<Drive & { sizeKnown?: boolean }> = [...drives];
    for (const image of images) {
      if (!findDrive(out, image)) out.push(await imageDrive(image));
    }
    return out;
  }

  /** The size a copy from `p` has: a drive's, or an image's uncompressed size. */
  async function sourceSizeOf(p: string, drives: Drive[]): Promise<number | undefined> {
    const listed = findDrive(drives, p);
    if (listed?.kind === 'block') return listed.size;
    return statOrNull(p) ? (await imageDrive(p)).size : listed?.size;
  }

  async function request(command: HostCommand, access?: Access): Promise<unknown> {
    try {
      return await deps.engine.request(command, access);
    } catch (e) {
      throw engineError(e);
    }
  }

  /** The job records, and the jobs the engine runs now as it reports them (paused or not). */
  async function jobRecords(): Promise<{ jobs: JobRecord[]; live: LiveJob[] }> {
    return (await request({ type: 'list-jobs' })) as { jobs: JobRecord[]; live: LiveJob[] };
  }

  async function jobRecord(id: number): Promise<JobRecord> {
    const record = (await jobRecords()).jobs.find((j) => j.id === id);
    if (!record) throw new ApiError('not-found', `there is no job ${id}`);
    return record;
  }

  function requireLive(id: number): void {
    if (!deps.engine.running(id)) throw new ApiError('not-found', `job ${id} is not running`);
  }

  function summary(record: JobRecord, live: LiveJob | undefined): JobSummary {
    const state = live ? (live.paused ? 'paused' : record.state) : record.state;
    return {
      job: record.id,
      state,
      live: Boolean(live),
      resumable: !live && (record.state === 'interrupted' || record.state === 'failed'),
      mode: record.mode,
      source: record.source,
      destinations: record.destinations.map((d) => ({
        path: d.path,
        size: d.size,
        failed: d.failed,
        dropped: d.dropped,
      })),
      bytesTotal: record.sourceSize,
      regionSize: record.regionSize,
      regionsHydrated: record.regionsHydrated,
      regionsTotal: record.regionsTotal,
      unreadableBytes: record.unreadableBytes,
      options: { ...record.options },
      error: record.error,
      verified: record.verified,
      copySeconds: record.copySeconds,
      verifySeconds: record.verifySeconds,
      statusLine: record.statusLine,
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      finishedAt: record.finishedAt,
    };
  }

  /**
   * Every check the user must hear about before the engine is asked: the source can
   * be read, each target may be written (engine/drives/safety.ts says why not), and
   * each drive target carries the confirmation it needs.
   */
  async function checkClone(request: CloneRequest): Promise<{
    confirmed: string[];
    allowMounted: boolean;
    allowSystem: boolean;
  }> {
    const drives = await deps.listDrives();
    const source = requireAbsolute(request.source, 'source');
    const sourceFacts = factsOf(source, drives);
    const readable = sourceVerdict(sourceFacts);
    if (readable.level === 'refused') {
      const gone = sourceFacts.kind === 'missing' && !sourceFacts.drivePath;
      throw new ApiError(gone ? 'not-found' : 'refused', readable.reasons.join('; '));
    }
    const twice = namedTwice(request.targets.map((t) => t.path));
    if (twice) throw new ApiError('refused', twice);
    const sourceSize = await sourceSizeOf(source, drives);

    const confirmed: string[] = [];
    let allowMounted = false;
    let allowSystem = false;
    for (const target of request.targets) {
      requireAbsolute(target.path, 'target');
      const listed = findDrive(drives, target.path);
      const systemDrive = listed?.kind === 'block' && listed.system;
      if (target.confirmSystemName !== undefined && !systemDrive) {
        throw new ApiError(
          'invalid',
          `target ${target.path}: confirmSystemName is only for the drive that holds the system`,
        );
      }
      const facts = factsOf(target.path, drives, source);
      const verdict = targetVerdict(facts, {
        sourceSize,
        allowMounted: target.allowMounted === true,
        allowSystem: target.confirmSystemName !== undefined,
      });
      if (verdict.level === 'refused') throw new ApiError('refused', verdict.reasons.join('; '));
      allowMounted ||= target.allowMounted === true && inUse(facts);
      if (facts.kind !== 'block') continue;
      if (target.confirmed !== true) {
        throw new ApiError(
          'refused',
          `target ${target.path} is a drive: everything on it will be overwritten, ` +
            'and the user has to confirm that (confirmed: true)',
        );
      }
      if (listed?.system && target.confirmSystemName !== listed.name) {
        throw new ApiError(
          'refused',
          `target ${target.path} holds the running system: confirmSystemName must be its name, "${listed.name}"`,
        );
      }
      allowSystem ||= facts.system;
      confirmed.push(target.path);
    }
    return { confirmed, allowMounted, allowSystem };
  }

  async function pickImage(
    typed: string | undefined,
    ask: (() => Promise<string | null>) | undefined,
    forWriting: boolean,
  ): Promise<DriveInfo | null> {
    let chosen = typed;
    if (chosen === undefined) {
      if (!ask) return null;
      chosen = (await ask()) ?? undefined;
      if (chosen === undefined) return null;
    }
    const file = requireAbsolute(chosen, 'image');
    const st = statOrNull(file);
    if (forWriting) {
      if (st && !st.isFile()) throw new ApiError('refused', `${file} is not a regular file`);
      const folder = path.dirname(file);
      if (!statOrNull(folder)?.isDirectory()) {
        throw new ApiError('not-found', `folder ${folder} does not exist`);
      }
    } else {
      if (!st) throw new ApiError('not-found', `${file} does not exist`);
      if (!st.isFile()) throw new ApiError('refused', `${file} is not an image file`);
      try {
        fs.accessSync(file, fs.constants.R_OK);
      } catch {
        throw new ApiError('refused', `${file} can't be read`);
      }
    }
    images.add(file);
    return toDriveInfo(await imageDrive(file), {});
  }

  const handlers: Handlers = {
    async capabilities(...args) {
      parseArgs('capabilities', args);
      return {
        transport: deps.transport,
        dialogs: deps.dialogs !== null,
        platform: process.platform,
        version: deps.version ?? '0.0.0',
      };
    },

    async listDrives(...args) {
      const [query = {}] = parseArgs('listDrives', args);
      const drives = await withImages(await deps.listDrives());
      const sourceSize = query.source ? await sourceSizeOf(query.source, drives) : undefined;
      return drives.map((d) => toDriveInfo(d, query, sourceSize));
    },

    async pickImageToOpen(...args) {
      const [typed] = parseArgs('pickImageToOpen', args);
      return pickImage(typed, deps.dialogs ? () => deps.dialogs!.open() : undefined, false);
    },

    async pickImageToSave(...args) {
      const [typed] = parseArgs('pickImageToSave', args);
      return pickImage(typed, deps.dialogs ? () => deps.dialogs!.save() : undefined, true);
    },

    async planClone(...args) {
      const [req] = parseArgs('planClone', args);
      requireAbsolute(req.source, 'source');
      return (await request(
        {
          type: 'plan',
          request: hostRequest(req, {
            allowMounted: req.targets.some((t) => t.allowMounted === true),
            allowSystem: req.targets.some((t) => t.confirmSystemName !== undefined),
          }),
        },
        { read: [req.source, ...req.targets.map((t) => t.path)], write: [] },
      )) as ClonePlan;
    },

    async startClone(...args) {
      const [req] = parseArgs('startClone', args);
      const checked = await checkClone(req);
      const started = (await request(
        { type: 'start', request: hostRequest(req, checked), confirmed: checked.confirmed },
        { read: [req.source], write: req.targets.map((t) => t.path) },
      )) as { job: number; intent: CloneIntent };
      return { job: started.job, intent: started.intent };
    },

    async pause(...args) {
      const [job] = parseArgs('pause', args);
      requireLive(job);
      await request({ type: 'pause', job });
    },

    async resume(...args) {
      const [job] = parseArgs('resume', args);
      requireLive(job);
      await request({ type: 'resume-hydration', job });
    },

    async cancel(...args) {
      const [job] = parseArgs('cancel', args);
      requireLive(job);
      await request({ type: 'cancel', job });
    },

    async setThrottle(...args) {
      const [job, change] = parseArgs('setThrottle', args);
      requireLive(job);
      await request({ type: 'set-throttle', job, ...change });
    },

    async listJobs(...args) {
      parseArgs('listJobs', args);
      const { jobs, live } = await jobRecords();
      return jobs.map((j) =>
        summary(
          j,
          live.find((l) => l.job === j.id),
        ),
      );
    },

    async resumeJob(...args) {
      const [job, req = {}] = parseArgs('resumeJob', args);
      const record = await jobRecord(job);
      if (deps.engine.running(job)) throw new ApiError('busy', `job ${job} is running`);
      // Every destination not dropped goes on, failed ones included: the engine checks
      // each (there, the same drive, safe); the backend's part is the user's confirmation.
      const drop = new Set(req.drop ?? []);
      const staying = record.destinations.filter((d) => !d.dropped && !drop.has(d.path));
      const onDrives = staying.filter((d) => d.identity.kind === 'block').map((d) => d.path);
      if (onDrives.length > 0 && req.confirmed !== true) {
        throw new ApiError(
          'refused',
          `job ${job} writes to ${onDrives.join(', ')}: the user has to confirm (confirmed: true)`,
        );
      }
      const result = (await request(
        { type: 'resume', job, options: req.options, confirmed: onDrives, drop: req.drop },
        { read: [record.source], write: staying.map((d) => d.path) },
      )) as { job: number };
      return { job: result.job };
    },

    async forgetJob(...args) {
      const [job] = parseArgs('forgetJob', args);
      if (deps.engine.running(job))
        throw new ApiError('busy', `job ${job} is running: cancel it first`);
      await request({ type: 'forget', job });
    },

    async verify(...args) {
      const [job] = parseArgs('verify', args);
      const record = await jobRecord(job);
      return (await request(
        { type: 'verify', job },
        { read: [record.source, ...record.destinations.map((d) => d.path)], write: [] },
      )) as VerifyReport;
    },

    async regionMap(...args) {
      const [job] = parseArgs('regionMap', args);
      const map = (await request({ type: 'region-map', job })) as HostEvent & {
        type: 'region-map';
      };
      return omitType(map);
    },

    async exportMap(...args) {
      const [job, format] = parseArgs('exportMap', args);
      const text = (await request({ type: 'export-map', job, format })) as string;
      const result: MapExport = {
        format,
        fileName: `drivetwin-job-${job}.${format === 'json' ? 'json' : 'map'}`,
        mimeType: format === 'json' ? 'application/json' : 'text/plain',
        text,
      };
      return result;
    },
  };

  return {
    handlers,
    async call(method, args) {
      if (typeof method !== 'string' || !(METHODS as readonly string[]).includes(method)) {
        return {
          ok: false,
          error: { code: 'invalid', message: `there is no method ${JSON.stringify(method)}` },
        };
      }
      try {
        const fn = handlers[method as DriveTwinMethod] as (...a: unknown[]) => Promise<unknown>;
        const value = await fn(...(Array.isArray(args) ? args : [args]));
        return { ok: true, value: value ?? null };
      } catch (e) {
        return { ok: false, error: engineError(e).toFailure() };
      }
    },
    onEvent(listener) {
      const l = listener as (event: DriveTwinEventName, payload: unknown) => void;
      listeners.add(l);
      return () => listeners.delete(l);
    },
    close() {
      unsubscribeEngine();
      deps.drivesChanges?.off('change', onDrives);
      listeners.clear();
    },
  };
}
