// Supervises the engine processes (engine/host/host.ts) for main/api.ts.
//
//   in Electron      utilityProcess.fork(host.js)           (passed in: this file never imports electron)
//   under plain Node child_process.fork(dist/engine/host/host.js) (tests, the web bridge)
//   raw devices the user can't open: the same host.js elevated through the OS's own
//   prompt, connecting back over an authenticated local socket (main/elevation.ts)
//
// Each process is an EngineConnection over one of those links (main/engine-links.ts).
// If an engine process dies, each of its jobs is reported interrupted (an error and a
// done event): what it committed is on the destinations, and the job resumes.

import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { doneWithoutCopy, type HostCommand, type HostEvent } from '../engine/host/protocol';
import type { Access, Engine } from './api';
import {
  appImageOf,
  elevatedLaunch,
  type ElevationInput,
  type LaunchCommand,
  listenForEngine,
  needsElevation,
} from './elevation';
import {
  EngineConnection,
  EngineRequestError,
  forkLink,
  keepTail,
  type Link,
  socketLink,
  type UtilityForker,
  utilityLink,
} from './engine-links';

export interface SupervisorOptions {
  dbPath: string;
  /** engine/host/host.js (compiled). Default: next to this file's folder. */
  hostScript?: string;
  /** Electron: its utilityProcess. Absent: child_process.fork. */
  utilityProcess?: UtilityForker;
  /** Progress period of the engine, ms. */
  progressMs?: number;
  elevation?: {
    /** The Electron binary for the elevated engine; default process.execPath. */
    runtime?: string;
    platform?: NodeJS.Platform;
    /** Default elevatedLaunch (tests pass a launcher that does not elevate). */
    launch?: (input: ElevationInput) => LaunchCommand;
    /** Default needsElevation. */
    needed?: (access: Access) => boolean;
    timeoutMs?: number;
    /** Where APPIMAGE and APPDIR are read (an AppImage elevates through its own file); default process.env. */
    env?: NodeJS.ProcessEnv;
  };
}

type Slot = 'normal' | 'elevated';

export class EngineSupervisor implements Engine {
  private readonly events = new EventEmitter();
  private readonly connections: Partial<Record<Slot, Promise<EngineConnection>>> = {};
  /** The same, once started: so a dead one is dropped at once. */
  private readonly started: Partial<Record<Slot, EngineConnection>> = {};
  /** Which engine process runs each job: where its commands go. Nothing else is kept. */
  private readonly jobs = new Map<number, EngineConnection>();
  /** Administrator prompts still open: closing gives up on them rather than wait for an answer. */
  private readonly prompts = new Set<(reason: string) => void>();
  private closed = false;

  constructor(private readonly options: SupervisorOptions) {
    this.events.setMaxListeners(0);
  }

  /** The pid of the unelevated engine process, if it runs. */
  async pid(slot: Slot = 'normal'): Promise<number | undefined> {
    return (await this.connections[slot]?.catch(() => undefined))?.pid;
  }

  /** The pid of the engine process running `job`. */
  jobPid(job: number): number | undefined {
    return this.jobs.get(job)?.pid;
  }

  running(job: number): boolean {
    return this.jobs.has(job);
  }

