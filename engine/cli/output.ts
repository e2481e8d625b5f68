// How the command line shows a job session's events: words for people (a progress
// line on a terminal, a summary at the end), JSON lines for programs (--json).

import type {
  DoneEvent,
  DownloadSummary,
  EngineEvent,
  ProgressEvent,
  ServeEvent,
  UsedSpaceInfo,
} from '../events';
import { formatBytes, formatDuration } from '../size';
import { frame } from '../host/transport';

/** An output sink: JSON lines for programs, words for people. */
export class Output {
  private progressShown = false;
  constructor(readonly json: boolean) {}

  event(e: EngineEvent | Record<string, unknown>): void {
    if (this.json) process.stdout.write(frame(e));
  }

  say(text: string): void {
    if (this.json) return;
    this.clearProgress();
    process.stdout.write(text + '\n');
  }

  warn(text: string): void {
    this.clearProgress();
    process.stderr.write(text + '\n');
  }

  /** The progress line on a terminal; every event for programs. */
  progress(p: ProgressEvent): void {
    if (this.json) return this.event(p);
    if (!process.stderr.isTTY) return;
    const pct = p.bytesTotal ? ((100 * p.bytesDone) / p.bytesTotal).toFixed(1) : '100.0';
    const what = p.phase === 'copying' ? '' : `${p.phase} `.padEnd(10);
    const paused = p.paused;
    const eta = paused ? 'paused' : `ETA ${p.eta === null ? '--:--' : formatDuration(p.eta)}`;
    // A throttle percent is a share of the full speed: say of what.
    const share =
      p.throttle.percent < 100 && p.fullSpeed !== null
        ? `  (${p.throttle.percent} % of ${formatBytes(p.fullSpeed)}/s)`
        : '';
    const download = p.download ? `  downloading ${formatBytes(p.download.rate)}/s` : '';
    const line =
      `${what}${pct.padStart(5)}%  ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}  ` +
      `${formatBytes(p.rate)}/s${share}${download}  ${eta}`;
    process.stderr.write(`\r${line}\x1b[K`);
    this.progressShown = true;
  }

  private clearProgress(): void {
    if (this.progressShown) process.stderr.write('\r\x1b[K');
    this.progressShown = false;
  }
}

/** Prints what the session says; the session alone knows the job. */
export function show(out: Output, e: EngineEvent): void {
  switch (e.type) {
    case 'start': {
      out.event(e);
      const what = {
        new: 'Started',
        resume: 'Resuming',
        update: `Updating (${e.delta ?? 0} regions differ)`,
      }[e.intent];
      // While the size is a guess, so is the region count: only what is done is said.
      const of = e.sizeKnown ? ` of ${e.regionsTotal}` : '';
      const already =
        e.intent === 'resume' && e.regionsHydrated > 0
          ? `, ${e.regionsHydrated}${of} regions already done`
          : '';
      const size = `${e.sizeKnown ? '' : 'about '}${formatBytes(e.bytesTotal)}`;
      out.say(
        `${what} job ${e.job}: ${e.source} → ${e.destinations.join(', ')} (${size}${already})`,
      );
      if (e.usedSpace) for (const line of usedSpaceLines(e.usedSpace)) out.say(line);
      if (e.sizeNote) out.warn(`note: ${e.sizeNote}`);
      return;
    }
    case 'progress':
      return out.progress(e);
    case 'verify-progress':
      return out.event(e); // the progress line shows it too
    case 'error':
      out.event(e);
      return out.warn(`error: ${e.message}`);
    case 'mode':
      out.event(e);
      return out.warn(`metadata is now ${e.mode}: ${e.reason}`);
    case 'verify':
      out.event(e);
      for (const d of e.destinations) {
        for (const r of d.mismatches)
          out.warn(`verify: ${d.path} differs at bytes ${r.offset}+${r.length}`);
        if (d.tableProblem) out.warn(`verify: ${d.path}: ${d.tableProblem}`);
      }
      if (e.written) {
        const bytes = e.written.reduce((n, r) => n + r.length, 0);
        out.say(`verify: ${formatBytes(bytes)} written through the served disk, not compared`);
      }
      return;
    case 'serve':
      out.event(e);
      // Clients coming and going are for programs; people are told where and when it ends.
      return e.state === 'serving' ? undefined : out.say(serving(e));
    case 'done':
      out.event(e);
      return out.say(summary(e));
    case 'region-map':
      return; // the app draws it; the terminal has the progress line
  }
}

