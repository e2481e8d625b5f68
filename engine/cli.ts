// The `drivetwin` command line: the engine's first front end.
//
// Exit codes: 0 done, 1 failed, 2 bad usage or refused input (nothing written),
// 3 done with unreadable source extents, 4 verify found a mismatch, 130 stopped
// by a signal (resumable).

import { parseArgs, type ParseArgsConfig } from 'node:util';
import readline from 'node:readline';
import type { JobRecord } from './job-record';
import type { Metadata } from './metadata';
import type { JobOptions } from './options';
import type { SessionRequest } from './plan';
import type { DoneEvent, EngineEvent, ProgressEvent } from './protocol';
import { parseSize, formatBytes, formatDuration } from './size';
import { frame } from './transport';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  unreadable: 3,
  mismatch: 4,
  signal: 130,
} as const;

class UsageError extends Error {}

const USAGE = `Usage:
  drivetwin drives [--json]
  drivetwin clone SOURCE DEST [DEST...] [--region-size SIZE] [--threshold N] [--batch N]
        [--throttle PCT] [--max-rate RATE] [--sparse | --no-sparse] [--ignore-errors]
        [--sequential] [--verify] [--used-only [--zero-free]] [--from-map MAPFILE]
        [--fresh] [--yes] [--allow-mounted] [--allow-system] [--db PATH] [--json]
  drivetwin resume JOB [--threshold N] [--batch N] [--throttle PCT] [--max-rate RATE]
        [--ignore-errors] [--sequential] [--verify] [--drop DEST]... [--yes] [--db PATH] [--json]
  drivetwin verify SOURCE DEST [DEST...] [--region-size SIZE] [--json]
  drivetwin status [JOB] [--json]
  drivetwin jobs [--json]
  drivetwin map JOB [--format json|ddrescue]
  drivetwin forget JOB

SIZE and RATE: 4096, 64K, 4M, 1G (binary multiples; RATE is per second).
The job database is $DRIVETWIN_DB, or --db PATH, or the user data directory.`;

const COMMON = {
  db: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Flags that may change when a job goes on (engine/options.ts LIVE_OPTIONS). */
const LIVE = {
  ...COMMON,
  threshold: { type: 'string' },
  batch: { type: 'string' },
  throttle: { type: 'string' },
  'max-rate': { type: 'string' },
  'ignore-errors': { type: 'boolean' },
  sequential: { type: 'boolean' },
  verify: { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  'allow-mounted': { type: 'boolean' },
  'allow-system': { type: 'boolean' },
} as const;

const RESUME = {
  ...LIVE,
  drop: { type: 'string', multiple: true },
} as const;

const CLONE = {
  ...LIVE,
  'region-size': { type: 'string' },
  fresh: { type: 'boolean' },
  'used-only': { type: 'boolean' },
  'zero-free': { type: 'boolean' },
  'from-map': { type: 'string' },
  sparse: { type: 'boolean' },
  'no-sparse': { type: 'boolean' },
} as const;

type Values = Record<string, string | boolean | string[] | undefined>;

function parse(args: string[], options: ParseArgsConfig['options']) {
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Values, positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function size(name: string, text: Values[string]): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseSize(String(text));
  } catch (e) {
    throw new UsageError(`--${name}: ${(e as Error).message}`);
  }
}

function jobId(text: string | undefined): number {
  if (!text || !/^\d+$/.test(text))
    throw new UsageError(`a job number is needed, not "${text ?? ''}"`);
  return Number(text);
}

/** An output sink: JSON lines for programs, words for people. */
class Output {
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
    const line =
      `${what}${pct.padStart(5)}%  ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}  ` +
      `${formatBytes(p.rate)}/s  ${eta}`;
    process.stderr.write(`\r${line}\x1b[K`);
    this.progressShown = true;
  }

  private clearProgress(): void {
    if (this.progressShown) process.stderr.write('\r\x1b[K');
    this.progressShown = false;
  }
}

