// The handlers: plain functions implementing the contract in preload/api.ts. Bound to
// ipcMain by main/ipc.ts and to a WebSocket by main/web-bridge.ts; neither adds logic.
//
// Every argument is validated (main/api-args.ts: zod, strict, unknown keys are errors)
// before anything reaches the engine, and every drive target must carry the user's
// explicit confirmation (main/api-drives.ts). The engine checks everything again; this
// is where the user is told.

import type { Drive } from '../engine/drives/classify';
import type { SystemSnapshot } from '../engine/drives/topology';
import { driveContents, runProgram, type Run } from '../engine/drives/contents';
import { type JobRecord, canResume } from '../engine/store/job-record';
import type { HostCloneRequest, HostCommand, HostEvent, LiveJob } from '../engine/host/protocol';
import type {
  Capabilities,
  ClonePlan,
  CloneRequest,
  DriveTwinMethod,
  JobSummary,
  MapExport,
  MethodResult,
  Reply,
  Unsubscribe,
  VerifyReport,
} from '../preload/api';
import type {
  CloneIntent,
  DriveInfo,
  DrivesChanged,
  DriveTwinEventName,
  DriveTwinEvents,
  UsedSpaceInfo,
} from '../preload/events';
import { METHODS } from '../preload/api';
import { parseArgs } from './api-args';
import {
  checkClone,
  checkSource,
  drivesPicture,
  checkImageFile,
  contentsPath,
  describeDownload,
  filesOnly,
  imageDrive,
  requireSource,
  sourceShape,
  toDriveInfo,
} from './api-drives';
import { isUrl } from '../engine/io/http/url';
import { ApiError, engineError } from './api-error';
import { forwardEngineEvent, omitType, type Emit } from './api-events';
import type { DrivesDiff } from './drive-watcher';
import { ejectDrive, type EjectTool } from './eject';
import { browsePlaces, listFolder, type Viewer } from './file-browser';
import { PickedImages } from './picked-images';
import { serveSocketPath } from './serve-socket';

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
  /**
   * The picture of the system the last drive list came from (main/drive-watcher.ts): the
   * handlers' safety checks look in it rather than ask diskutil or PowerShell while the
   * user waits. Absent or null: read once per call, without blocking.
   */
  snapshot?: () => SystemSnapshot | null;
  /** The drive watcher, for 'drives-changed'. */
  drivesChanges?: DrivesChanges;
  /** null: no native dialogs (the web bridge); the renderer offers a text field. */
  dialogs: Dialogs | null;
  transport: Capabilities['transport'];
  version?: string;
  /**
   * The browser's file dialog (listFolder): whose files it shows (null: this process's
   * user). Absent: no file dialog (Electron has native ones).
   */
  fileBrowser?: { viewer: Viewer | null; places?: string[] };
  /** How a drive is made safe to remove (main/eject.ts's ejectTool()); absent: null. */
  eject?: EjectTool;
  /** Runs a program (blkid, sfdisk, udisksctl); tests pass a fake. */
  run?: Run;
  /** Where picked image files are kept across restarts (pickedImagesFile); absent: not kept. */
  pickedImagesFile?: string;
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

// ---------------------------------------------------------------------------
// Requests to the engine