/** What a used-only copy reads, partition by partition. */
export function usedSpaceLines(u: UsedSpaceInfo): string[] {
  const table = u.table === 'none' ? '' : ` (${u.table.toUpperCase()})`;
  const lines = [
    `Used space only${table}: ${formatBytes(u.bytesToCopy)} of ${formatBytes(u.bytesTotal)} to read`,
  ];
  for (const a of u.areas) {
    const name = a.partition === 0 ? 'the file system' : `partition ${a.partition}`;
    const what = a.copy === 'used' ? `${formatBytes(a.bytes)} used` : a.note;
    lines.push(`  ${name}, ${a.fs ?? 'unknown'}, ${formatBytes(a.size)}: ${what}`);
  }
  if (u.table !== 'none') {
    const after = u.afterLastBytes
      ? `; ${formatBytes(u.afterLastBytes)} after the last partition, in none, left out`
      : '';
    lines.push(
      `  outside the partitions: ${formatBytes(u.outsideBytes)} copied as it is (tables, gaps)${after}`,
    );
  }
  return lines;
}

function downloadWords(d: DownloadSummary): string {
  const retried =
    d.retries > 0 ? `, ${d.retries} connection${d.retries > 1 ? 's' : ''} retried` : '';
  const check =
    d.sha256 === null
      ? ''
      : d.sha256Matched === true
        ? '; SHA-256 verified'
        : d.sha256Matched === false
          ? '; SHA-256 MISMATCH'
          : '; SHA-256 not checked (the file was not read whole in this run)';
  return `${formatBytes(d.bytes)} downloaded${retried}${check}`;
}

function serving(e: ServeEvent): string {
  const attach =
    `attach it with: nbdfuse DIR/disk '${e.uri}' (then losetup -f --show DIR/disk), ` +
    `or nbd-client -unix ${e.socket} /dev/nbd0`;
  const clients = e.clients === 1 ? '1 connection' : `${e.clients} connections`;
  if (e.state === 'closed') return `No longer serving ${e.uri}`;
  if (e.state === 'waiting') {
    return `Copied; still serving ${e.uri} (${clients}): disconnect (or Ctrl-C) to finish`;
  }
  return `Serving the copy at ${e.uri} while it copies; ${attach}`;
}

function summary(d: DoneEvent): string {
  const words = {
    done: 'Done',
    interrupted: 'Stopped (resumable)',
    failed: d.resumable ? 'Failed (resumable)' : 'Failed (can’t be resumed)',
  }[d.state];
  const rate = d.seconds > 0 ? d.bytesRead / d.seconds : 0;
  const parts = [
    `${words}: job ${d.job}, ${formatBytes(d.bytesRead)} read, ${formatBytes(d.bytesWritten)} written in ${d.seconds.toFixed(1)} s (${formatBytes(rate)}/s)`,
  ];
  if (d.unreadableBytes > 0)
    parts.push(`${formatBytes(d.unreadableBytes)} of the source unreadable`);
  if (d.download) parts.push(downloadWords(d.download));
  for (const dest of d.destinations ?? []) {
    // Said only when there is something to say: an eject, or a drive not to pull out yet.
    const removal = dest.removal;
    if (removal?.ejected) parts.push(`${dest.path} ejected: safe to remove`);
    else if (removal && (!removal.safeToRemove || removal.note)) {
      const safe = removal.safeToRemove ? 'safe to remove' : 'NOT safe to remove yet';
      parts.push(`${dest.path} ${safe}${removal.note ? `: ${removal.note}` : ''}`);
    }
    if (dest.state !== 'failed' || !d.resumable) continue;
    parts.push(
      `${dest.path} failed (${dest.error}): once it is fixed, "drivetwin resume ${d.job}" brings it ` +
        `back; "drivetwin resume ${d.job} --drop ${dest.path}" finishes without it`,
    );
  }
  if (d.verified !== undefined) {
    parts.push(
      d.verified ? 'verified' : 'VERIFY FOUND DIFFERENCES (or a destination was not compared)',
    );
  } else if (d.state === 'done' && d.error) {
    parts.push(`not verified: ${d.error}`);
  }
  return parts.join('; ');
}
