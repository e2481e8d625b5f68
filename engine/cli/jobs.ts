// The commands that only read (or forget) jobs in the job database: status, jobs, map,
// forget.

import { type JobRecord, canResume } from '../store/job-record';
import type { Metadata } from '../store/metadata';
import { COMMON, EXIT, UsageError, jobId, openMetadata, parse } from './args';
import { formatBytes } from '../size';

/** A job's state as a person reads it: a copy that was to be verified and wasn't says so. */
function stateWords(job: JobRecord): string {
  if (job.unresumable) return `${job.state}, for good`;
  if (job.state !== 'done') return job.state;
  if (job.verified === true) return 'verified';
  if (job.verified === false) return 'differs';
  return job.options.verify ? 'copied, not verified' : 'done';
}

/** Bytes hydrated: regions, the last one short where the size is known. */
function bytesCopied(job: JobRecord): number {
  const bytes = job.regionsHydrated * job.regionSize;
  return job.sourceSize > 0 ? Math.min(bytes, job.sourceSize) : bytes;
}

function jobLine(job: JobRecord): string {
  // A source whose end was never read: what was copied, not a share of a size nobody knows.
  const known = job.regionsTotal > 0;
  const pct = known ? ((100 * job.regionsHydrated) / job.regionsTotal).toFixed(1) : '?';
  const size = known ? formatBytes(job.sourceSize) : `≥ ${formatBytes(bytesCopied(job))}`;
  const dests = job.destinations
    .map((d) => (d.dropped ? `${d.path} (dropped)` : d.failed ? `${d.path} (failed)` : d.path))
    .join(', ');
  return `${String(job.id).padStart(4)}  ${stateWords(job).padEnd(20)} ${pct.padStart(5)}%  ${size.padStart(10)}  ${job.source} → ${dests}  ${job.updatedAt}`;
}

function jobJson(job: JobRecord): Record<string, unknown> {
  return {
    type: 'job',
    job: job.id,
    state: job.state,
    mode: job.mode,
    source: job.source,
    verified: job.verified,
    destinations: job.destinations.map((d) => ({
      path: d.path,
      size: d.size,
      failed: d.failed,
      dropped: d.dropped,
    })),
    // Null while the source's size is unknown (its end was never read).
    bytesTotal: job.sourceSize || null,
    bytesCopied: bytesCopied(job),
    regionSize: job.regionSize,
    regionsHydrated: job.regionsHydrated,
    regionsTotal: job.regionsTotal || null,
    resumable: canResume(job),
    unreadableBytes: job.unreadableBytes,
    options: job.options,
    error: job.error,
    copySeconds: job.copySeconds,
    verifySeconds: job.verifySeconds,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    finishedAt: job.finishedAt,
  };
}

function needJob(meta: Metadata, id: number): JobRecord {
  const job = meta.getJob(id);
  if (!job) throw new UsageError(`there is no job ${id}`);
  return job;
}

export const jobCommands: Record<string, (args: string[]) => Promise<number>> = {
  async status(args) {
    const { values, positionals } = parse(args, COMMON);
    const meta = openMetadata(values);
    const { statusLine } = await import('../hydration/status-line');
    const jobs = positionals[0] ? [needJob(meta, jobId(positionals[0]))] : meta.listJobs();
    for (const job of jobs) {
      const line =
        (job.state === 'running' || job.state === 'verifying') && job.statusLine
          ? job.statusLine
          : statusLine({
              regionSize: job.regionSize,
              hydrated: job.regionsHydrated,
              total: job.regionsTotal || null,
              hydrating: 0,
              paused: false,
              sparse: job.destinations.some(
                (d) => job.options.sparse ?? d.identity.kind === 'file',
              ),
              options: job.options,
              mode: job.mode,
            });
      if (values.json) {
        process.stdout.write(
          JSON.stringify({
            type: 'status',
            job: job.id,
            state: job.state,
            verified: job.verified,
            status: line,
            error: job.error,
          }) + '\n',
        );
      } else {
        process.stdout.write(
          `${job.id}: ${stateWords(job)}: ${line}${job.error ? `  (${job.error})` : ''}\n`,
        );
      }
    }
    return EXIT.ok;
  },

  async jobs(args) {
    const { values } = parse(args, COMMON);
    const meta = openMetadata(values);
    for (const job of meta.listJobs()) {
      process.stdout.write((values.json ? JSON.stringify(jobJson(job)) : jobLine(job)) + '\n');
    }
    return EXIT.ok;
  },

  async map(args) {
    const { values, positionals } = parse(args, { ...COMMON, format: { type: 'string' } });
    const format = (values.format as string | undefined) ?? 'json';
    if (format !== 'json' && format !== 'ddrescue') {
      throw new UsageError(`--format is json or ddrescue, not "${format}"`);
    }
    const meta = openMetadata(values);
    const job = needJob(meta, jobId(positionals[0]));
    const { regionMapReport, ddrescueMapfile } = await import('../store/map-export');
    const report = regionMapReport(job, meta.loadBitmap(job), meta.loadUnreadable(job.id));
    process.stdout.write(
      format === 'json' ? JSON.stringify(report) + '\n' : ddrescueMapfile(report),
    );
    return EXIT.ok;
  },

  async forget(args) {
    const { values, positionals } = parse(args, COMMON);
    const id = jobId(positionals[0]);
    const meta = openMetadata(values);
    const job = needJob(meta, id);
    if (job.state === 'running' || job.state === 'verifying')
      throw new UsageError(`job ${id} is running (process ${job.pid})`);
    meta.forget(id);
    if (!values.json) process.stdout.write(`Forgot job ${id}.\n`);
    return EXIT.ok;
  },
};
