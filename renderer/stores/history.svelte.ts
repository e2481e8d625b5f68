// The jobs in the database (listJobs): the history, and the unfinished ones to resume.
import type { JobSummary } from '../../preload/api';
import { api, errorText } from '../lib/api';

class History {
  jobs = $state.raw<JobSummary[]>([]);
  loaded = $state(false);
  error = $state<string | null>(null);

  /** Newest first. */
  sorted = $derived([...this.jobs].sort((a, b) => b.job - a.job));
  resumable = $derived(this.sorted.filter((j) => j.resumable));
  live = $derived(this.sorted.filter((j) => j.live));

  private asked = 0;

  async refresh(): Promise<void> {
    const ask = ++this.asked;
    try {
      const jobs = await api().listJobs();
      if (ask !== this.asked) return;
      this.jobs = jobs;
      this.error = null;
    } catch (e) {
      if (ask === this.asked) this.error = errorText(e);
    } finally {
      this.loaded = true;
    }
  }

  /**
   * The newest unfinished job (running, paused, stopped or failed) still writing `path`:
   * what is on it is an incomplete copy. null when none.
   */
  unfinishedOnto(path: string): number | null {
    const j = this.sorted.find(
      (j) => j.state !== 'done' && j.destinations.some((d) => d.path === path && !d.dropped),
    );
    return j?.job ?? null;
  }

  byId(id: number): JobSummary | undefined {
    return this.jobs.find((j) => j.job === id);
  }
}

export const history = new History();
