// The `drivetwin` command line: the engine's first front end.
//
// Exit codes: 0 done, 1 failed, 2 bad usage or refused input (nothing written),
// 3 done with unreadable source extents, 4 verify found a mismatch, 130 stopped
// by a signal (resumable).

import path from 'node:path';
import readline from 'node:readline';
import type { Confirm } from '../session/plan';
import type { Metadata } from '../store/metadata';
import type { JobOptions } from '../options';
import type { SessionRequest } from '../session/plan';
import type { DoneEvent, EngineEvent } from '../events';
import { COMMON, EXIT, UsageError, jobId, openMetadata, parse, size, type Values } from './args';
import { jobCommands } from './jobs';
import { Output, show } from './output';
import { formatBytes, formatDuration } from '../size';
import { frame } from '../host/transport';

export { EXIT } from './args';

const USAGE = `Usage:
  drivetwin drives [--json]
  drivetwin clone SOURCE DEST [DEST...] [--region-size SIZE] [--threshold N] [--batch N]
        [--throttle PCT] [--max-rate RATE] [--sparse | --no-sparse] [--ignore-errors]
        [--sequential] [--verify] [--used-only [--zero-free]] [--from-map MAPFILE]
        [--fit] [--new-ids] [--fresh] [--measure] [--yes] [--allow-mounted] [--allow-system]
        [--eject] [--serve SOCKET] [--sha256 HEX] [--db PATH] [--json]
  drivetwin resume JOB [--threshold N] [--batch N] [--throttle PCT] [--max-rate RATE]
        [--ignore-errors] [--sequential] [--verify] [--drop DEST]... [--yes] [--eject]
        [--serve SOCKET] [--db PATH] [--json]
  drivetwin verify SOURCE DEST [DEST...] [--region-size SIZE] [--json]
  drivetwin size SOURCE [--json]
  drivetwin status [JOB] [--json]
  drivetwin jobs [--json]
  drivetwin map JOB [--format json|ddrescue]
  drivetwin forget JOB

SOURCE may be an http:// or https:// URL: downloaded as it is copied, resumable;
--sha256 HEX (else a .sha256 file next to it) checks the whole download.
SIZE and RATE: 4096, 64K, 4M, 1G (binary multiples; RATE is per second).
--serve SOCKET: while it copies, the destination (the first one) is served over NBD at
nbd+unix:///?socket=SOCKET, as it will be: attach it with nbdfuse or nbd-client.
The job database is $DRIVETWIN_DB, or --db PATH, or the user data directory.`;

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
  /** Not a job option: this run ejects its drives when the copy is done. */
  eject: { type: 'boolean' },
  /** Not a job option: this run serves the destination over NBD while it hydrates. */
  serve: { type: 'string' },
} as const;

const RESUME = {
  ...LIVE,
  drop: { type: 'string', multiple: true },
} as const;

const CLONE = {
  ...LIVE,
  'region-size': { type: 'string' },
  fresh: { type: 'boolean' },
  measure: { type: 'boolean' },
  'used-only': { type: 'boolean' },
  'zero-free': { type: 'boolean' },
  'from-map': { type: 'string' },
  sparse: { type: 'boolean' },
  'no-sparse': { type: 'boolean' },
  fit: { type: 'boolean' },
  'new-ids': { type: 'boolean' },
  sha256: { type: 'string' },
} as const;

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