function openMetadata(values: Values): Metadata {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Metadata } = require('./metadata') as typeof import('./metadata');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { databasePath } = require('./database') as typeof import('./database');
  return Metadata.open(databasePath(values.db as string | undefined));
}

async function askOnTerminal(
  drives: Array<{ path: string; detail: string }>,
  yes: boolean,
): Promise<boolean> {
  if (yes) return true;
  if (!process.stdin.isTTY) {
    throw new UsageError(
      `writing to ${drives.map((d) => d.path).join(', ')} needs confirmation: ` +
        'run on a terminal or pass --yes',
    );
  }
  process.stderr.write('These drives will be overwritten, everything on them lost:\n');
  for (const d of drives) process.stderr.write(`  ${d.path}  ${d.detail}\n`);
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  const answer = await new Promise<string>((resolve) =>
    rl.question('Type "yes" to go on: ', resolve),
  );
  rl.close();
  return answer.trim().toLowerCase() === 'yes';
}

/** Prints what the session says; the session alone knows the job. */
function show(out: Output, e: EngineEvent): void {
  switch (e.type) {
    case 'start': {
      out.event(e);
      const what = {
        new: 'Started',
        resume: 'Resuming',
        update: `Updating (${e.delta ?? 0} regions differ)`,
      }[e.intent];
      const already =
        e.intent === 'resume' && e.regionsHydrated > 0
          ? `, ${e.regionsHydrated} of ${e.regionsTotal} regions already done`
          : '';
      const size = `${e.sizeKnown ? '' : 'about '}${formatBytes(e.bytesTotal)}`;
      return out.say(
        `${what} job ${e.job}: ${e.source} → ${e.destinations.join(', ')} (${size}${already})`,
      );
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
      }
      return;
    case 'done':
      out.event(e);
      return out.say(summary(e));
    case 'region-map':
      return; // the app draws it; the terminal has the progress line
  }
}

