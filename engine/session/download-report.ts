// A download's part of a session's events, where the source is a URL: each connection
// tried again said as it happens (an error event that does not stop the job), the
// download's bytes and rate beside the writing's in start and progress, and at the end
// what was received and whether the file's SHA-256 matched.

import { type Device, isStream } from '../io/device';
import type { Download, RetryNotice } from '../io/source-file';
import { RateMeter } from '../hydration/rate';
import type { DownloadProgress, DownloadSummary, EngineEvent } from '../events';
import { formatBytes } from '../size';

export class DownloadReport {
  private readonly meter = new RateMeter();
  private readonly stopListening: () => void;

  private constructor(
    private readonly download: Download,
    private readonly size: number | null,
    job: number,
    emit: (event: EngineEvent) => void,
  ) {
    this.meter.restart(download.received);
    this.stopListening = download.onRetry((notice) => emit(retryEvent(job, notice)));
  }

  /** The report of `source`'s download; null where it is no download. */
  static of(source: Device, job: number, emit: (e: EngineEvent) => void): DownloadReport | null {
    if (!isStream(source) || !source.file.download) return null;
    return new DownloadReport(source.file.download, source.file.size, job, emit);
  }

  /** For start and progress events. */
  progress(): { download: DownloadProgress } {
    const d = this.download;
    this.meter.sample(d.received);
    return {
      download: {
        url: d.url,
        bytes: d.received,
        size: this.size,
        rate: this.meter.rate(),
        retries: d.retries,
        sha256: d.sha256,
      },
    };
  }

  /** For the done event. */
  summary(): { download: DownloadSummary } {
    const d = this.download;
    return {
      download: {
        url: d.url,
        bytes: d.received,
        retries: d.retries,
        sha256: d.sha256,
        sha256Matched: d.sha256 ? d.checked : null,
      },
    };
  }

  /** The job stops: a download waiting to try again does not keep it waiting. */
  giveUp(): void {
    this.download.giveUp();
  }

  close(): void {
    this.stopListening();
  }
}

function retryEvent(job: number, n: RetryNotice): EngineEvent {
  const seconds = n.delayMs >= 1000 ? `${Math.round(n.delayMs / 1000)} s` : `${n.delayMs} ms`;
  return {
    type: 'error',
    job,
    device: n.url,
    offset: n.position,
    fatal: false,
    retry: { attempt: n.attempt, attempts: n.attempts, delayMs: n.delayMs },
    message:
      `download: ${n.reason} at ${formatBytes(n.position)} into the file; trying again in ${seconds} ` +
      `(attempt ${n.attempt} of ${n.attempts})`,
  };
}
