// A job's events in the user's words. Plain functions of the events (and of the job's
// record, for the history): nothing here keeps or works out a job's state.
import type { ClonePlan, JobState, JobSummary } from '../../preload/api';
import type { JobDone, JobProgress, VerifyProgress } from '../../preload/events';
import type { Phase } from './phase';
import { formatBytes, formatDuration, formatPercent, formatRate } from './format';
import { plainPhrase } from './plain-words';

/** What the window title says of the job on screen (empty: nothing to say). */
export function windowTitle(
  phase: Phase,
  p: JobProgress | null,
  v: VerifyProgress | null,
  d: JobDone | null,
  unheardEnd: JobSummary | null,
): string {
  const percent = p ? formatPercent(p.bytesDone, p.bytesTotal) : '';
  const verify = (what: string): string =>
    v ? `${what} ${formatPercent(v.bytesDone, v.bytesTotal)}` : what;
  const ended = d ? d.state === 'done' : unheardEnd?.state === 'done';
  const title: Record<Phase, string> = {
    idle: '',
    starting: 'Starting',
    comparing: verify('Comparing'),
    copying: `${percent} copied`,
    flushing: 'Finishing',
    paused: `Paused at ${percent}`,
    verifying: verify('Verifying'),
    finished: ended ? 'Copy finished' : 'Copy stopped',
  };
  return title[phase];
}

const STATE_WORDS: Record<JobState, string> = {
  running: 'Copying',
  paused: 'Paused',
  verifying: 'Verifying',
  interrupted: 'Stopped — resumable',
  done: 'Finished',
  failed: 'Stopped by an error — resumable',
};

/** A job's state in words; one that failed for good (no resume can finish it) says so. */
export function stateWords(j: Pick<JobSummary, 'state' | 'resumable' | 'live'>): string {
  if (j.state === 'failed' && !j.live && !j.resumable) return 'Failed for good';
  return STATE_WORDS[j.state];
}

/** A finished job's verify, as its record says. */
export function verifiedWords(j: JobSummary): string | null {
  if (j.state !== 'done') return null;
  if (j.verified === true) return 'verified';
  if (j.verified === false) return 'differences found';
  return 'not verified';
}

/** "45 % (230 MiB of 512 MiB)" from the committed regions. */
export function jobProgressText(j: JobSummary): string {
  const done = Math.min(j.bytesTotal, j.regionsHydrated * j.regionSize);
  return `${formatPercent(j.regionsHydrated, j.regionsTotal)} (${formatBytes(done)} of ${formatBytes(j.bytesTotal)})`;
}

/** A time as the user reads it: "under a second", "1 min 5 s". */
export function tookWords(seconds: number): string {
  return seconds < 1 ? 'under a second' : formatDuration(seconds);
}

/**
 * The job's copying time, every run of it together (resumes included), and its average
 * rate over them, as its record says: the one place these figures come from.
 */
export function copyTimes(j: JobSummary): { seconds: number; average: number | null } {
  const done = Math.min(j.bytesTotal, j.regionsHydrated * j.regionSize);
  return {
    seconds: j.copySeconds,
    average: j.copySeconds >= 0.5 ? done / j.copySeconds : null,
  };
}

/**
 * How long a job took, as its record says: "copying took 1 min 5 s (31.5 MiB/s on
 * average), verifying 40 s"; null before any time was counted.
 */
export function jobTimesText(j: JobSummary): string | null {
  if (j.copySeconds <= 0 && j.verifySeconds <= 0) return null;
  const parts: string[] = [];
  if (j.copySeconds > 0) {
    const times = copyTimes(j);
    const average = times.average !== null ? ` (${formatRate(times.average)} on average)` : '';
    parts.push(`copying took ${tookWords(times.seconds)}${average}`);
  }
  if (j.verifySeconds > 0) {
    parts.push(`verifying ${tookWords(j.verifySeconds)}`);
  }
  return parts.join(', ');
}

export interface RegionCounts {
  total: number;
  /** Committed: on every destination, flushed and recorded. */
  copied: number;
  /** On every destination, waiting for the next commit. */
  written: number;
  inFlight: number;
  /** total − the three above. */
  notYet: number;
}