  onEvent(listener: (event: HostEvent) => void): () => void {
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  async request(command: HostCommand, access?: Access): Promise<unknown> {
    if (this.closed) throw new EngineRequestError('unavailable', 'the engine is shut down');
    const job = 'job' in command ? command.job : undefined;
    const running = job !== undefined ? this.jobs.get(job) : undefined;
    if (running) return running.request(command);
    const needed = this.options.elevation?.needed ?? needsElevation;
    const slot: Slot = access && needed(access) ? 'elevated' : 'normal';
    const connection = await this.connection(slot);
    return connection.request(command);
  }

  /** Stops every engine cleanly: running jobs commit and become resumable. */
  async close(): Promise<void> {
    this.closed = true;
    for (const giveUp of this.prompts) giveUp('DriveTwin is closing');
    const all = await Promise.all(
      Object.values(this.connections).map((c) => c.catch(() => undefined)),
    );
    await Promise.all(all.map((c) => c?.shutdown()));
  }

  private connection(slot: Slot): Promise<EngineConnection> {
    const existing = this.connections[slot];
    if (existing) return existing;
    const starting = (slot === 'elevated' ? this.startElevated() : this.startNormal()).then(
      async (c) => {
        this.started[slot] = c;
        await c.ready;
        return c;
      },
    );
    this.connections[slot] = starting;
    starting.catch(() => {
      if (this.connections[slot] === starting) delete this.connections[slot];
    });
    return starting;
  }

  private hostScript(): string {
    return this.options.hostScript ?? path.join(__dirname, '..', 'engine', 'host', 'host.js');
  }

  private hostArgs(): string[] {
    const args = ['--db', this.options.dbPath];
    if (this.options.progressMs) args.push('--progress-ms', String(this.options.progressMs));
    return args;
  }

  private async startNormal(): Promise<EngineConnection> {
    const link = this.options.utilityProcess
      ? utilityLink(this.options.utilityProcess, this.hostScript(), this.hostArgs())
      : forkLink(this.hostScript(), this.hostArgs());
    return this.attach('normal', link);
  }

  private async startElevated(): Promise<EngineConnection> {
    const e = this.options.elevation ?? {};
    const platform = e.platform ?? process.platform;
    const listener = await listenForEngine({ platform, timeoutMs: e.timeoutMs });
    if (this.closed) {
      listener.close();
      throw new EngineRequestError('unavailable', 'the engine is shut down');
    }
    // What runs as root must not come from inside the asar archive.
    const hostScript = this.hostScript().replace(
      /([\\/])app\.asar([\\/])/,
      '$1app.asar.unpacked$2',
    );
    const owner =
      process.getuid && process.getgid
        ? { uid: process.getuid(), gid: process.getgid() }
        : undefined;
    const launch = (e.launch ?? elevatedLaunch)({
      platform,
      runtime: e.runtime ?? process.execPath,
      hostScript,
      dbPath: this.options.dbPath,
      socketPath: listener.socketPath,
      tokenFile: listener.tokenFile,
      owner,
      appImage: appImageOf(e.env ?? process.env, platform),
    });
    const launcher = spawn(launch.command, launch.args, {
      env: { ...process.env, ...launch.env },
      stdio: ['ignore', 'ignore', 'pipe'],
      windowsHide: true,
    });
    const stderr = keepTail(launcher.stderr);
    launcher.on('error', (err) =>
      listener.abort(`can't ask for administrator rights: ${err.message}`),
    );
    launcher.on('exit', (code) =>
      listener.abort(
        `administrator rights were not granted (${launch.command} exited with code ${code})` +
          (stderr() ? `: ${stderr()}` : ''),
      ),
    );
    // The prompt's own process goes with it: an answer given later starts nothing that
    // could still connect (the socket and its token are gone).
    const giveUp = (reason: string): void => {
      listener.abort(reason);
      launcher.kill();
    };
    this.prompts.add(giveUp);
    try {
      const { socket, leftover } = await listener.accepted;
      return this.attach('elevated', socketLink(socket, leftover, launcher));
    } finally {
      this.prompts.delete(giveUp);
    }
  }

  private attach(slot: Slot, link: Link): EngineConnection {
    return new EngineConnection(
      link,
      (event, from) => this.track(event, from),
      (reason, from) => this.lost(slot, reason, from),
    );
  }

  private track(event: HostEvent, from: EngineConnection): void {
    // An update's compare reports progress before its start.
    if (event.type === 'start' || event.type === 'verify-progress') this.jobs.set(event.job, from);
    else if (event.type === 'done') this.jobs.delete(event.job);
    this.events.emit('event', event);
  }

  /** An engine process is gone: its jobs are interrupted (resumable), said out loud. */
  private lost(slot: Slot, reason: string, from: EngineConnection): void {
    if (this.started[slot] === from) {
      delete this.started[slot];
      delete this.connections[slot];
    }
    for (const [job, connection] of [...this.jobs]) {
      if (connection !== from) continue;
      this.jobs.delete(job);
      this.events.emit('event', {
        type: 'error',
        job,
        message: `${reason}. Job ${job} is interrupted; what was committed is kept and it can be resumed.`,
        fatal: true,
      } satisfies HostEvent);
      this.events.emit('event', doneWithoutCopy(job, 'interrupted'));
    }
  }
}
