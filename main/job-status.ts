// What the window shows of running jobs outside the page: progress in the title and
// the taskbar / dock, and a desktop notification when a job ends. Fed by the backend's
// events (main/api.ts); plain functions, so tests run them under Node.

import { formatBytes } from '../engine/size';
import type {
  DriveTwinEventName,
  DriveTwinEvents,
  JobDone,
  JobId,
  JobProgress,
  JobStarted,
} from '../preload/api';
import { APP_NAME } from './window';

/** All live jobs as one: what the title and the taskbar show. */
export interface OverallProgress {
  jobs: number;
  bytesDone: number;
  bytesTotal: number;
  /** Every live job is paused. */
  paused: boolean;
  /** A job's metadata left read-write mode, or a fatal error is being reported. */
  troubled: boolean;
  /** Seconds left, for a single job whose rate is known. */
  eta: number | null;
}

/** Electron's BrowserWindow.setProgressBar arguments. */
export interface TaskbarProgress {
  /** 0…1, or -1 to remove the bar. */
  value: number;
  mode: 'none' | 'normal' | 'error' | 'paused';
}

export interface Notice {
  title: string;
  body: string;
}

/** Whole percent, and never 100 before the job says it is done. */
export function percentOf(done: number, total: number): number {
  if (total <= 0) return 0;
  return Math.min(99, Math.max(0, Math.floor((done / total) * 100)));
}

/** "less than a minute", "4 min", "2 h 05 min". */
export function roughDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 60) return 'less than a minute';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** "42 s", "5 min 12 s", "1 h 02 min". */
export function exactDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** The window title: the app's name, led by progress while jobs run. */
export function progressTitle(p: OverallProgress | null, appName = APP_NAME): string {
  if (!p || p.jobs === 0) return appName;
  const percent = `${percentOf(p.bytesDone, p.bytesTotal)}%`;
  if (p.paused) return `Paused at ${percent} — ${appName}`;
  const what = p.jobs > 1 ? `${p.jobs} copies · ${percent}` : percent;
  const left = p.jobs === 1 && p.eta !== null ? ` · ${roughDuration(p.eta)} left` : '';
  return `${what}${left} — ${appName}`;
}

export function taskbarProgress(p: OverallProgress | null): TaskbarProgress {
  if (!p || p.jobs === 0) return { value: -1, mode: 'none' };
  const value = p.bytesTotal > 0 ? Math.min(1, Math.max(0, p.bytesDone / p.bytesTotal)) : 0;
  return { value, mode: p.troubled ? 'error' : p.paused ? 'paused' : 'normal' };
}

function listPaths(paths: string[]): string {
  if (paths.length <= 1) return paths[0] ?? 'its destination';
  if (paths.length === 2) return `${paths[0]} and ${paths[1]}`;
  return `${paths.length} destinations`;
}

/** The notification for a job's end. */
export function doneNotice(
  done: JobDone,
  context: { started?: JobStarted; progress?: JobProgress; lastError?: string } = {},
): Notice {
  const job = `Job ${done.job}`;
  const resumable = 'It can be resumed from the job list.';
  if (done.state === 'interrupted') {
    const at = context.progress
      ? ` at ${percentOf(context.progress.bytesDone, context.progress.bytesTotal)}%`
      : '';
    return {
      title: 'Copy stopped',
      body: `${job} stopped${at}; what was copied is kept. ${resumable}`,
    };
  }
  if (done.state === 'failed') {
    const why = context.lastError ? `: ${context.lastError.replace(/\.$/, '')}` : '';
    return { title: 'Copy failed', body: `${job} failed${why}. ${resumable}` };
  }
  const parts: string[] = [];
  const bytes = context.started?.bytesTotal ?? done.bytesRead;
  const onto = context.started ? ` to ${listPaths(context.started.destinations)}` : '';
  parts.push(`${job}: ${formatBytes(bytes)} copied${onto} in ${exactDuration(done.seconds)}.`);
  if (done.verified === true) parts.push('Verified: the copy is identical.');
  if (done.verified === false) parts.push('Verify found differences: see the job.');
  if (done.unreadableBytes > 0) {
    parts.push(`${formatBytes(done.unreadableBytes)} could not be read and were written as zeros.`);
  }
  if (done.failedDestinations.length > 0) {
    parts.push(`Not written: ${done.failedDestinations.join(', ')}.`);
  }
  const problem =
    done.verified === false || done.unreadableBytes > 0 || done.failedDestinations.length > 0;
  return {
    title: problem ? 'Copy finished, with problems' : 'Copy finished',
    body: parts.join(' '),
  };
}

/** The confirmation shown when the app is closed while jobs run. */
export function stopPrompt(jobs: number): {
  message: string;
  detail: string;
  buttons: [string, string];
} {
  return {
    message: jobs === 1 ? 'A copy is running.' : `${jobs} copies are running.`,
    detail:
      'Quitting stops it cleanly: what was copied is kept, and it resumes from the job list ' +
      'the next time.',
    buttons: ['Keep copying', 'Stop and quit'],
  };
}

interface LiveJob {
  started?: JobStarted;
  progress?: JobProgress;
  troubled: boolean;
  lastError?: string;
}

/** Live jobs, kept from the backend's events. */
export class JobStatus {
  private readonly jobs = new Map<JobId, LiveJob>();

  /** Live jobs now. */
  get running(): number {
    return this.jobs.size;
  }

  /** Takes one event; returns the notification to show when a job ended. */
  onEvent<E extends DriveTwinEventName>(event: E, payload: DriveTwinEvents[E]): Notice | null {
    switch (event) {
      case 'job-started': {
        const e = payload as JobStarted;
        this.jobs.set(e.job, { started: e, troubled: false });
        return null;
      }
      // Only for jobs seen starting: a late message must not bring an ended job back.
      case 'progress': {
        const e = payload as JobProgress;
        const j = this.jobs.get(e.job);
        if (j) j.progress = e;
        return null;
      }
      case 'mode': {
        const e = payload as DriveTwinEvents['mode'];
        const j = this.jobs.get(e.job);
        if (j) j.troubled = e.mode !== 'rw';
        return null;
      }
      case 'error': {
        const e = payload as DriveTwinEvents['error'];
        const j = e.job === null ? undefined : this.jobs.get(e.job);
        if (!j) return null;
        j.lastError = e.message;
        if (e.fatal) j.troubled = true;
        return null;
      }
      case 'done': {
        const e = payload as JobDone;
        const j = this.jobs.get(e.job);
        this.jobs.delete(e.job);
        return doneNotice(e, j ?? {});
      }
      default:
        return null;
    }
  }

  overall(): OverallProgress | null {
    if (this.jobs.size === 0) return null;
    let bytesDone = 0;
    let bytesTotal = 0;
    let paused = true;
    let troubled = false;
    for (const j of this.jobs.values()) {
      const total = j.progress?.bytesTotal ?? j.started?.bytesTotal ?? 0;
      const fromStart = j.started
        ? Math.min(total, (j.started.regionsHydrated * total) / Math.max(1, j.started.regionsTotal))
        : 0;
      bytesDone += j.progress?.bytesDone ?? fromStart;
      bytesTotal += total;
      paused &&= j.progress?.paused ?? false;
      troubled ||= j.troubled;
    }
    const only = this.jobs.size === 1 ? [...this.jobs.values()][0] : undefined;
    const eta = only?.progress && !only.progress.paused ? only.progress.eta : null;
    return { jobs: this.jobs.size, bytesDone, bytesTotal, paused, troubled, eta };
  }
}
