// Each target of the job on screen, as the events say it: still being written (the
// job's progress is every remaining target's: they are written together), failed with
// the reason its error event gave, compared equal or not by the verify, or how the done
// event left it. Plain functions of the events; nothing is worked out beyond naming them.
import type {
  DestinationResult,
  JobDone,
  JobError,
  JobProgress,
  JobVerified,
  VerifyProgress,
} from '../../preload/events';
import { formatPercent } from './format';
import { failureWords, lowerFirst } from './plain-words';

export type TargetState = 'copying' | 'verifying' | 'done' | 'failed' | 'unfinished';

export interface TargetStatus {
  path: string;
  state: TargetState;
  /** What to say after the target's name. */
  words: string;
  /** Set once its verify said. */
  verified: boolean | null;
  /** failed: why, as the engine said it. */
  error: string | null;
}

export interface TargetEvents {
  destinations: string[];
  progress: JobProgress | null;
  verifying: VerifyProgress | null;
  errors: JobError[];
  verified: JobVerified | null;
  done: JobDone | null;
}

/** "1 range", "3 ranges". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

/** One destination's result, as the done event says it. */
export function destinationWords(d: DestinationResult): string {
  const copy =
    d.state === 'done'
      ? 'copied'
      : d.state === 'failed'
        ? `failed: ${d.error ? lowerFirst(failureWords(d.error)) : 'no reason given'}`
        : 'not finished';
  if (d.verified === true) return `${copy}, verified equal`;
  if (d.verified === false) {
    const n = d.mismatches?.length ?? 0;
    return `${copy}, differs from the source (${plural(n, 'range')})`;
  }
  return copy;
}

function fromDone(r: DestinationResult): TargetStatus {
  return {
    path: r.path,
    state: r.state,
    words: destinationWords(r),
    verified: r.verified ?? null,
    error: r.state === 'failed' ? r.error : null,
  };
}

export function targetStatuses(e: TargetEvents): TargetStatus[] {
  if (e.done?.destinations) return e.done.destinations.map(fromDone);
  return e.destinations.map((path) => {
    // A target that fails leaves the job (a non-fatal error naming it); the others go on.
    const failure = e.errors.find((x) => x.device === path && !x.fatal && x.job !== null);
    const verify = e.verified?.destinations.find((d) => d.path === path);
    if (failure) {
      return {
        path,
        state: 'failed',
        words: `failed: ${lowerFirst(failureWords(failure.message))} It left the copy; the other targets go on.`,
        verified: null,
        error: failure.message,
      };
    }
    if (verify) {
      const n = verify.mismatches.length;
      return {
        path,
        state: 'verifying',
        words: verify.equal
          ? 'copied, verified equal'
          : `copied, differs from the source (${plural(n, 'range')})`,
        verified: verify.equal,
        error: null,
      };
    }
    if (e.verifying?.phase === 'verifying') {
      const v = e.verifying;
      return {
        path,
        state: 'verifying',
        words: `copied, verifying: ${formatPercent(v.bytesDone, v.bytesTotal)}`,
        verified: null,
        error: null,
      };
    }
    const p = e.progress;
    return {
      path,
      state: 'copying',
      words: p ? `being written: ${formatPercent(p.bytesDone, p.bytesTotal)}` : 'waiting to start',
      verified: null,
      error: null,
    };
  });
}
