// The `drivetwin` command line: the engine's first front end.
//
// Exit codes: 0 done, 1 failed, 2 bad usage or refused input (nothing written),
// 3 done with unreadable source extents, 4 verify found a mismatch, 130 stopped
// by a signal (resumable).

import { parseArgs, type ParseArgsConfig } from 'node:util';
import readline from 'node:readline';
import type { Metadata, JobOptions, JobRecord } from './metadata';
import type { EngineEvent, DoneEvent, ProgressEvent } from './protocol';
import { parseSize, formatBytes, formatDuration } from './size';

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
        [--yes] [--allow-mounted] [--allow-system] [--db PATH] [--json]
  drivetwin resume JOB [--threshold N] [--batch N] [--throttle PCT] [--max-rate RATE]
        [--ignore-errors] [--sequential] [--verify] [--yes] [--db PATH] [--json]
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

/** Flags that may change when a job resumes. */
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

const CLONE = {
  ...LIVE,
  'region-size': { type: 'string' },
  'used-only': { type: 'boolean' },
  'zero-free': { type: 'boolean' },
  'from-map': { type: 'string' },
  sparse: { type: 'boolean' },
  'no-sparse': { type: 'boolean' },
} as const;

type Values = Record<string, string | boolean | undefined>;

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

function integer(name: string, text: string | boolean | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (typeof text !== 'string' || !/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new UsageError(`--${name} takes a whole number, not "${text}"`);
  }
  return n;
}

function size(name: string, text: string | boolean | undefined): number | undefined {
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
    if (this.json) process.stdout.write(JSON.stringify(e) + '\n');
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

  progress(p: ProgressEvent): void {
    if (this.json) return this.event(p);
    const pct = p.bytesTotal ? ((100 * p.bytesDone) / p.bytesTotal).toFixed(1) : '100.0';
    const line =
      `${pct.padStart(5)}%  ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}  ` +
      `${formatBytes(p.rate)}/s  ETA ${p.eta === null ? '--:--' : formatDuration(p.eta)}` +
      `${p.paused ? '  (paused)' : ''}`;
    if (process.stderr.isTTY) {
      process.stderr.write(`\r${line}\x1b[K`);
      this.progressShown = true;
    }
  }

  private clearProgress(): void {
    if (this.progressShown) process.stderr.write('\r\x1b[K');
    this.progressShown = false;
  }
}

function openMetadata(values: Values): Metadata {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Metadata, defaultDatabasePath } = require('./metadata') as typeof import('./metadata');
  const file =
    (values.db as string | undefined) ?? process.env.DRIVETWIN_DB ?? defaultDatabasePath();
  return Metadata.open(file);
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

