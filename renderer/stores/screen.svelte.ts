// Which screen is up, and the two ways a job comes on it: a new copy, or a resume.
import type { CloneRequest, JobSummary } from '../../preload/api';
import { api, errorText } from '../lib/api';
import { askToNotify } from '../lib/notify';
import { drives } from './drives.svelte';
import { history } from './history.svelte';
import { job } from './job.svelte';

export type View = 'setup' | 'job' | 'jobs';

/** True when the path is a drive (needs the user's confirmation to be written). */
export function isDrivePath(path: string): boolean {
  const listed = drives.byPath(path) ?? drives.targetByPath(path);
  if (listed) return listed.kind === 'block';
  return path.startsWith('/dev/') || path.startsWith('\\\\.\\');
}

/** A resume waiting for the user's word: the job, and the destinations to finish without. */
export interface ResumeAsk {
  summary: JobSummary;
  drop: string[];
}

class Screen {
  view = $state<View>('setup');
  /** A resume waiting for the user to confirm (it writes to drives). */
  confirmResume = $state.raw<ResumeAsk | null>(null);
  /** Why the last resume was refused. */
  resumeError = $state<{ job: number; message: string } | null>(null);

  go(view: View): void {
    this.view = view;
    if (view === 'jobs') void history.refresh();
  }

  /** Starts the copy and shows it; what it is (new, resume, update) comes with job-started. */
  async startCopy(request: CloneRequest): Promise<void> {
    if (drives.capabilities?.notifications === 'page') askToNotify();
    job.hold();
    let id: number;
    try {
      ({ job: id } = await api().startClone(request));
    } catch (e) {
      job.unhold();
      throw e;
    }
    job.show(id);
    this.view = 'job';
    void history.refresh();
  }

  /**
   * From the history, the start-up offer or the done screen: asks first when the job
   * writes drives. `drop`: destinations to finish without, for good.
   */
  askResume(summary: JobSummary, drop: string[] = []): void {
    this.resumeError = null;
    const staying = summary.destinations.filter((d) => !d.dropped && !drop.includes(d.path));
    if (drop.length > 0 || staying.some((d) => isDrivePath(d.path))) {
      this.confirmResume = { summary, drop };
    } else {
      void this.resume(summary, false);
    }
  }

  async resume(summary: JobSummary, confirmed: boolean, drop: string[] = []): Promise<boolean> {
    this.resumeError = null;
    job.hold();
    try {
      const { job: id } = await api().resumeJob(summary.job, {
        ...(confirmed ? { confirmed: true } : {}),
        ...(drop.length > 0 ? { drop } : {}),
      });
      job.show(id, summary);
      this.view = 'job';
      void history.refresh();
      return true;
    } catch (e) {
      job.unhold();
      this.resumeError = { job: summary.job, message: errorText(e) };
      return false;
    }
  }

  /** Shows a job that is already running (e.g. after a reload). */
  watch(summary: JobSummary): void {
    job.show(summary.job, summary);
    this.view = 'job';
  }
}

export const screen = new Screen();
