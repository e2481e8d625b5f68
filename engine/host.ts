// The engine process: runs jobs for the desktop app and speaks engine/protocol.ts
// (HostRequest in; HostReply and HostEvent out) over whatever carries it — Electron's
// parentPort (utility process), child_process IPC (plain Node), or a local socket
// authenticated by a token (the elevated engine, which connects back to the app).
//
//   node host.js --db FILE                                    (forked: IPC)
//   node host.js --db FILE --socket PATH --token-file FILE    (elevated: socket)
//        [--owner UID:GID]  files it creates are given back to this user

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Range } from './geometry';
import type { Device } from './io/device';
import type { CommitDelta, Metadata } from './metadata';
import {
  doneWithoutCopy,
  type DoneEvent,
  type EngineEvent,
  type HostAuth,
  type HostCommand,
  type HostErrorCode,
  type HostEvent,
  type HostOutbound,
  type HostReply,
  type HostRequest,
  type LiveJob,
  type RegionMapEvent,
} from './protocol';
import { CHUNK_BYTES, RegionMap } from './region-map';
import { startEvent, verifyClone } from './session';
import type { PreparedJob } from './setup';

const PROGRESS_MS = 300;

// ---------------------------------------------------------------------------
// Transports

/** One message carrier: the host never asks which kind it holds. */
export interface HostChannel {
  send(message: HostOutbound): void;
  onMessage(listener: (message: unknown) => void): void;
  onClose(listener: () => void): void;
}

interface ParentPort {
  on(event: 'message', listener: (e: { data: unknown }) => void): void;
  postMessage(message: unknown): void;
}

/** Electron utilityProcess: process.parentPort. */
export function parentPortChannel(port: ParentPort): HostChannel {
  return {
    send: (m) => port.postMessage(m),
    onMessage: (l) => port.on('message', (e) => l(e.data)),
    // The utility process dies with the app; nothing to watch.
    onClose: () => undefined,
  };
}

/** child_process.fork: process.send and 'message'. */
export function processChannel(proc: NodeJS.Process = process): HostChannel {
  return {
    send: (m) => {
      if (proc.connected) proc.send?.(m);
    },
    onMessage: (l) => proc.on('message', l),
    onClose: (l) => proc.on('disconnect', l),
  };
}

/** Newline-delimited JSON over a stream socket. */
export function socketChannel(socket: net.Socket): HostChannel {
  const listeners: Array<(m: unknown) => void> = [];
  let partial = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        socket.destroy(); // a peer that sends garbage is not our app
        return;
      }
      for (const l of listeners) l(message);
    }
  });
  socket.on('error', () => socket.destroy());
  return {
    send: (m) => {
      if (!socket.destroyed) socket.write(JSON.stringify(m) + '\n');
    },
    onMessage: (l) => listeners.push(l),
    onClose: (l) => socket.on('close', l),
  };
}

/** Connects back to the app's socket and proves who we are with the token. */
export async function connectBack(socketPath: string, token: string): Promise<HostChannel> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(socketPath, () => resolve(s));
    s.once('error', reject);
  });
  const auth: HostAuth = { kind: 'auth', token };
  socket.write(JSON.stringify(auth) + '\n');
  return socketChannel(socket);
}

// ---------------------------------------------------------------------------
// Region runs: flat [first, count, …]

export function runsOf(regions: Iterable<number>): number[] {
  const sorted = [...new Set(regions)].sort((a, b) => a - b);
  const out: number[] = [];
  for (const r of sorted) {
    const n = out.length;
    if (n > 0 && out[n - 2] + out[n - 1] === r) out[n - 1] += 1;
    else out.push(r, 1);
  }
  return out;
}

function mapRuns(map: RegionMap): number[] {
  return map.runs().flatMap((r) => [r.first, r.count]);
}

function rangeRegions(ranges: Range[], regionSize: number, regionsTotal: number): number[] {
  const regions: number[] = [];
  for (const r of ranges) {
    if (r.length <= 0) continue;
    const first = Math.floor(r.offset / regionSize);
    const last = Math.min(Math.floor((r.offset + r.length - 1) / regionSize), regionsTotal - 1);
    for (let i = first; i <= last; i++) regions.push(i);
  }
  return regions;
}

/**
 * Follows one job's map for the app: committed regions (seen at each commit),
 * regions being hydrated (seen as source reads), unreadable extents. Bounded: the
 * hydrating list holds at most what was read since the last commit.
 */
class RegionTracker {
  private readonly committed: RegionMap;
  private newlyHydrated: number[] = [];
  private newlyUnreadable: number[] = [];
  private reading: Array<{ first: number; count: number }> = [];
  private lastHydrating = '';

