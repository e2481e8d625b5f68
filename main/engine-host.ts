// Supervises the engine processes (engine/host.ts) for main/api.ts.
//
//   in Electron      utilityProcess.fork(host.js)           (passed in: this file never imports electron)
//   under plain Node child_process.fork(dist/engine/host.js) (tests, the web bridge)
//   raw devices the user can't open: the same host.js elevated through the OS's own
//   prompt (pkexec, osascript "with administrator privileges", UAC), run as Node-mode
//   Electron (ELECTRON_RUN_AS_NODE=1), connecting back over a unix socket / named pipe
//   in a user-only folder and proving itself with a random token — never a TCP port.
//
// If an engine process dies, each of its jobs is reported interrupted (an error and a
// done event): what it committed is on the destinations, and the job resumes.

import { type ChildProcess, fork, spawn } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  doneWithoutCopy,
  type HostCommand,
  type HostEvent,
  type HostOutbound,
} from '../engine/protocol';
import { socketChannel } from '../engine/transport';
import type { Access, Engine } from './api';

const STDERR_TAIL = 4000;
const SHUTDOWN_MS = 15_000;
/** How long the user may take to answer the administrator prompt. */
const ELEVATION_TIMEOUT_MS = 5 * 60_000;
const AUTH_TIMEOUT_MS = 5_000;

// ---------------------------------------------------------------------------
// Links: one engine process, whatever carries its messages

interface Link {
  send(message: unknown): void;
  onMessage(listener: (message: unknown) => void): void;
  /** Once, with why the process is gone. */
  onExit(listener: (reason: string) => void): void;
  kill(): void;
}

function keepTail(stream: NodeJS.ReadableStream | null | undefined): () => string {
  let tail = '';
  stream?.on('data', (chunk: Buffer | string) => {
    tail = (tail + chunk.toString()).slice(-STDERR_TAIL);
  });
  return () => tail.trim();
}

function exitReason(code: number | null, signal: string | null, stderr: string): string {
  const how = signal ? `was killed (${signal})` : `exited with code ${code}`;
  return `the engine ${how}${stderr ? `: ${stderr.split('\n').slice(-3).join(' | ')}` : ''}`;
}

/**
 * The engine's environment. glibc raises its mmap threshold each time a big block is
 * freed, after which MiB-sized copy buffers come from the main heap and are never given
 * back: a long-lived engine grew by tens of MiB per copy. A fixed threshold keeps every
 * block of 1 MiB and more in a mapping of its own, returned when freed.
 */
export function engineEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { MALLOC_MMAP_THRESHOLD_: String(1024 * 1024), ...env };
}

/** The engine collects its garbage when its last job ends (engine/host.ts). */
const ENGINE_EXEC_ARGV = ['--expose-gc', '--max-semi-space-size=2'];

function forkLink(hostScript: string, args: string[]): Link & { pid: number | undefined } {
  const child = fork(hostScript, args, {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    serialization: 'json',
    env: engineEnv(),
    execArgv: ENGINE_EXEC_ARGV,
  });
  const stderr = keepTail(child.stderr);
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  return {
    pid: child.pid,
    send: (m) => {
      if (child.connected) child.send(m as object);
    },
    onMessage: (l) => child.on('message', l),
    onExit: (l) => {
      child.once('exit', (code, signal) => l(exitReason(code, signal, stderr())));
      child.once('error', (e) => l(`the engine could not start: ${e.message}`));
    },
    kill: () => child.kill('SIGKILL'),
  };
}

/** What main/electron-adapters.ts passes in: Electron's utilityProcess, structurally. */
export interface UtilityForker {
  fork(
    modulePath: string,
    args?: string[],
    options?: {
      serviceName?: string;
      stdio?: 'pipe' | 'ignore' | 'inherit';
      env?: NodeJS.ProcessEnv;
      execArgv?: string[];
    },
  ): UtilityChild;
}

export interface UtilityChild {
  readonly pid: number | undefined;
  readonly stderr: NodeJS.ReadableStream | null;
  postMessage(message: unknown): void;
  kill(): boolean;
  on(event: 'message', listener: (message: unknown) => void): this;
  on(event: 'exit', listener: (code: number) => void): this;
}

function utilityLink(forker: UtilityForker, hostScript: string, args: string[]): Link {
  const child = forker.fork(hostScript, args, {
    serviceName: 'DriveTwin engine',
    stdio: 'pipe',
    env: engineEnv(),
    execArgv: ENGINE_EXEC_ARGV,
  });
  const stderr = keepTail(child.stderr);
  return {
    send: (m) => child.postMessage(m),
    onMessage: (l) => child.on('message', l),
    onExit: (l) => child.on('exit', (code) => l(exitReason(code, null, stderr()))),
    kill: () => void child.kill(),
  };
}

