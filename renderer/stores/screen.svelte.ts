// Which screen is up, and the two ways a job comes on it: a new copy, or a resume.
import type { CloneRequest, JobSummary } from '../../preload/api';
import { api, errorText } from '../lib/api';
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

class Screen {
  view = $state<View>('setup');
  /** A resume waiting for the user to confirm (it writes to drives). */
  confirmResume = $state.raw<JobSummary | null>(null);
  /** Why the last resume was refused. */
  resumeError = $state<{ job: number; message: string } | null>(null);

  go(view: View): void {
    this.view = view;
    if (view === 'jobs') void history.refresh();
  }

  async startCopy(request: CloneRequest): Promise<void> {
    const { job: id } = await api().startClone(request);
    job.show(id);
    this.view = 'job';
    void history.refresh();
  }

  /** From the history or the start-up offer: asks first when the job writes drives. */
  askResume(summary: JobSummary): void {
    this.resumeError = null;
    if (summary.destinations.some((d) => !d.failed && isDrivePath(d.path))) {
      this.confirmResume = summary;
    } else {
      void this.resume(summary, false);
    }
  }

  async resume(summary: JobSummary, confirmed: boolean): Promise<boolean> {
    this.resumeError = null;
    try {
      const { job: id } = await api().resumeJob(
        summary.job,
        confirmed ? { confirmed: true } : undefined,
      );
      job.show(id, summary);
      this.view = 'job';
      void history.refresh();
      return true;
    } catch (e) {
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