/** The region counts exactly as one progress event gives them (a verify's carries the copy's). */
export function regionCounts(p: JobProgress): RegionCounts {
  return {
    total: p.regionsTotal,
    copied: p.regionsHydrated,
    written: p.regionsWritten,
    inFlight: p.hydrating,
    notYet: p.regionsTotal - p.regionsHydrated - p.regionsWritten - p.hydrating,
  };
}

/**
 * The region counts once the job has ended: nothing is in flight or waiting any more.
 * Done means every region is on every target (the done event says so); otherwise what
 * the job's record holds as committed, `committed` (null: not known yet).
 */
export function finalCounts(
  state: JobDone['state'] | null,
  total: number,
  committed: number | null,
): RegionCounts | null {
  const copied = state === 'done' ? total : committed;
  if (copied === null) return null;
  return { total, copied, written: 0, inFlight: 0, notYet: Math.max(0, total - copied) };
}

/**
 * The confirmation's title and button for what the engine planned. `erases`: a target
 * holds something now (a drive, an existing file), not only new files.
 */
export function planWords(
  plan: ClonePlan,
  targets: number,
  erases = true,
): { title: string; button: string } {
  const these = targets === 1 ? 'this target' : `these ${targets} targets`;
  if (plan.intent === 'resume') {
    const percent =
      plan.regionsTotal > 0
        ? ` (${formatPercent(plan.regionsHydrated, plan.regionsTotal)} already copied)`
        : '';
    return {
      title: `Continue job ${plan.job} onto ${these}?`,
      button: `Continue job ${plan.job}${percent}`,
    };
  }
  if (plan.intent === 'update') {
    return {
      title: `Update ${these} from job ${plan.job}?`,
      button: 'Update: copy only what differs',
    };
  }
  if (!erases) {
    return {
      title: `Copy onto ${targets === 1 ? 'this new file' : `these ${targets} new files`}?`,
      button: 'Copy',
    };
  }
  return { title: `Erase ${these} and copy?`, button: 'Erase and copy' };
}

export const START_OVER = 'Start over instead (erase everything and copy)';

export type VerifyOutcome = 'verified' | 'differs' | 'stopped' | 'failed' | 'off';

/**
 * The verify, as the done event says it: verified only when it ran and every
 * destination compared equal. `verifyOn` is job-started's options.verify; `error` is the
 * job's last fatal error, said when the done event gives none.
 */
export function verifyOutcome(
  done: JobDone,
  verifyOn: boolean | null,
  error: string | null,
): { outcome: VerifyOutcome; text: string } {
  if (done.verified === true) {
    return {
      outcome: 'verified',
      text: 'Verified: every target was compared with the source and is equal.',
    };
  }
  if (done.verified === false) {
    const differing = (done.destinations ?? []).filter((d) => d.verified === false).length;
    return {
      outcome: 'differs',
      text:
        differing > 0
          ? `Differences found on ${differing === 1 ? 'one target' : `${differing} targets`}: see each target below.`
          : 'Differences found: not every target is equal to the source.',
    };
  }
  if (verifyOn !== true) return { outcome: 'off', text: 'Verify was off.' };
  if (done.state !== 'done') {
    return {
      outcome: 'stopped',
      text: 'Stopped before verifying: the copy did not finish, so nothing was compared.',
    };
  }
  const why = done.error ?? error;
  return {
    outcome: 'failed',
    text: `Not verified: ${why ? plainPhrase(why) : 'the verify did not finish'}.`,
  };
}

/** A download's end in words: what it cost, and what its SHA-256 check found. */
export function downloadWords(d: NonNullable<JobDone['download']>): {
  received: string;
  check: { text: string; outcome: 'verified' | 'mismatch' | 'unchecked' | 'none' };
} {
  const retried = d.retries > 0 ? ` (${d.retries} ${d.retries === 1 ? 'retry' : 'retries'})` : '';
  const from = d.sha256 === null || d.sha256.from === 'given' ? '' : ` (from ${d.sha256.from})`;
  const check =
    d.sha256 === null
      ? { text: 'none given, and no .sha256 next to it', outcome: 'none' as const }
      : d.sha256Matched === true
        ? { text: `matches${from}`, outcome: 'verified' as const }
        : d.sha256Matched === false
          ? {
              text: `DOES NOT MATCH${from}: this is not the file expected, and the copy is not done`,
              outcome: 'mismatch' as const,
            }
          : { text: 'not checked: the file was not read whole', outcome: 'unchecked' as const };
  return { received: `${formatBytes(d.bytes)}${retried}`, check };
}
