// Keeps the machine awake while a copy runs: held from a job's start to its end (the
// backend's job-started and done events), released when no job runs. How it is held is
// passed in: Electron's powerSaveBlocker in the desktop app (main/index.ts), and
// `systemd-inhibit` for the web bridge where it exists (it needs logind on the system
// bus; where that is missing it fails once, says so, and is not tried again).

import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { DriveTwinEventName, DriveTwinEvents, JobId } from '../preload/events';
import { onPath } from './programs';

/** Starts holding the machine awake; returns what releases it. */
export type Inhibit = (onFailure: (e: Error) => void) => () => void;

export class SleepInhibitor extends EventEmitter {
  private readonly live = new Set<JobId>();
  private release: (() => void) | null = null;
  private broken = false;

  /** `inhibit`: null where nothing can keep the machine awake. */
  constructor(private readonly inhibit: Inhibit | null) {
    super();
  }

  /** Held now. */
  get active(): boolean {
    return this.release !== null;
  }

  onEvent<E extends DriveTwinEventName>(event: E, payload: DriveTwinEvents[E]): void {
    if (event === 'job-started') this.live.add((payload as DriveTwinEvents['job-started']).job);
    else if (event === 'done') this.live.delete((payload as DriveTwinEvents['done']).job);
    else return;
    this.update();
  }

  close(): void {
    this.live.clear();
    this.update();
  }

  private update(): void {
    if (this.live.size > 0 && !this.release && this.inhibit && !this.broken) {
      this.release = this.inhibit((e) => {
        this.broken = true;
        this.release = null;
        this.emit('error', e);
      });
    } else if (this.live.size === 0 && this.release) {
      const release = this.release;
      this.release = null;
      release();
    }
  }
}

/**
 * `systemd-inhibit --what=sleep:idle … cat` for as long as it is held, or null where there
 * is no systemd-inhibit. `cat` reads a pipe from this process: released, or this process
 * gone (even killed), it reads the end and exits, and the inhibitor with it — nothing is
 * left holding the machine awake. `run` is child_process.spawn.
 */
export function systemdInhibit(
  run: typeof spawn = spawn,
  find: (name: string) => string | null = onPath,
): Inhibit | null {
  const program = find('systemd-inhibit');
  if (!program) return null;
  return (onFailure) => {
    const child = run(
      program,
      ['--what=sleep:idle', '--who=DriveTwin', '--why=A copy is running', '--mode=block', 'cat'],
      { stdio: ['pipe', 'ignore', 'pipe'] },
    );
    let stderr = '';
    let released = false;
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', (e) => onFailure(e));
    child.stdin?.on('error', () => undefined); // gone already: 'exit' says why
    child.on('exit', (code) => {
      if (!released) {
        onFailure(new Error(`systemd-inhibit stopped (${code}): ${stderr.trim() || 'no reason'}`));
      }
    });
    return () => {
      released = true;
      child.stdin?.end();
    };
  };
}
