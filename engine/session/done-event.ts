// The `done` event a job session ends with: how the copy ended, each destination's
// result (failed with its reason, verified, handed back to its system) and the times.
// Built from what the copy and the verify reported; it decides nothing itself.

import type { Range } from '../geometry';
import type { CopyOutcome, JobTarget } from '../hydration/job-parts';
import type { Intent } from './plan';
import type { DestinationResult, DoneEvent, DownloadSummary, VerifyEvent } from '../events';
import type { Removal } from './removal';

export interface Ending {
  job: number;
  intent: Intent;
  targets: JobTarget[];
  /** Drive destinations once closed: safe to remove, ejected. */
  removals: Map<string, Removal>;
  /** Stopped by the user (rather than failed) when there is no copy outcome. */
  stopped: boolean;
  copy: CopyOutcome | null;
  checked: VerifyEvent | null;
  failure: Error | null;
  seconds: number;
  verifySeconds: number;
  /** The source is a URL: how its download went. */
  download?: DownloadSummary;
}

export function doneEvent(end: Ending): DoneEvent {
  const { copy, checked, failure, targets, removals } = end;
  const failed = new Map((copy?.failed ?? []).map((f) => [f.index, f.reason]));
  const destinations: DestinationResult[] = targets.map((t) => {
    const reason = failed.get(t.index);
    const compared = checked?.destinations.find((d) => d.path === t.device.path);
    const removal = removals.get(t.device.path);
    return {
      path: t.device.path,
      state: reason !== undefined ? 'failed' : copy?.complete ? 'done' : 'unfinished',
      error: reason ?? null,
      // A backup's is what reached its file: compressed.
      bytesWritten: t.device.storedBytes ?? copy?.written.get(t.index) ?? 0,
      ...(compared ? { verified: compared.equal, mismatches: compared.mismatches } : {}),
      ...(removal ? { removal } : {}),
    };
  });
  const unreadable: Range[] = copy?.unreadable ?? [];
  return {
    type: 'done',
    job: end.job,
    intent: end.intent,
    state: copy?.state ?? (end.stopped ? 'interrupted' : 'failed'),
    resumable: copy?.resumable ?? true,
    error: copy?.error ?? (failure && (copy ? `verify: ${failure.message}` : failure.message)),
    bytesRead: copy?.bytesRead ?? 0,
    bytesWritten: copy?.bytesWritten ?? 0,
    regionsCopied: copy?.regionsCopied ?? 0,
    unreadableBytes: unreadable.reduce((n, r) => n + r.length, 0),
    unreadable,
    failedDestinations: [...failed.keys()].map(
      (i) => targets.find((t) => t.index === i)!.device.path,
    ),
    destinations,
    seconds: end.seconds,
    copySeconds: copy?.seconds ?? 0,
    verifySeconds: end.verifySeconds,
    ...(checked
      ? {
          verified: checked.equal,
          mismatches: checked.destinations.flatMap((d) => d.mismatches),
        }
      : {}),
    ...(end.download ? { download: end.download } : {}),
  };
}