/** The authenticated socket, framed like every engine link; `leftover` arrived with the token. */
function socketLink(socket: net.Socket, leftover: string, launcher: ChildProcess | null): Link {
  const channel = socketChannel(socket, leftover);
  const stderr = keepTail(launcher?.stderr);
  return {
    send: (m) => channel.send(m),
    onMessage: (l) => channel.onMessage(l),
    onExit: (l) =>
      socket.once('close', () =>
        l(`the elevated engine disconnected${stderr() ? `: ${stderr()}` : ''}`),
      ),
    kill: () => socket.destroy(),
  };
}

// ---------------------------------------------------------------------------
// One engine process: requests and replies, events

export class EngineRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

class EngineConnection {
  pid: number | undefined;
  elevated = false;
  readonly ready: Promise<void>;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private exited: string | null = null;

  constructor(
    private readonly link: Link,
    onEvent: (event: HostEvent, from: EngineConnection) => void,
    onExit: (reason: string, from: EngineConnection) => void,
  ) {
    let hello: () => void = () => undefined;
    let failed: (e: Error) => void = () => undefined;
    this.ready = new Promise<void>((resolve, reject) => {
      hello = resolve;
      failed = reject;
    });
    this.ready.catch(() => undefined);
    link.onMessage((raw) => {
      const m = raw as HostOutbound;
      if (m?.kind === 'hello') {
        this.pid = m.pid;
        this.elevated = m.elevated;
        hello();
      } else if (m?.kind === 'event') {
        onEvent(m.event, this);
      } else if (m?.kind === 'reply') {
        const waiting = this.pending.get(m.id);
        if (!waiting) return;
        this.pending.delete(m.id);
        if (m.ok) waiting.resolve(m.result);
        else waiting.reject(new EngineRequestError(m.error.code, m.error.message));
      }
    });
    link.onExit((reason) => {
      if (this.exited !== null) return;
      this.exited = reason;
      const error = new EngineRequestError('engine', reason);
      failed(error);
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
      onExit(reason, this);
    });
  }

  get alive(): boolean {
    return this.exited === null;
  }

  async request(command: HostCommand): Promise<unknown> {
    await this.ready;
    if (this.exited !== null) throw new EngineRequestError('engine', this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.link.send({ kind: 'request', id, command });
    });
  }

  /** Asks for a clean stop (jobs committed, resumable); kills after `ms`. */
  async shutdown(ms = SHUTDOWN_MS): Promise<void> {
    if (this.exited !== null) return;
    const gone = new Promise<void>((resolve) => this.link.onExit(() => resolve()));
    this.request({ type: 'shutdown' }).catch(() => undefined);
    const timer = setTimeout(() => this.link.kill(), ms);
    await gone;
    clearTimeout(timer);
  }

  kill(): void {
    this.link.kill();
  }
}

// ---------------------------------------------------------------------------
// Elevation

export interface ElevationInput {
  platform: NodeJS.Platform;
  /** The Electron binary (process.execPath in the app), run in Node mode. */
  runtime: string;
  hostScript: string;
  dbPath: string;
  socketPath: string;
  tokenFile: string;
  /** POSIX: files the elevated engine creates are handed back to this user. */
  owner?: { uid: number; gid: number };
}

export interface LaunchCommand {
  command: string;
  args: string[];
  env?: Record<string, string>;
}

function hostArgs(input: ElevationInput): string[] {
  const args = [
    '--db',
    input.dbPath,
    '--socket',
    input.socketPath,
    '--token-file',
    input.tokenFile,
  ];
  if (input.owner) args.push('--owner', `${input.owner.uid}:${input.owner.gid}`);
  return args;
}

/** POSIX shell single quotes. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_/.:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function appleScriptString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function powerShellString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * The command that starts the engine host elevated, through the OS's own prompt.
 * Pure: the same input gives the same command (tests check each OS).
 */
export function elevatedLaunch(input: ElevationInput): LaunchCommand {
  const words = [input.runtime, input.hostScript, ...hostArgs(input)];
  switch (input.platform) {
    case 'win32': {
      // UAC does not carry our environment over: cmd sets ELECTRON_RUN_AS_NODE in the
      // elevated process. Windows paths can't hold `"`; `%` would be expanded by cmd.
      const bad = words.find((w) => w.includes('"') || w.includes('%'));
      if (bad) throw new Error(`can't pass ${bad} through the UAC prompt (it holds " or %)`);
      const line = `set ELECTRON_RUN_AS_NODE=1&& ${words.map((w) => `"${w}"`).join(' ')}`;
      const script =
        `$p = Start-Process -FilePath 'cmd.exe' -ArgumentList ${powerShellString(`/d /s /c "${line}"`)} ` +
        `-Verb RunAs -WindowStyle Hidden -Wait -PassThru; exit $p.ExitCode`;
      return {
        command: 'powershell.exe',
        args: [
          '-NoProfile',
          '-NonInteractive',
          '-WindowStyle',
          'Hidden',
          '-EncodedCommand',
          Buffer.from(script, 'utf16le').toString('base64'),
        ],
      };
    }
    case 'darwin': {
      const line = `ELECTRON_RUN_AS_NODE=1 ${words.map(shellQuote).join(' ')}`;
      return {
        command: '/usr/bin/osascript',
        args: ['-e', `do shell script ${appleScriptString(line)} with administrator privileges`],
      };
    }
    default:
      // pkexec clears the environment: env(1) sets the one variable the runtime needs.
      return {
        command: 'pkexec',
        args: ['/usr/bin/env', 'ELECTRON_RUN_AS_NODE=1', ...words],
      };
  }
}