  constructor(
    private readonly job: number,
    private readonly regionSize: number,
    private readonly regionsTotal: number,
    initial: RegionMap,
    private readonly unreadable: Range[],
  ) {
    this.committed = new RegionMap(regionsTotal);
    this.committed.load([{ index: 0, bytes: initial.bits }]);
  }

  full(): RegionMapEvent {
    return this.message(
      true,
      mapRuns(this.committed),
      runsOf(rangeRegions(this.unreadable, this.regionSize, this.regionsTotal)),
    );
  }

  read(offset: number, length: number): void {
    const first = Math.floor(offset / this.regionSize);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / this.regionSize);
    this.reading.push({ first, count: last - first + 1 });
  }

  /** After a successful commit: what the delta set that was not set before. */
  committedDelta(delta: CommitDelta): void {
    const bits = this.committed.bits;
    for (const chunk of delta.chunks) {
      const base = chunk.index * CHUNK_BYTES;
      for (let i = 0; i < chunk.bytes.length && base + i < bits.length; i++) {
        const added = chunk.bytes[i] & ~bits[base + i];
        if (added === 0) continue;
        for (let b = 0; b < 8; b++) {
          if (added & (1 << b)) this.newlyHydrated.push((base + i) * 8 + b);
        }
      }
    }
    this.committed.load(delta.chunks);
    this.unreadable.push(...delta.unreadable);
    this.newlyUnreadable.push(
      ...rangeRegions(delta.unreadable, this.regionSize, this.regionsTotal),
    );
  }

  /** The change since the last call, or null when nothing changed. */
  delta(): RegionMapEvent | null {
    this.reading = this.reading.filter((r) => {
      for (let i = r.first; i < r.first + r.count; i++) if (!this.committed.has(i)) return true;
      return false;
    });
    const hydrating = this.hydratingRuns();
    const key = hydrating.join(',');
    if (
      this.newlyHydrated.length === 0 &&
      this.newlyUnreadable.length === 0 &&
      key === this.lastHydrating
    ) {
      return null;
    }
    this.lastHydrating = key;
    const message = this.message(false, runsOf(this.newlyHydrated), runsOf(this.newlyUnreadable));
    this.newlyHydrated = [];
    this.newlyUnreadable = [];
    return message;
  }

  /** The job ended: nothing is in flight any more. */
  stopped(): void {
    this.reading = [];
  }

  private hydratingRuns(): number[] {
    const regions: number[] = [];
    for (const r of this.reading) {
      for (let i = r.first; i < r.first + r.count; i++) if (!this.committed.has(i)) regions.push(i);
    }
    return runsOf(regions);
  }

  private message(reset: boolean, hydrated: number[], unreadable: number[]): RegionMapEvent {
    return {
      type: 'region-map',
      job: this.job,
      reset,
      regionSize: this.regionSize,
      regionsTotal: this.regionsTotal,
      hydrated,
      hydrating: this.hydratingRuns(),
      unreadable,
    };
  }
}

// ---------------------------------------------------------------------------
// The host

class HostError extends Error {
  constructor(
    readonly code: HostErrorCode,
    message: string,
  ) {
    super(message);
  }
}

interface RunningJob {
  prepared: PreparedJob;
  tracker: RegionTracker;
  paused: boolean;
  throttle: { percent: number; maxRate: number };
  finished: Promise<void>;
}

export interface HostOptions {
  dbPath: string;
  /** Elevated: files this host creates are handed to this user. */
  owner?: { uid: number; gid: number };
  elevated?: boolean;
  progressMs?: number;
  /** Called when the host has nothing left to do after shutdown or a closed channel. */
  exit?: () => void;
}

export class EngineHost {
  private meta: Metadata | null = null;
  /** The same database, with every successful commit reported to the job's tracker. */
  private observed: Metadata | null = null;
  private readonly jobs = new Map<number, RunningJob>();
  private readonly verifying = new Set<number>();
  private closing = false;

  constructor(
    private readonly channel: HostChannel,
    private readonly options: HostOptions,
  ) {
    channel.onMessage((m) => void this.receive(m));
    channel.onClose(() => void this.shutdown());
    channel.send({ kind: 'hello', pid: process.pid, elevated: Boolean(options.elevated) });
  }

  private async receive(message: unknown): Promise<void> {
    if (!isRequest(message)) return; // not ours: the protocol says nothing back
    let reply: HostReply;
    try {
      const result = await this.handle(message.command);
      reply = { kind: 'reply', id: message.id, ok: true, result: result ?? null };
    } catch (e) {
      const code = errorCode(e);
      reply = { kind: 'reply', id: message.id, ok: false, error: { code, message: errorText(e) } };
    }
    this.channel.send(reply);
  }

