// The engine process: runs job sessions for the desktop app and speaks
// engine/host/protocol.ts (HostRequest in; HostReply and the sessions' events out) over
// whatever carries it (engine/host/transport.ts). It forwards what the sessions say and
// keeps no job state of its own: paused, throttle and progress are read from them.
//
//   node host.js --db FILE                                    (forked: IPC)
//   node host.js --db FILE --socket PATH --token-file FILE    (elevated: socket)
//        [--owner UID:GID]  files it creates are given back to this user

import fs from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { drivePlatform } from '../drives/platform';
import { forgetKeptBuffers } from '../io/buffers';
import type { Metadata } from '../store/metadata';
import { Refused } from '../io/open';
import { canonical, type SessionRequest } from '../session/plan';
import type { DoneEvent, EngineEvent } from '../events';
import type {
  ClonePlan,
  HostCloneRequest,
  HostAuth,
  HostCommand,
  HostErrorCode,
  HostReply,
  HostRequest,
  LiveJob,
} from './protocol';
import type { JobSession } from '../session/session';
import { type Channel, frame, parentChannel, socketChannel } from './transport';

const PROGRESS_MS = 300;

class HostError extends Error {
  constructor(
    readonly code: HostErrorCode,
    message: string,
  ) {
    super(message);
  }
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

/** For one run of a job, not the job's: eject its drives at the end, serve it while it copies. */
interface RunOptions {
  eject?: boolean;
  serve?: string;
}

export class EngineHost {
  private meta: Metadata | null = null;
  private readonly sessions = new Map<number, { session: JobSession; ended: Promise<DoneEvent> }>();
  private closing = false;

  constructor(
    private readonly channel: Channel,
    private readonly options: HostOptions,
  ) {
    channel.onMessage((m) => void this.receive(m));
    channel.onClose(() => void this.shutdown());
    const { canEject } = drivePlatform();
    channel.send({
      kind: 'hello',
      pid: process.pid,
      elevated: Boolean(options.elevated),
      canEject,
    });
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
      case 'plan':
        return this.plan(command.request);
      case 'start':
        return this.start(
          { kind: 'clone', ...command.request, options: command.request.options },
          command.confirmed,
          { eject: command.request.eject, serve: command.request.serve },
        );
      case 'resume':
        return this.start(
          { kind: 'resume', job: command.job, options: command.options ?? {}, drop: command.drop },
          command.confirmed,
          { eject: command.eject },
        );
      case 'verify':
        return this.verify(command.job);
      case 'pause':
        this.running(command.job).pause();
        return null;
      case 'resume-hydration':
        this.running(command.job).resume();
        return null;
      case 'cancel':
        this.running(command.job).cancel();
        return null;
      case 'set-throttle': {
        const { percent, maxRate } = command;
        this.running(command.job).setThrottle({
          ...(percent !== undefined ? { percent } : {}),
          ...(maxRate !== undefined ? { maxRate } : {}),
        });
        return null;
      }
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
    const { Metadata } = require('../store/metadata') as typeof import('../store/metadata');
    this.meta = Metadata.open(this.options.dbPath);
    for (const file of this.databaseFiles()) this.giveBack(file);
    return this.meta;
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

  /** The app asked the user; the engine only checks it was asked about every drive. */
  private confirmer(confirmed: string[]) {
    const allowed = new Set(confirmed.map(canonical));
    return async (drives: Array<{ path: string }>): Promise<boolean> =>
      drives.every((d) => allowed.has(canonical(d.path)));
  }

  /** What a clone would do, checked now, nothing written or claimed. */
  private async plan(request: HostCloneRequest): Promise<ClonePlan> {
    const { plan } = await import('../session/plan');
    const { closeAll } = await import('../io/open');
    const planned = await plan(this.database(), { kind: 'clone', ...request });
    await closeAll([planned.source]);
    return {
      intent: planned.intent,
      job: planned.record?.id ?? null,
      bytesTotal: planned.geometry.size,
      sizeKnown: Number.isFinite(planned.geometry.regionCount),
      regionSize: planned.geometry.regionSize,
      regionsTotal: Number.isFinite(planned.geometry.regionCount)
        ? planned.geometry.regionCount
        : 0,
      regionsHydrated: planned.record?.regionsHydrated ?? 0,
      partitions: planned.partitions && {
        table: planned.partitions.kind,
        end: planned.partitions.partitionsEnd,
        fitSize: planned.partitions.fitSize,
      },
    };
  }

  private async start(request: SessionRequest, confirmed: string[], run: RunOptions = {}) {
    const { session } = await this.launch(request, confirmed, run);
    return { job: session.id, intent: session.intent };
  }

  private async launch(request: SessionRequest, confirmed: string[], run: RunOptions = {}) {
    const meta = this.database();
    if (request.kind === 'resume' && this.sessions.has(request.job)) {
      throw new HostError('busy', `job ${request.job} is running`);
    }
    const created =
      request.kind === 'clone' ? request.destinations.filter((d) => !fs.existsSync(d)) : [];
    const { JobSession } = await import('../session/session');
    const session = await JobSession.open(meta, request, this.confirmer(confirmed), {
      progressMs: this.options.progressMs ?? PROGRESS_MS,
      eject: run.eject ?? false,
      // The elevated engine serves its user: the socket is handed to them.
      serve: run.serve ? { socket: run.serve, owner: this.options.owner } : undefined,
    });
    for (const file of [...created, ...this.databaseFiles()]) this.giveBack(file);
    session.on('event', (e: EngineEvent) => this.emit(e));
    const ended = session.run().finally(() => {
      this.sessions.delete(session.id);
      // A session leaves tens of MiB of buffers and decoder state behind: with nothing
      // running, let them go now rather than whenever the heap next fills.
      if (this.sessions.size > 0) return;
      forgetKeptBuffers();
      global.gc?.();
    });
    this.sessions.set(session.id, { session, ended });
    return { session, ended };
  }

  /** Verifies a copied job in a session of its own, and answers when it ended. */
  private async verify(id: number) {
    const { ended } = await this.launch(
      { kind: 'resume', job: id, options: {}, verifyOnly: true },
      [],
    );
    const done = await ended;
    return {
      job: id,
      verified: done.verified === true,
      mismatches: Object.fromEntries(
        (done.destinations ?? []).map((d) => [d.path, d.mismatches ?? []]),
      ),
      skipped: [],
      seconds: done.verifySeconds ?? 0,
    };
  }

  private running(id: number): JobSession {
    const running = this.sessions.get(id);
    if (!running) throw new HostError('not-found', `job ${id} is not running in this engine`);
    return running.session;
  }

  private listJobs(): { jobs: unknown[]; live: LiveJob[] } {
    return {
      jobs: this.database().listJobs(),
      live: [...this.sessions.values()].map(({ session }) => ({
        job: session.id,
        paused: session.paused,
      })),
    };
  }

  private forget(id: number): null {
    const meta = this.database();
    const record = meta.getJob(id);
    if (!record) throw new HostError('not-found', `there is no job ${id}`);
    if (this.sessions.has(id) || record.state === 'running' || record.state === 'verifying') {
      throw new HostError('busy', `job ${id} is running: cancel it first`);
    }
    meta.forget(id);
    return null;
  }

  private async regionMap(id: number) {
    const running = this.sessions.get(id);
    if (running) return running.session.regionMap();
    const meta = this.database();
    const record = meta.getJob(id);
    if (!record) throw new HostError('not-found', `there is no job ${id}`);
    const { RegionEvents } = await import('../hydration/region-events');
    return new RegionEvents(
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
    const { regionMapReport, ddrescueMapfile } = await import('../store/map-export');
    const report = regionMapReport(record, meta.loadBitmap(record), meta.loadUnreadable(id));
    return format === 'json' ? JSON.stringify(report, null, 2) + '\n' : ddrescueMapfile(report);
  }

  private emit(event: EngineEvent): void {
    this.channel.send({ kind: 'event', event });
  }

  /** Stops every job (what is in flight is committed, the jobs stay resumable), then exits. */
  async shutdown(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const { session } of this.sessions.values()) session.cancel();
    await Promise.all([...this.sessions.values()].map((r) => r.ended.catch(() => undefined)));
    try {
      this.meta?.close();
    } catch {
      // closing is best effort: every commit already happened
    }
    (this.options.exit ?? (() => process.exit(0)))();
  }
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
  if (e instanceof Refused) return 'refused';
  const name = (e as Error | undefined)?.constructor?.name;
  if (name === 'MetadataError') return 'refused';
  return 'engine';
}

/** Connects back to the app's socket and proves who we are with the token. */
export async function connectBack(socketPath: string, token: string): Promise<Channel> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(socketPath, () => resolve(s));
    s.once('error', reject);
  });
  const auth: HostAuth = { kind: 'auth', token };
  socket.write(frame(auth));
  return socketChannel(socket);
}