async function runSession(
  out: Output,
  meta: Metadata,
  request: SessionRequest,
  values: Values,
): Promise<number> {
  const { JobSession } = await import('../session/session');
  const confirm: Confirm = (drives) => askOnTerminal(drives, Boolean(values.yes));
  const serve =
    values.serve === undefined ? undefined : { socket: path.resolve(String(values.serve)) };
  const session = await JobSession.open(meta, request, confirm, {
    eject: Boolean(values.eject),
    serve,
  });
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
  if (v.fit) given.fit = true;
  if (v['new-ids']) given.newIds = true;
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

const commands: Record<string, (args: string[]) => Promise<number>> = {
  async drives(args) {
    const { values } = parse(args, COMMON);
    const { listDrives, formatDrivesTable } = await import('../drives/list');
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
      sha256: values.sha256 as string | undefined,
      measure: Boolean(values.measure),
    };
    const meta = openMetadata(values);
    return runSession(new Output(Boolean(values.json)), meta, request, values);
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
    return runSession(new Output(Boolean(values.json)), meta, request, values);
  },

  async verify(args) {
    const { values, positionals } = parse(args, { ...COMMON, 'region-size': CLONE['region-size'] });
    if (positionals.length < 2) throw new UsageError('verify needs a SOURCE and at least one DEST');
    const out = new Output(Boolean(values.json));
    const { openReadable, Refused } = await import('../io/open');
    const { verify } = await import('../hydration/verify');
    const { makeGeometry, regionRange, DEFAULT_REGION_SIZE } = await import('../geometry');
    const [source, ...dests] = await Promise.all(
      positionals.map((p, i) => openReadable(p, i === 0 ? 'source' : 'destination')),
    );
    try {
      // A stream of unknown size is compared up to its end (at most the smallest destination).
      const { knownSize } = await import('../io/device');
      const { tablesVerify } = await import('../partitions/verify-tables');
      const sourceSize = knownSize(source);
      // A partitioned source: what a clone fitted or rewrote is compared its own way.
      const tables = sourceSize === null ? null : await tablesVerify(source, dests, sourceSize);
      const length = tables?.length ?? sourceSize ?? Math.min(...dests.map((d) => d.size));
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
        rewritten: tables?.rewritten,
      }).finally(() => clearInterval(ticker));
      const tableProblems = tables ? await tables.check() : {};
      const seconds = (performance.now() - began) / 1000;
      const equal =
        Object.values(result.mismatchedRegions).every((r) => r.length === 0) &&
        Object.values(tableProblems).every((p) => !p);
      out.event({
        type: 'verify',
        equal,
        bytesCompared: result.bytesCompared,
        seconds,
        regionSize: geometry.regionSize,
        mismatches: result.mismatchedRegions,
        unreadable: result.skipped,
        ...(tables ? { tableProblems } : {}),
      });
      for (const [dest, problem] of Object.entries(tableProblems)) {
        if (problem) out.say(`${dest}: ${problem}`);
      }
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

  /** How big the image in SOURCE is: as its file states it, or measured by decompressing it (nothing written). */
  async size(args) {
    const { values, positionals } = parse(args, COMMON);
    if (positionals.length !== 1) throw new UsageError('size needs one SOURCE');
    const out = new Output(Boolean(values.json));
    const { measureSource } = await import('../session/measure');
    const began = performance.now();
    let last = 0;
    const { size, measured } = await measureSource(positionals[0], (bytes, compressed) => {
      const now = performance.now();
      if (now - last < 500) return;
      last = now;
      const share = compressed.total > 0 ? compressed.done / compressed.total : 0;
      const seconds = (now - began) / 1000;
      out.event({
        type: 'size-progress',
        bytesDecoded: bytes,
        compressedDone: compressed.done,
        compressedTotal: compressed.total,
      });
      if (!out.json && process.stderr.isTTY) {
        const eta =
          share > 0 ? formatDuration(Math.ceil((seconds * (1 - share)) / share)) : '--:--';
        process.stderr.write(
          `\rmeasuring: ${formatBytes(bytes)} decompressed, ${(100 * share).toFixed(1)}% of the file  ETA ${eta}\x1b[K`,
        );
      }
    });
    const seconds = (performance.now() - began) / 1000;
    out.event({ type: 'size', source: positionals[0], size, measured, seconds });
    const how = measured
      ? `measured by decompressing it in ${seconds.toFixed(1)} s`
      : 'as its file states';
    if (!out.json && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    out.say(`${positionals[0]}: ${size} bytes (${formatBytes(size)}), ${how}`);
    return EXIT.ok;
  },

  ...jobCommands,
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
  const { Refused } = await import('../io/open');
  const { MetadataError } = await import('../store/database');
  if (e instanceof Refused || e instanceof MetadataError) return EXIT.usage;
  return EXIT.failed;
}