  private async handle(command: HostCommand): Promise<unknown> {
    if (this.closing && command.type !== 'shutdown') {
      throw new HostError('busy', 'the engine is shutting down');
    }
    switch (command.type) {
      case 'start':
        return this.start(command);
      case 'resume':
        return this.resumeJob(command);
      case 'pause':
        return this.setPaused(command.job, true);
      case 'resume-hydration':
        return this.setPaused(command.job, false);
      case 'cancel':
        this.running(command.job).prepared.job.cancel();
        return null;
      case 'set-throttle':
        return this.setThrottle(command);
      case 'verify':
        return this.verify(command.job);
      case 'list-jobs':
        return this.listJobs();
      case 'forget':
        return this.forget(command.job);
      case 'region-map':
        return this.regionMap(command.job);
      case 'export-map':
        return this.exportMap(command.job, command.format);
      case 'shutdown':
        void this.shutdown();
        return null;
      default:
        throw new HostError('invalid', `unknown command ${JSON.stringify(command)}`);
    }
  }

  private database(): Metadata {
    if (this.meta) return this.meta;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Metadata } = require('./metadata') as typeof import('./metadata');
    const meta = Metadata.open(this.options.dbPath);
    for (const file of this.databaseFiles()) this.giveBack(file);
    const observed = Object.create(meta) as Metadata;
    observed.commit = (job: number, delta: CommitDelta) => {
      meta.commit(job, delta);
      this.jobs.get(job)?.tracker.committedDelta(delta);
    };
    this.meta = meta;
    this.observed = observed;
    return meta;
  }

  private databaseFiles(): string[] {
    return ['', '-wal', '-shm'].map((suffix) => this.options.dbPath + suffix);
  }

  /** The elevated engine runs as root: what it creates goes back to the user who asked. */
  private giveBack(file: string): void {
    const owner = this.options.owner;
    if (!owner) return;
    try {
      fs.chownSync(file, owner.uid, owner.gid);
    } catch {
      // not there (yet): nothing to give back
    }
  }

  private confirmer(confirmed: string[]) {
    const real = (p: string): string => {
      try {
        return fs.realpathSync(p);
      } catch {
        return path.resolve(p);
      }
    };
    const allowed = new Set(confirmed.map(real));
    // The app asked the user; the engine only checks it was asked about every drive.
    return async (drives: Array<{ path: string }>): Promise<boolean> =>
      drives.every((d) => allowed.has(real(d.path)));
  }

  private async start(command: Extract<HostCommand, { type: 'start' }>): Promise<unknown> {
    const meta = this.database();
    const created = command.request.destinations.filter((d) => !fs.existsSync(d));
    const { setUpClone, DEFAULT_OPTIONS } = await import('./setup');
    const prepared = await setUpClone(
      this.observed as Metadata,
      { ...command.request, options: { ...DEFAULT_OPTIONS, ...command.request.options } },
      this.confirmer(command.confirmed),
    );
    for (const file of [...created, ...this.databaseFiles()]) this.giveBack(file);
    return this.launch(meta, prepared);
  }

  private async resumeJob(command: Extract<HostCommand, { type: 'resume' }>): Promise<unknown> {
    const meta = this.database();
    if (this.jobs.has(command.job)) throw new HostError('busy', `job ${command.job} is running`);
    if (!meta.getJob(command.job))
      throw new HostError('not-found', `there is no job ${command.job}`);
    const { setUpResume } = await import('./setup');
    const prepared = await setUpResume(
      this.observed as Metadata,
      command.job,
      this.confirmer(command.confirmed),
      command.options,
    );
    return this.launch(meta, prepared);
  }

  private launch(meta: Metadata, prepared: PreparedJob): { job: number; resumed: boolean } {
    const { job, record } = prepared;
    const initial = prepared.resumed ? meta.loadBitmap(record) : new RegionMap(record.regionsTotal);
    const tracker = new RegionTracker(
      job.id,
      record.regionSize,
      record.regionsTotal,
      initial,
      meta.loadUnreadable(job.id),
    );
    watchReads(prepared.source, tracker);
    const running: RunningJob = {
      prepared,
      tracker,
      paused: false,
      throttle: { percent: record.options.throttle, maxRate: record.options.maxRate },
      finished: Promise.resolve(),
    };
    this.jobs.set(job.id, running);
    this.emit(startEvent(prepared));
    this.emit(tracker.full());
    // Progress comes from the ticker, with the throttle in force.
    job.on('event', (e: EngineEvent) => {
      if (e.type !== 'progress') this.emit(e);
    });
    const ticker = setInterval(() => this.tick(running), this.options.progressMs ?? PROGRESS_MS);
    running.finished = this.run(running).finally(() => clearInterval(ticker));
    return { job: job.id, resumed: prepared.resumed };
  }

  private async run(running: RunningJob): Promise<void> {
    const { prepared } = running;
    const { job, record } = prepared;
    let done: DoneEvent;
    try {
      done = await job.run();
    } catch (e) {
      this.emit({ type: 'error', job: job.id, message: errorText(e), fatal: true });
      done = doneWithoutCopy(job.id, 'failed');
    }
    running.tracker.stopped();
    this.tick(running);
    if (done.state === 'done' && record.options.verify) {
      try {
        await verifyClone(prepared, done, this.verifyProgress(job.id, record.sourceSize));
      } catch (e) {
        this.emit({ type: 'error', job: job.id, message: `verify: ${errorText(e)}`, fatal: false });
      }
    }
    await prepared.close();
    this.jobs.delete(job.id);
    this.emit(done);
  }

  private tick(running: RunningJob): void {
    const progress = running.prepared.job.progress();
    this.emit({ ...progress, throttle: { ...running.throttle } });
    const delta = running.tracker.delta();
    if (delta) this.emit(delta);
  }

  private running(id: number): RunningJob {
    const running = this.jobs.get(id);
    if (!running) throw new HostError('not-found', `job ${id} is not running in this engine`);
    return running;
  }

  private setPaused(id: number, paused: boolean): null {
    const running = this.running(id);
    if (paused) running.prepared.job.pause();
    else running.prepared.job.resume();
    running.paused = paused;
    this.tick(running);
    return null;
  }

  private async setThrottle(
    command: Extract<HostCommand, { type: 'set-throttle' }>,
  ): Promise<null> {
    const running = this.running(command.job);
    const { throttleProblem } = await import('./throttle');
    const change: { percent?: number; maxRate?: number } = {};
    if (command.percent !== undefined) change.percent = command.percent;
    if (command.maxRate !== undefined) change.maxRate = command.maxRate;
    const problem = throttleProblem(change);
    if (problem) throw new HostError('invalid', problem);
    running.prepared.job.setThrottle(change);
    running.throttle = { ...running.throttle, ...change };
    this.tick(running);
    return null;
  }

  private listJobs(): { jobs: unknown[]; live: LiveJob[] } {
    const meta = this.database();
    return {
      jobs: meta.listJobs(),
      live: [...this.jobs.entries()].map(([job, r]) => ({ job, paused: r.paused })),
    };
  }

  private forget(id: number): null {
    const meta = this.database();
    const record = meta.getJob(id);
    if (!record) throw new HostError('not-found', `there is no job ${id}`);
    if (this.jobs.has(id) || record.state === 'running') {
      throw new HostError('busy', `job ${id} is running: cancel it first`);
    }
    meta.forget(id);
    return null;
  }

  private regionMap(id: number): RegionMapEvent {
    const running = this.jobs.get(id);
    if (running) return running.tracker.full();
    const meta = this.database();
    const record = meta.getJob(id);
    if (!record) throw new HostError('not-found', `there is no job ${id}`);
    return new RegionTracker(
      id,
      record.regionSize,
      record.regionsTotal,
      meta.loadBitmap(record),
      meta.loadUnreadable(id),
    ).full();
  }

  private async exportMap(id: number, format: 'json' | 'ddrescue'): Promise<string> {
    const meta = this.database();
    const record = meta.getJob(id);
    if (!record) throw new HostError('not-found', `there is no job ${id}`);
    const { regionMapReport, ddrescueMapfile } = await import('./map-export');
    const report = regionMapReport(record, meta.loadBitmap(record), meta.loadUnreadable(id));
    return format === 'json' ? JSON.stringify(report, null, 2) + '\n' : ddrescueMapfile(report);
  }

  private async verify(id: number): Promise<unknown> {
    const meta = this.database();
    const record = meta.getJob(id);
    if (!record) throw new HostError('not-found', `there is no job ${id}`);
    if (this.jobs.has(id) || record.state === 'running') {
      throw new HostError('busy', `job ${id} is running: verify it when it is done`);
    }
    if (record.state !== 'done') {
      throw new HostError(
        'refused',
        `job ${id} is not finished (${record.state}): resume it first`,
      );
    }
    if (this.verifying.has(id)) throw new HostError('busy', `job ${id} is already being verified`);
    this.verifying.add(id);
    const opened: Device[] = [];
    const started = performance.now();
    try {
      const { openReadable } = await import('./setup');
      const source = await openReadable(record.source);
      opened.push(source);
      for (const d of record.destinations.filter((d) => !d.failed)) {
        opened.push(await openReadable(d.path, 'destination'));
      }
      const { verify } = await import('./verify');
      const { makeGeometry } = await import('./geometry');
      const result = await verify(
        source,
        opened.slice(1),
        makeGeometry(record.sourceSize, record.regionSize),
        {
          unreadable: meta.loadUnreadable(id),
          onProgress: this.verifyProgress(id, record.sourceSize),
        },
      );
      return {
        job: id,
        verified: Object.values(result.mismatches).every((r) => r.length === 0),
        mismatches: result.mismatches,
        skipped: result.skipped,
        seconds: (performance.now() - started) / 1000,
      };
    } finally {
      this.verifying.delete(id);
      await Promise.all(opened.map((d) => d.close().catch(() => undefined)));
    }
  }

  /** Reports verify progress, at most once a progress period (and at the end). */
  private verifyProgress(id: number, size: number): (bytesDone: number) => void {
    let last = 0;
    return (bytesDone) => {
      const t = performance.now();
      if (t - last < (this.options.progressMs ?? PROGRESS_MS) && bytesDone < size) return;
      last = t;
      this.emit({ type: 'verify-progress', job: id, bytesDone, bytesTotal: size });
    };
  }

  private emit(event: HostEvent): void {
    this.channel.send({ kind: 'event', event });
  }

  /** Stops every job (what is in flight is committed, the jobs stay resumable), then exits. */
  async shutdown(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const running of this.jobs.values()) running.prepared.job.cancel();
    await Promise.all([...this.jobs.values()].map((r) => r.finished.catch(() => undefined)));
    try {
      this.meta?.close();
    } catch {
      // closing is best effort: every commit already happened
    }
    (this.options.exit ?? (() => process.exit(0)))();
  }
}