// ---------------------------------------------------------------------------
// Entry point

function parseOwner(text: string | undefined): { uid: number; gid: number } | undefined {
  if (!text) return undefined;
  const m = /^(\d+):(\d+)$/.exec(text);
  if (!m) throw new Error(`--owner takes UID:GID, not "${text}"`);
  return { uid: Number(m[1]), gid: Number(m[2]) };
}

/**
 * The engine's memory tuning, set from inside whatever started it: Electron's utility
 * process ignores execArgv, and the elevated engine is started by the OS's prompt.
 * - A young generation that never grows: V8 sizes it once, when the heap is made, so
 *   `--max-semi-space-size` comes too late here; `--semi-space-growth-factor` is read at
 *   every growth, and 1 keeps the new space at its first size (2 MiB under Node 20,
 *   where the default grows to 32 MiB).
 * - `gc`, which the host calls when its last job ends: `--expose-gc` gives it to contexts
 *   made after the flag is set, so one is made to fetch it.
 */
export function tuneMemory(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  if (typeof global.gc === 'function') return;
  v8.setFlagsFromString('--expose-gc');
  global.gc = vm.runInNewContext('gc') as typeof global.gc;
}

export async function main(argv: string[]): Promise<void> {
  tuneMemory();
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
  const { databasePath } = require('../store/database') as typeof import('../store/database');
  const dbPath = databasePath(values.db);
  const progressMs = values['progress-ms'] ? Number(values['progress-ms']) : undefined;
  const owner = parseOwner(values.owner);
  let channel: Channel | null;
  if (values.socket) {
    if (!values['token-file']) throw new Error('--socket needs --token-file');
    const token = fs.readFileSync(values['token-file'], 'utf8').trim();
    channel = await connectBack(values.socket, token);
  } else {
    channel = parentChannel();
    if (!channel) {
      throw new Error('the engine host is started by DriveTwin (no IPC channel, no --socket)');
    }
  }
  const elevated = process.getuid?.() === 0 || Boolean(values.socket);
  new EngineHost(channel, { dbPath, owner, elevated, progressMs });
}

/** Runs the host: what stops it from starting is said on stderr, exit 1. */
export function start(argv: string[]): void {
  main(argv).catch((e: Error) => {
    process.stderr.write(`drivetwin engine host: ${e.message}\n`);
    process.exit(1);
  });
}

if (require.main === module) start(process.argv.slice(2));
