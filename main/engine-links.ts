// One engine process (engine/host/host.ts), whatever carries its messages: a child process
// (plain Node), Electron's utility process, or the elevated engine's authenticated
// socket. Each is a Link, a thin adapter; EngineConnection speaks the protocol over any
// of them — requests and their replies, events, and the process's end.

import { type ChildProcess, fork } from 'node:child_process';
import type net from 'node:net';
import type { HostCommand, HostEvent, HostOutbound } from '../engine/host/protocol';
import { socketChannel } from '../engine/host/transport';

const STDERR_TAIL = 4000;
const SHUTDOWN_MS = 15_000;

// ---------------------------------------------------------------------------
// Links

export interface Link {
  send(message: unknown): void;
  onMessage(listener: (message: unknown) => void): void;
  /** Once, with why the process is gone. */
  onExit(listener: (reason: string) => void): void;
  kill(): void;
}

export function keepTail(stream: NodeJS.ReadableStream | null | undefined): () => string {
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

// No execArgv: Electron's utility process doesn't apply it, so the engine sets its own
// V8 flags whatever starts it (engine/host/host.ts, tuneMemory).
export function forkLink(hostScript: string, args: string[]): Link & { pid: number | undefined } {
  const child = fork(hostScript, args, {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    serialization: 'json',
    env: engineEnv(),
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
      stdio?: Array<'pipe' | 'ignore' | 'inherit'>;
      env?: NodeJS.ProcessEnv;
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
  /** A fatal V8 error in the process; its 'exit' follows. */
  on(
    event: 'error',
    listener: (type: 'FatalError', location: string, report: string) => void,
  ): this;
}

/** What failed, from the Node.js diagnostic report Electron hands over with a fatal error. */
function fatalReason(location: string, report: string): string {
  let event: unknown;
  try {
    event = (JSON.parse(report) as { header?: { event?: unknown } }).header?.event;
  } catch {
    // not JSON: the location says enough
  }
  const what = typeof event === 'string' && event ? `${event}, at ${location}` : location;
  return `the engine stopped on a fatal error (${what})`;
}

export function utilityLink(forker: UtilityForker, hostScript: string, args: string[]): Link {
  // stdout inherited, not piped: a pipe nobody reads would block the engine once full.
  const child = forker.fork(hostScript, args, {
    serviceName: 'DriveTwin engine',
    stdio: ['ignore', 'inherit', 'pipe'],
    env: engineEnv(),
  });
  const stderr = keepTail(child.stderr);
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  // Listened to at once: an 'error' event nobody listens to is thrown in the main process.
  let fatal: string | null = null;
  const ended = new Set<(reason: string) => void>();
  const end = (reason: string): void => {
    for (const l of ended) l(reason);
    ended.clear();
  };
  child.on('error', (_type, location, report) => {
    fatal = fatalReason(location, report);
    end(fatal);
  });
  child.on('exit', (code) => end(fatal ?? exitReason(code, null, stderr())));
  return {
    send: (m) => child.postMessage(m),
    onMessage: (l) => child.on('message', l),
    onExit: (l) => void ended.add(l),
    kill: () => void child.kill(),
  };
}

/** The authenticated socket, framed like every engine link; `leftover` arrived with the token. */
export function socketLink(
  socket: net.Socket,
  leftover: string,
  launcher: ChildProcess | null,
): Link {
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
// The connection: requests and replies, events

export class EngineRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class EngineConnection {
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