/** The engine's form of a clone request. */
function hostRequest(
  req: CloneRequest,
  allow: { allowMounted: boolean; allowSystem: boolean; start?: boolean },
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
    ...(req.sha256 !== undefined ? { sha256: req.sha256 } : {}),
    // A socket only for a copy that starts: a plan writes nothing.
    serve: req.serve && allow.start ? serveSocketPath() : undefined,
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
  /** Image files the user picked, per list: they join the drive list. */
  const images = new PickedImages(deps.pickedImagesFile ?? null);
  const run = deps.run ?? runProgram;

  const picture = (): Promise<() => SystemSnapshot> => drivesPicture(deps.snapshot?.() ?? null);

  const unsubscribeEngine = deps.engine.onEvent((e) => forwardEngineEvent(e, emit));
  const onDrives = async (diff: DrivesDiff): Promise<void> => {
    const snapshot = await picture();
    const payload: DrivesChanged = {
      drives: (await images.withDrives(diff.drives)).map((d) => toDriveInfo(d, {}, snapshot)),
      added: diff.added,
      removed: diff.removed,
      changed: diff.changed,
    };
    emit('drives-changed', payload);
  };
  deps.drivesChanges?.on('change', onDrives);

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
      resumable: !live && canResume(record),
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
    if (isUrl(chosen)) {
      if (forWriting)
        throw new ApiError('refused', 'a download is only read: it can’t be a target');
      const described = await describeDownload(chosen);
      images.addDownload(chosen, described);
      return toDriveInfo({ ...described.drive, pickedAs: ['source'] }, {}, await picture());
    }
    const file = checkImageFile(chosen, forWriting);
    const role = forWriting ? 'target' : 'source';
    images.add(file, role);
    return toDriveInfo({ ...(await imageDrive(file)), pickedAs: [role] }, {}, await picture());
  }

  const places = deps.fileBrowser
    ? (deps.fileBrowser.places ?? browsePlaces(deps.fileBrowser.viewer))
    : [];

  const handlers: Handlers = {
    async capabilities(...args) {
      parseArgs('capabilities', args);
      return {
        transport: deps.transport,
        dialogs: deps.dialogs !== null,
        platform: process.platform,
        version: deps.version ?? '0.0.0',
        fileBrowser: deps.fileBrowser !== undefined,
        eject: deps.eject ?? null,
        notifications: deps.transport === 'electron' ? 'app' : 'page',
      };
    },

    async listDrives(...args) {
      const [query = {}] = parseArgs('listDrives', args);
      const drives = await images.withDrives(await deps.listDrives());
      const { sourceSize, partitions } = query.source
        ? await sourceShape(query.source, drives, images.download(query.source))
        : { sourceSize: undefined, partitions: null };
      const snapshot = await picture();
      return drives.map((d) => toDriveInfo(d, query, snapshot, sourceSize, partitions));
    },

    async pickImageToOpen(...args) {
      const [typed] = parseArgs('pickImageToOpen', args);
      return pickImage(typed, deps.dialogs ? () => deps.dialogs!.open() : undefined, false);
    },

    async pickImageToSave(...args) {
      const [typed] = parseArgs('pickImageToSave', args);
      return pickImage(typed, deps.dialogs ? () => deps.dialogs!.save() : undefined, true);
    },

    async forgetImage(...args) {
      const [file, role] = parseArgs('forgetImage', args);
      images.forget(file, role);
    },

    async driveContents(...args) {
      const [p] = parseArgs('driveContents', args);
      const { path: file, size } = contentsPath(p, await deps.listDrives(), images.has(p));
      return driveContents(file, size, { run });
    },

    async listFolder(...args) {
      const [dir] = parseArgs('listFolder', args);
      if (!deps.fileBrowser) {
        throw new ApiError('refused', 'no file dialog here: the system’s own dialogs are used');
      }
      return listFolder(dir, { places, viewer: deps.fileBrowser.viewer });
    },

    async ejectDrive(...args) {
      const [p] = parseArgs('ejectDrive', args);
      return ejectDrive(p, await deps.listDrives(), deps.eject ?? null, run);
    },

    async usedSpace(...args) {
      const [p, regionSize] = parseArgs('usedSpace', args);
      const source = checkSource(p, await deps.listDrives(), await picture());
      return (await request(
        { type: 'used-space', source, ...(regionSize !== undefined ? { regionSize } : {}) },
        { read: [source], write: [] },
      )) as UsedSpaceInfo;
    },

    async planClone(...args) {
      const [req] = parseArgs('planClone', args);
      requireSource(req.source);
      return (await request(
        {
          type: 'plan',
          request: hostRequest(req, {
            allowMounted: req.targets.some((t) => t.allowMounted === true),
            allowSystem: req.targets.some((t) => t.confirmSystemName !== undefined),
          }),
        },
        { read: filesOnly([req.source, ...req.targets.map((t) => t.path)]), write: [] },
      )) as ClonePlan;
    },

    async startClone(...args) {
      const [req] = parseArgs('startClone', args);
      // A download typed straight into the request (not picked) is asked about here.
      const download =
        images.download(req.source) ??
        (isUrl(req.source) ? await describeDownload(req.source) : null);
      const checked = await checkClone(req, await deps.listDrives(), await picture(), download);
      const started = (await request(
        {
          type: 'start',
          request: hostRequest(req, { ...checked, start: true }),
          confirmed: checked.confirmed,
        },
        { read: filesOnly([req.source]), write: req.targets.map((t) => t.path) },
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
        { read: filesOnly([record.source]), write: staying.map((d) => d.path) },
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
        {
          read: filesOnly([record.source, ...record.destinations.map((d) => d.path)]),
          write: [],
        },
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