/** True when opening one of these paths as needed fails for lack of privilege. */
export function needsElevation(access: Access): boolean {
  const denied = (p: string, write: boolean): boolean => {
    let st: fs.Stats | null = null;
    try {
      st = fs.statSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') return true;
      if (!write || code !== 'ENOENT') return false;
    }
    if (!st) {
      try {
        fs.accessSync(path.dirname(path.resolve(p)), fs.constants.W_OK);
        return false;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        return code === 'EACCES' || code === 'EPERM';
      }
    }
    // Never open a FIFO or a folder here: only what a job could open.
    if (!st.isBlockDevice() && !st.isCharacterDevice() && !st.isFile()) return false;
    try {
      fs.closeSync(fs.openSync(p, write ? 'r+' : 'r'));
      return false;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return code === 'EACCES' || code === 'EPERM';
    }
  };
  return access.read.some((p) => denied(p, false)) || access.write.some((p) => denied(p, true));
}

export interface EngineListener {
  socketPath: string;
  tokenFile: string;
  /** The authenticated connection and what arrived after the token line. */
  accepted: Promise<{ socket: net.Socket; leftover: string }>;
  /** Connections refused so far (wrong or missing token). */
  readonly refused: number;
  /** Gives up waiting (the launcher exited, or the user said no). */
  abort(reason: string): void;
  close(): void;
}

/**
 * A unix socket (or named pipe) in a fresh user-only folder, plus a token file beside
 * it. The first connection that sends `{"kind":"auth","token":…}` with the right token
 * is accepted; any other is closed and the listener waits on.
 */
export async function listenForEngine(
  opts: { platform?: NodeJS.Platform; timeoutMs?: number } = {},
): Promise<EngineListener> {
  const platform = opts.platform ?? process.platform;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-')); // mode 0700
  const token = randomBytes(32).toString('hex');
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, token + '\n', { mode: 0o600, flag: 'wx' });
  const socketPath =
    platform === 'win32'
      ? `\\\\.\\pipe\\drivetwin-${randomBytes(16).toString('hex')}`
      : path.join(dir, 'engine.sock');
  const server = net.createServer();
  let refused = 0;
  let settle: {
    resolve: (v: { socket: net.Socket; leftover: string }) => void;
    reject: (e: Error) => void;
  };
  const accepted = new Promise<{ socket: net.Socket; leftover: string }>((resolve, reject) => {
    settle = { resolve, reject };
  });
  accepted.catch(() => undefined);
  const cleanup = (): void => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const timer = setTimeout(
    () => abort('the elevated engine did not connect in time'),
    opts.timeoutMs ?? ELEVATION_TIMEOUT_MS,
  );
  let done = false;
  function abort(reason: string): void {
    if (done) return;
    done = true;
    clearTimeout(timer);
    cleanup();
    settle.reject(new EngineRequestError('unavailable', reason));
  }
  const expected = Buffer.from(token);
  server.on('connection', (socket) => {
    let buffered = '';
    const refuse = (): void => {
      refused += 1;
      socket.destroy();
    };
    const authTimer = setTimeout(refuse, AUTH_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    const onData = (chunk: string): void => {
      buffered += chunk;
      const end = buffered.indexOf('\n');
      if (end < 0) {
        if (buffered.length > 1024) refuse();
        return;
      }
      socket.off('data', onData);
      clearTimeout(authTimer);
      let given: Buffer = Buffer.alloc(0);
      try {
        const auth = JSON.parse(buffered.slice(0, end)) as { kind?: unknown; token?: unknown };
        if (auth.kind === 'auth' && typeof auth.token === 'string') given = Buffer.from(auth.token);
      } catch {
        // not JSON: refused below
      }
      if (done || given.length !== expected.length || !timingSafeEqual(given, expected)) {
        refuse();
        return;
      }
      done = true;
      clearTimeout(timer);
      cleanup(); // one engine per listener: stop listening, remove the token
      socket.pause();
      settle.resolve({ socket, leftover: buffered.slice(end + 1) });
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  if (platform !== 'win32') fs.chmodSync(socketPath, 0o600);
  return {
    socketPath,
    tokenFile,
    accepted,
    get refused() {
      return refused;
    },
    abort,
    close: () => abort('closed'),
  };
}

// ---------------------------------------------------------------------------
// The supervisor

export interface SupervisorOptions {
  dbPath: string;
  /** engine/host.js (compiled). Default: next to this file's folder. */
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
    return this.options.hostScript ?? path.join(__dirname, '..', 'engine', 'host.js');
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
    const { socket, leftover } = await listener.accepted;
    return this.attach('elevated', socketLink(socket, leftover, launcher));
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
