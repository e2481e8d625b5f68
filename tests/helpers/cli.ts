import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export type CliEvent = Record<string, unknown> & { type: string };

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout lines that parse as JSON objects with a string `type`. */
  events: CliEvent[];
}

function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'bin', 'drivetwin.js'))) return dir;
  }
  throw new Error(`bin/drivetwin.js not found above ${__dirname}`);
}

const BIN = path.join(repoRoot(), 'bin', 'drivetwin.js');

function parseEvent(line: string): CliEvent | undefined {
  try {
    const value: unknown = JSON.parse(line);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const event = value as Record<string, unknown>;
      if (typeof event.type === 'string') return event as CliEvent;
    }
  } catch {
    // not an event line
  }
  return undefined;
}

function start(args: string[], opts: { db: string; input?: string; env?: Record<string, string> }) {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...opts.env, DRIVETWIN_DB: opts.db },
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  const events: CliEvent[] = [];
  const arrivals: Arrival[] = [];
  const listeners = new Set<(e: CliEvent) => void>();
  const arrive = (event: CliEvent): void => {
    events.push(event);
    arrivals.push({ at: Date.now(), event });
    for (const l of listeners) l(event);
  };
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      const event = parseEvent(line);
      if (event) arrive(event);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const event = parseEvent(partial);
      if (event) arrive(event);
      resolve({ code, signal, stdout, stderr, events });
    });
  });
  return { child, events, arrivals, listeners, done, output: () => ({ stdout, stderr }) };
}

function describe(args: string[], out: { stdout: string; stderr: string }): string {
  const tail = (s: string) => s.slice(-2000);
  return `drivetwin ${args.join(' ')}\n--- stdout ---\n${tail(out.stdout)}\n--- stderr ---\n${tail(out.stderr)}`;
}

/** Runs `node bin/drivetwin.js ...args` to the end; rejects (after SIGKILL) on timeout. */
export async function runCli(
  args: string[],
  opts: { db: string; input?: string; timeoutMs?: number; env?: Record<string, string> },
): Promise<CliResult> {
  const run = start(args, opts);
  const timeoutMs = opts.timeoutMs ?? 5 * 60 * 1000;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      run.child.kill('SIGKILL');
      reject(new Error(`timed out after ${timeoutMs} ms: ${describe(args, run.output())}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([run.done, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** An event and when it arrived (Date.now()): for checks about timing. */
export interface Arrival {
  at: number;
  event: CliEvent;
}

export interface SpawnedCli {
  child: ChildProcess;
  /** Grows as the process prints. */
  events: CliEvent[];
  arrivals: Arrival[];
  /** The first event, past or future, matching `pred`; rejects on timeout or exit without one. */
  waitEvent(pred: (e: CliEvent) => boolean, timeoutMs?: number): Promise<CliEvent>;
  done: Promise<CliResult>;
}

/** Starts the CLI and returns at once: for signals, kills and watching events live. */
export function spawnCli(
  args: string[],
  opts: { db: string; env?: Record<string, string> },
): SpawnedCli {
  const run = start(args, opts);
  // A test that never awaits `done` must not get an unhandled rejection.
  run.done.catch(() => undefined);
  const waitEvent = (pred: (e: CliEvent) => boolean, timeoutMs = 60_000) =>
    new Promise<CliEvent>((resolve, reject) => {
      const seen = run.events.find(pred);
      if (seen) return resolve(seen);
      const finish = (err?: Error, event?: CliEvent) => {
        clearTimeout(timer);
        run.listeners.delete(listener);
        if (err) reject(err);
        else resolve(event!);
      };
      const listener = (e: CliEvent) => {
        if (pred(e)) finish(undefined, e);
      };
      const timer = setTimeout(
        () =>
          finish(
            new Error(`no matching event within ${timeoutMs} ms: ${describe(args, run.output())}`),
          ),
        timeoutMs,
      );
      run.listeners.add(listener);
      run.done.then(
        (r) =>
          finish(
            new Error(
              `exited (code ${r.code}, signal ${r.signal}) without a matching event: ${describe(args, r)}`,
            ),
          ),
        (err: Error) => finish(err),
      );
    });
  return {
    child: run.child,
    events: run.events,
    arrivals: run.arrivals,
    waitEvent,
    done: run.done,
  };
}

/** Everything a failed expectation about a CLI run needs to be understood. */
export function explain(r: CliResult): string {
  return `exit ${r.code} (signal ${r.signal})\n--- stdout ---\n${r.stdout.slice(-4000)}\n--- stderr ---\n${r.stderr.slice(-3000)}`;
}

export function expectExit(r: CliResult, code: number): void {
  assert.equal(r.code, code, explain(r));
}

/** The one event of this type the run printed. */
export function only(r: CliResult, type: string): CliEvent {
  const found = r.events.filter((e) => e.type === type);
  assert.equal(found.length, 1, `one "${type}" event expected\n${explain(r)}`);
  return found[0];
}