async function runSession(
  out: Output,
  meta: Metadata,
  request: SessionRequest,
  yes: boolean,
): Promise<number> {
  const { JobSession } = await import('./session');
  const session = await JobSession.open(meta, request, (drives) => askOnTerminal(drives, yes));
  session.on('event', (e: EngineEvent) => show(out, e));
  let signalled = false;
  const onSignal = (): void => {
    signalled = true;
    out.warn('stopping: finishing the copies in flight and committing…');
    session.cancel();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let done: DoneEvent;
  try {
    done = await session.run();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (signalled && done.state !== 'done') return EXIT.signal;
  if (done.state !== 'done' || done.failedDestinations.length > 0) return EXIT.failed;
  if (done.verified === false) return EXIT.mismatch;
  if (done.unreadableBytes > 0) return EXIT.unreadable;
  return EXIT.ok;
}

function summary(d: DoneEvent): string {
  const words = {
    done: 'Done',
    interrupted: 'Stopped (resumable)',
    failed: 'Failed (resumable)',
  }[d.state];
  const rate = d.seconds > 0 ? d.bytesRead / d.seconds : 0;
  const parts = [
    `${words}: job ${d.job}, ${formatBytes(d.bytesRead)} read, ${formatBytes(d.bytesWritten)} written in ${d.seconds.toFixed(1)} s (${formatBytes(rate)}/s)`,
  ];
  if (d.unreadableBytes > 0)
    parts.push(`${formatBytes(d.unreadableBytes)} of the source unreadable`);
  for (const dest of d.destinations ?? []) {
    if (dest.state !== 'failed') continue;
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

/** The options given on the command line, and only those. */
function givenOptions(v: Values): Partial<JobOptions> {
  const given: Partial<JobOptions> = {};
  if (v.threshold !== undefined) given.threshold = integer('threshold', v.threshold, 0);
  if (v.batch !== undefined) given.batch = integer('batch', v.batch, 0);
  if (v.throttle !== undefined) given.throttle = integer('throttle', v.throttle, 0);
  // A rate of 0 lifts the cap (useful on resume).
  if (v['max-rate'] !== undefined)
    given.maxRate = v['max-rate'] === '0' ? 0 : size('max-rate', v['max-rate']);
  if (v['ignore-errors']) given.ignoreErrors = true;
  if (v.sequential) given.sequential = true;
  if (v.verify) given.verify = true;
  if (v.sparse && v['no-sparse']) throw new UsageError('--sparse and --no-sparse contradict');
  if (v.sparse) given.sparse = true;
  if (v['no-sparse']) given.sparse = false;
  if (v['used-only']) given.usedOnly = true;
  if (v['zero-free']) given.zeroFree = true;
  return given;
}

function integer(name: string, text: Values[string], fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (typeof text !== 'string' || !/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new UsageError(`--${name} takes a whole number, not "${String(text)}"`);
  }
  return n;
}

/** A job's state as a person reads it: a copy that was to be verified and wasn't says so. */
function stateWords(job: JobRecord): string {
  if (job.state !== 'done') return job.state;
  if (job.verified === true) return 'verified';
  if (job.verified === false) return 'differs';
  return job.options.verify ? 'copied, not verified' : 'done';
}

function jobLine(job: JobRecord): string {
  const pct = job.regionsTotal ? ((100 * job.regionsHydrated) / job.regionsTotal).toFixed(1) : '0';
  const dests = job.destinations
    .map((d) => (d.dropped ? `${d.path} (dropped)` : d.failed ? `${d.path} (failed)` : d.path))
    .join(', ');
  return `${String(job.id).padStart(4)}  ${stateWords(job).padEnd(20)} ${pct.padStart(5)}%  ${formatBytes(job.sourceSize).padStart(10)}  ${job.source} → ${dests}  ${job.updatedAt}`;
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
    bytesTotal: job.sourceSize,
    regionSize: job.regionSize,
    regionsHydrated: job.regionsHydrated,
    regionsTotal: job.regionsTotal,
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

const commands: Record<string, (args: string[]) => Promise<number>> = {
  async drives(args) {
    const { values } = parse(args, COMMON);
    const { listDrives, formatDrivesTable } = await import('./drives/list');
    const drives = await listDrives();
    if (values.json) for (const d of drives) process.stdout.write(frame({ type: 'drive', ...d }));
    else process.stdout.write(formatDrivesTable(drives) + '\n');
    return EXIT.ok;
  },

  async clone(args) {
    const { values, positionals } = parse(args, CLONE);
    if (positionals.length < 2) throw new UsageError('clone needs a SOURCE and at least one DEST');
    const request: SessionRequest = {
      kind: 'clone',
      source: positionals[0],
      destinations: positionals.slice(1),
      regionSize: size('region-size', values['region-size']),
      options: givenOptions(values),
      allowMounted: Boolean(values['allow-mounted']),
      allowSystem: Boolean(values['allow-system']),
      fromMap: values['from-map'] as string | undefined,
      fresh: Boolean(values.fresh),
    };
    const meta = openMetadata(values);
    return runSession(new Output(Boolean(values.json)), meta, request, Boolean(values.yes));
  },

  async resume(args) {
    const { values, positionals } = parse(args, RESUME);
    const request: SessionRequest = {
      kind: 'resume',
      job: jobId(positionals[0]),
      options: givenOptions(values),
      drop: values.drop as string[] | undefined,
      allowMounted: Boolean(values['allow-mounted']),
      allowSystem: Boolean(values['allow-system']),
    };
    const meta = openMetadata(values);
    return runSession(new Output(Boolean(values.json)), meta, request, Boolean(values.yes));
  },

  async verify(args) {
    const { values, positionals } = parse(args, { ...COMMON, 'region-size': CLONE['region-size'] });
    if (positionals.length < 2) throw new UsageError('verify needs a SOURCE and at least one DEST');
    const out = new Output(Boolean(values.json));
    const { openReadable, Refused } = await import('./open');
    const { verify } = await import('./verify');
    const { makeGeometry, regionRange, DEFAULT_REGION_SIZE } = await import('./geometry');
    const [source, ...dests] = await Promise.all(
      positionals.map((p, i) => openReadable(p, i === 0 ? 'source' : 'destination')),
    );
    try {
      // A stream of unknown size is compared up to its end (at most the smallest destination).
      const { knownSize } = await import('./io/device');
      const length = knownSize(source) ?? Math.min(...dests.map((d) => d.size));
      const short = dests.find((d) => d.size < length);
      if (short) throw new Refused(`${short.path} is smaller than the source ${source.path}`);
      const geometry = makeGeometry(
        length,
        size('region-size', values['region-size']) ?? DEFAULT_REGION_SIZE,
      );
      const began = performance.now();
      let done = 0;
      const ticker = setInterval(() => {
        const seconds = (performance.now() - began) / 1000;
        out.event({
          type: 'verify-progress',
          bytesDone: done,
          bytesTotal: length,
          rate: Math.round(done / seconds),
        });
      }, 500);
      const result = await verify(source, dests, geometry, {
        onProgress: (n) => (done = n),
      }).finally(() => clearInterval(ticker));
      const seconds = (performance.now() - began) / 1000;
      const equal = Object.values(result.mismatchedRegions).every((r) => r.length === 0);
      out.event({
        type: 'verify',
        equal,
        bytesCompared: result.bytesCompared,
        seconds,
        regionSize: geometry.regionSize,
        mismatches: result.mismatchedRegions,
        unreadable: result.skipped,
      });
      for (const [dest, regions] of Object.entries(result.mismatchedRegions)) {
        for (const r of regions) {
          const at = regionRange(geometry, r);
          out.say(`${dest}: region ${r} (bytes ${at.offset}+${at.length}) differs`);
        }
      }
      for (const r of result.skipped)
        out.warn(`source unreadable at bytes ${r.offset}+${r.length}: not compared`);
      out.say(
        equal
          ? `Equal: ${formatBytes(result.bytesCompared)} compared in ${seconds.toFixed(1)} s`
          : 'DIFFERENT: clone again to copy just the differing regions',
      );
      return equal ? EXIT.ok : EXIT.mismatch;
    } finally {
      await Promise.all([source, ...dests].map((d) => d.close()));
    }
  },

  async status(args) {
    const { values, positionals } = parse(args, COMMON);
    const meta = openMetadata(values);
    const { statusLine } = await import('./status-line');
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
    const { regionMapReport, ddrescueMapfile } = await import('./map-export');
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

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE + '\n');
    process.exitCode = command ? EXIT.ok : EXIT.usage;
    return;
  }
  const json = rest.includes('--json');
  let code: number;
  try {
    const run = commands[command];
    if (!run) throw new UsageError(`unknown command "${command}"`);
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(USAGE + '\n');
      return;
    }
    code = await run(rest);
  } catch (e) {
    code = await exitCodeFor(e);
    const message = (e as Error).message;
    if (json)
      process.stdout.write(
        JSON.stringify({ type: 'error', job: null, message, fatal: true }) + '\n',
      );
    process.stderr.write(`drivetwin: ${message}\n`);
    if (e instanceof UsageError && !e.message.includes('confirmation')) {
      process.stderr.write(`Run "drivetwin --help" for usage.\n`);
    }
  }
  process.exitCode = code;
}

async function exitCodeFor(e: unknown): Promise<number> {
  if (e instanceof UsageError) return EXIT.usage;
  const { Refused } = await import('./open');
  const { MetadataError } = await import('./database');
  if (e instanceof Refused || e instanceof MetadataError) return EXIT.usage;
  return EXIT.failed;
}