/** Sees every source read, so the app can show which regions are in flight. */
function watchReads(source: Device, tracker: RegionTracker): void {
  const read = source.read.bind(source);
  source.read = (buffer: Buffer, offset: number) => {
    tracker.read(offset, buffer.length);
    return read(buffer, offset);
  };
}

function isRequest(m: unknown): m is HostRequest {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as Partial<HostRequest>;
  return (
    r.kind === 'request' &&
    Number.isSafeInteger(r.id) &&
    typeof r.command === 'object' &&
    r.command !== null &&
    typeof (r.command as { type?: unknown }).type === 'string'
  );
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function errorCode(e: unknown): HostErrorCode {
  if (e instanceof HostError) return e.code;
  const name = (e as Error | undefined)?.constructor?.name;
  if (name === 'Refused') return 'refused';
  return 'engine';
}

// ---------------------------------------------------------------------------
// Entry point

function parseOwner(text: string | undefined): { uid: number; gid: number } | undefined {
  if (!text) return undefined;
  const m = /^(\d+):(\d+)$/.exec(text);
  if (!m) throw new Error(`--owner takes UID:GID, not "${text}"`);
  return { uid: Number(m[1]), gid: Number(m[2]) };
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string' },
      socket: { type: 'string' },
      'token-file': { type: 'string' },
      owner: { type: 'string' },
      'progress-ms': { type: 'string' },
    },
    strict: true,
  });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { defaultDatabasePath } = require('./metadata') as typeof import('./metadata');
  const dbPath = values.db ?? process.env.DRIVETWIN_DB ?? defaultDatabasePath();
  const progressMs = values['progress-ms'] ? Number(values['progress-ms']) : undefined;
  const owner = parseOwner(values.owner);
  let channel: HostChannel;
  if (values.socket) {
    if (!values['token-file']) throw new Error('--socket needs --token-file');
    const token = fs.readFileSync(values['token-file'], 'utf8').trim();
    channel = await connectBack(values.socket, token);
  } else {
    const port = (process as NodeJS.Process & { parentPort?: ParentPort }).parentPort;
    if (port) channel = parentPortChannel(port);
    else if (process.send) channel = processChannel();
    else throw new Error('the engine host is started by DriveTwin (no IPC channel, no --socket)');
  }
  const elevated = process.getuid?.() === 0 || Boolean(values.socket);
  new EngineHost(channel, { dbPath, owner, elevated, progressMs });
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e: Error) => {
    process.stderr.write(`drivetwin engine host: ${e.message}\n`);
    process.exit(1);
  });
}
