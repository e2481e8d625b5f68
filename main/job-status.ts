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
  VerifyProgress,
} from '../preload/events';
import { APP_NAME } from './window';

/** What one job is doing, from its latest event. */
export type JobActivity = 'starting' | 'comparing' | 'copying' | 'flushing' | 'verifying';

/** All live jobs as one: what the title and the taskbar show. */
export interface OverallProgress {
  jobs: number;
  /** Of the jobs that reported progress (copy, or compare / verify for a single job). */
  bytesDone: number;
  bytesTotal: number;
  /** For a single job, what it does now (absent: copying). */
  activity?: JobActivity;
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
  if (p.jobs === 1 && p.activity === 'starting') return `Starting — ${appName}`;
  if (p.jobs === 1 && p.activity === 'comparing') return `Comparing ${percent} — ${appName}`;
  if (p.jobs === 1 && p.activity === 'verifying') return `Verifying ${percent} — ${appName}`;
  if (p.paused) return `Paused at ${percent} — ${appName}`;
  if (p.jobs === 1 && p.activity === 'flushing') return `Flushing · ${percent} — ${appName}`;
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

/** The notification for a job's end, from its done event (and its start's options). */
export function doneNotice(
  done: JobDone,
  context: { started?: JobStarted; progress?: JobProgress; lastError?: string } = {},
): Notice {
  const job = `Job ${done.job}`;
  const resumable = 'It can be resumed from the job list.';
  const verifyOn = context.started?.options.verify === true;
  const failedTargets = (done.destinations ?? []).filter((d) => d.state === 'failed');
  const sentence = (s: string): string => s.replace(/\.$/, '');
  if (done.state === 'interrupted') {
    const at = context.progress
      ? ` at ${percentOf(context.progress.bytesDone, context.progress.bytesTotal)}%`
      : '';
    const unverified = verifyOn ? ' It was not verified.' : '';
    return {
      title: 'Copy stopped',
      body: `${job} stopped${at}; what was copied is kept.${unverified} ${resumable}`,
    };
  }
  if (done.state === 'failed') {
    if (failedTargets.length > 0) {
      const which = failedTargets
        .map((d) => `${d.path} failed (${sentence(d.error ?? 'no reason given')})`)
        .join('; ');
      return {
        title: 'Copy failed',
        body:
          `${job} stopped: ${which}. Once fixed, resume the job to bring it back, or finish ` +
          'without it, from the job list.',
      };
    }
    const error = done.error ?? context.lastError;
    const why = error ? `: ${sentence(error)}` : '';
    return { title: 'Copy failed', body: `${job} failed${why}. ${resumable}` };
  }
  const parts: string[] = [];
  const bytes = context.started?.bytesTotal ?? done.bytesRead;
  const onto = context.started ? ` to ${listPaths(context.started.destinations)}` : '';
  const seconds = done.copySeconds ?? done.seconds;
  parts.push(`${job}: ${formatBytes(bytes)} copied${onto} in ${exactDuration(seconds)}.`);
  let unverified = false;
  if (done.verified === true) parts.push('Verified: the copy is identical.');
  else if (done.verified === false) {
    const differing = (done.destinations ?? []).filter((d) => d.verified === false);
    const where = differing.length > 0 ? ` on ${listPaths(differing.map((d) => d.path))}` : '';
    parts.push(`Verify found differences${where}: see the job.`);
  } else if (verifyOn) {
    unverified = true;
    const error = done.error ?? context.lastError;
    parts.push(`Not verified: ${error ? sentence(error) : 'the verify did not finish'}.`);
  }
  if (done.unreadableBytes > 0) {
    parts.push(`${formatBytes(done.unreadableBytes)} could not be read and were written as zeros.`);
  }
  if (done.failedDestinations.length > 0) {
    parts.push(`Not written: ${done.failedDestinations.join(', ')}.`);
  }
  const problem =
    done.verified === false ||
    unverified ||
    done.unreadableBytes > 0 ||
    done.failedDestinations.length > 0;
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
  /** The latest compare / verify progress, until copy progress follows. */
  verify?: VerifyProgress;
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
        if (j) {
          j.progress = e;
          j.verify = undefined;
        }
        return null;
      }
      case 'verify-progress': {
        const e = payload as VerifyProgress;
        const j = this.jobs.get(e.job);
        if (j) j.verify = e;
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
    const only = this.jobs.size === 1 ? [...this.jobs.values()][0] : undefined;
    if (only && !only.progress && !only.verify) {
      return {
        jobs: 1,
        bytesDone: 0,
        bytesTotal: 0,
        paused: false,
        troubled: only.troubled,
        eta: null,
        activity: 'starting',
      };
    }
    if (only?.verify) {
      const v = only.verify;
      return {
        jobs: 1,
        bytesDone: v.bytesDone,
        bytesTotal: v.bytesTotal,
        paused: false,
        troubled: only.troubled,
        eta: v.eta,
        activity: v.phase,
      };
    }
    // Only what the jobs reported: a job with no progress yet adds nothing.
    let bytesDone = 0;
    let bytesTotal = 0;
    let paused = true;
    let troubled = false;
    for (const j of this.jobs.values()) {
      bytesDone += j.progress?.bytesDone ?? 0;
      bytesTotal += j.progress?.bytesTotal ?? 0;
      paused &&= j.progress?.paused ?? false;
      troubled ||= j.troubled;
    }
    const eta = only?.progress && !only.progress.paused ? only.progress.eta : null;
    const activity = only?.progress?.phase;
    return { jobs: this.jobs.size, bytesDone, bytesTotal, paused, troubled, eta, activity };
  }
}