async function runJob(
  out: Output,
  prepare: (
    confirm: (drives: Array<{ path: string; detail: string }>) => Promise<boolean>,
  ) => Promise<import('./setup').PreparedJob>,
  yes: boolean,
): Promise<number> {
  const prepared = await prepare((drives) => askOnTerminal(drives, yes));
  const { job, record, resumed } = prepared;
  const { startEvent, verifyClone } = await import('./session');
  const start = startEvent(prepared);
  out.event(start);
  const what =
    prepared.delta !== null
      ? `Updating job ${job.id}: ${prepared.delta} regions differ`
      : `${resumed ? 'Resuming' : 'Started'} job ${job.id}`;
  out.say(
    `${what}: ${record.source} → ${start.destinations.join(', ')} (${formatBytes(start.bytesTotal)}` +
      `${resumed ? `, ${formatBytes(job.progress().bytesDone)} already done` : ''})`,
  );
  job.on('event', (e: EngineEvent) => {
    out.event(e);
    if (e.type === 'error') out.warn(`error: ${e.message}`);
    if (e.type === 'mode') out.warn(`metadata is now ${e.mode}: ${e.reason}`);
  });
  let signalled = false;
  const onSignal = (): void => {
    signalled = true;
    out.warn('stopping: finishing the copies in flight and committing…');
    job.cancel();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const ticker = setInterval(() => out.progress(job.progress()), 500);
  let done: DoneEvent;
  try {
    done = await job.run();
    out.progress(job.progress());
  } finally {
    clearInterval(ticker);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (done.state === 'done' && record.options.verify) {
    out.say('Verifying…');
    const result = await verifyClone(prepared, done);
    for (const [dest, ranges] of Object.entries(result.mismatches)) {
      for (const r of ranges) out.warn(`verify: ${dest} differs at bytes ${r.offset}+${r.length}`);
    }
  }
  await prepared.close();
  out.event(done);
  out.say(summary(done));
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
  if (d.failedDestinations.length) parts.push(`failed: ${d.failedDestinations.join(', ')}`);
  if (d.verified !== undefined) parts.push(d.verified ? 'verified' : 'VERIFY FOUND DIFFERENCES');
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
  return given;
}

function cloneOptions(v: Values): JobOptions {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { DEFAULT_OPTIONS } = require('./setup') as typeof import('./setup');
  if (v.sparse && v['no-sparse']) throw new UsageError('--sparse and --no-sparse contradict');
  return {
    ...DEFAULT_OPTIONS,
    ...givenOptions(v),
    sparse: v.sparse ? true : v['no-sparse'] ? false : null,
    usedOnly: Boolean(v['used-only']),
    zeroFree: Boolean(v['zero-free']),
  };
}

function jobLine(job: JobRecord): string {
  const pct = job.regionsTotal ? ((100 * job.regionsHydrated) / job.regionsTotal).toFixed(1) : '0';
  const dests = job.destinations.map((d) => (d.failed ? `${d.path} (failed)` : d.path)).join(', ');
  return `${String(job.id).padStart(4)}  ${job.state.padEnd(11)} ${pct.padStart(5)}%  ${formatBytes(job.sourceSize).padStart(10)}  ${job.source} → ${dests}  ${job.updatedAt}`;
}

function jobJson(job: JobRecord): Record<string, unknown> {
  return {
    type: 'job',
    job: job.id,
    state: job.state,
    mode: job.mode,
    source: job.source,
    destinations: job.destinations.map((d) => ({ path: d.path, size: d.size, failed: d.failed })),
    bytesTotal: job.sourceSize,
    regionSize: job.regionSize,
    regionsHydrated: job.regionsHydrated,
    regionsTotal: job.regionsTotal,
    unreadableBytes: job.unreadableBytes,
    options: job.options,
    error: job.error,
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
    if (values.json)
      for (const d of drives) process.stdout.write(JSON.stringify({ type: 'drive', ...d }) + '\n');
    else process.stdout.write(formatDrivesTable(drives) + '\n');
    return EXIT.ok;
  },

  async clone(args) {
    const { values, positionals } = parse(args, CLONE);
    if (positionals.length < 2) throw new UsageError('clone needs a SOURCE and at least one DEST');
    const options = cloneOptions(values);
    const regionSize = size('region-size', values['region-size']);
    const meta = openMetadata(values);
    const { setUpClone } = await import('./setup');
    return runJob(
      new Output(Boolean(values.json)),
      (confirm) =>
        setUpClone(
          meta,
          {
            source: positionals[0],
            destinations: positionals.slice(1),
            regionSize,
            options,
            allowMounted: Boolean(values['allow-mounted']),
            allowSystem: Boolean(values['allow-system']),
            fromMap: values['from-map'] as string | undefined,
          },
          confirm,
        ),
      Boolean(values.yes),
    );
  },

  async resume(args) {
    const { values, positionals } = parse(args, LIVE);
    const id = jobId(positionals[0]);
    const options = givenOptions(values);
    const meta = openMetadata(values);
    const { setUpResume } = await import('./setup');
    return runJob(
      new Output(Boolean(values.json)),
      (confirm) =>
        setUpResume(meta, id, confirm, options, {
          allowMounted: Boolean(values['allow-mounted']),
          allowSystem: Boolean(values['allow-system']),
        }),
      Boolean(values.yes),
    );
  },

  async verify(args) {
    const { values, positionals } = parse(args, { ...COMMON, 'region-size': CLONE['region-size'] });
    if (positionals.length < 2) throw new UsageError('verify needs a SOURCE and at least one DEST');
    const out = new Output(Boolean(values.json));
    const { openReadable, Refused } = await import('./setup');
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
    const { statusLine } = await import('./job');
    const jobs = positionals[0] ? [needJob(meta, jobId(positionals[0]))] : meta.listJobs();
    for (const job of jobs) {
      const line =
        job.state === 'running' && job.statusLine
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
            status: line,
            error: job.error,
          }) + '\n',
        );
      } else {
        process.stdout.write(
          `${job.id}: ${job.state}: ${line}${job.error ? `  (${job.error})` : ''}\n`,
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
    if (job.state === 'running') throw new UsageError(`job ${id} is running (process ${job.pid})`);
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
  const { Refused } = await import('./setup');
  const { MetadataError } = await import('./metadata');
  if (e instanceof Refused || e instanceof MetadataError) return EXIT.usage;
  return EXIT.failed;
}
