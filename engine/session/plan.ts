// Every check before a job may write: what the user asked (a clone, or the resume of
// a job), whether each flag is valid for it, which job it means and with which intent
// (new, resume, update), sizes, identities and the target-safety rules. Reads only:
// a check that fails throws Refused, and nothing anywhere has been written.

import fs from 'node:fs';
import path from 'node:path';
import { describeBlockDevice } from '../drives/platform';
import { type VerdictOptions, destinationProblems, namedTwice } from '../drives/safety';
import { DEFAULT_REGION_SIZE, type Geometry, makeGeometry, regionSizeProblem } from '../geometry';
import { type Identity, identify, identifyPath, identityProblem } from '../io/identity';
import { type Device, isStream, knownSize } from '../io/device';
import { isUrl, parseSha256 } from '../io/http/url';
import type { ExpectedHash } from '../io/source-file';
import type { DestinationRecord, JobRecord } from '../store/job-record';
import type { Metadata } from '../store/metadata';
import { type Probe, Refused, closeAll, isZstPath, openReadable, probe } from '../io/open';
import {
  DEFAULT_OPTIONS,
  type JobOptions,
  fixedOptionProblem,
  liveOptions,
  optionsProblem,
} from '../options';
import type { PartitionTable } from '../partitions/table';
import { freeSpace, holdsRescuedData, mapSeed, readMapfile } from './plan-regions';
import { type PlannedTables, planTables } from './plan-tables';
import type { RegionMap } from '../store/region-map';
import { formatBytes } from '../size';

export type Intent = 'new' | 'resume' | 'update';

interface Allow {
  allowMounted?: boolean;
  allowSystem?: boolean;
}

export interface CloneRequest extends Allow {
  kind: 'clone';
  source: string;
  destinations: string[];
  regionSize?: number;
  /** What the user chose; the rest is the defaults, or the existing job's. */
  options: Partial<JobOptions>;
  /** A GNU ddrescue mapfile: its finished areas are already on the destinations. */
  fromMap?: string;
  /** A new job even where one exists for this source and these destinations. */
  fresh?: boolean;
  /** A download (the source is a URL): the SHA-256 it must have, in hexadecimal. */
  sha256?: string;
}

export interface ResumeRequest extends Allow {
  kind: 'resume';
  job: number;
  /** Only the live options (options.ts) may be given. */
  options: Partial<JobOptions>;
  /** Destination paths to finish without, for good. */
  drop?: string[];
  /** Only verify a copied job (again, if it was verified before). */
  verifyOnly?: boolean;
}

export type SessionRequest = CloneRequest | ResumeRequest;

export interface PlannedDestination {
  probe: Probe;
  /** Its place in the job's record. */
  index: number;
  /** An existing job's record of it. */
  record: DestinationRecord | null;
  /** It failed (or was dropped) earlier and comes back now. */
  restore: boolean;
}

export interface Plan {
  intent: Intent;
  /** The existing job (resume, update). */
  record: JobRecord | null;
  sourcePath: string;
  /** Open for reading; whoever holds the plan closes it. */
  source: Device;
  sourceIdentity: Identity;
  /** regionCount is Infinity while a stream's size is unknown. */
  geometry: Geometry;
  /** While the size is unknown: what the compressed file suggests it holds. */
  sizeEstimate: number | null;
  options: JobOptions;
  destinations: PlannedDestination[];
  /** Record indices the user drops now. */
  drop: number[];
  /** Free regions of a used-only clone. */
  free: RegionMap | null;
  /** Regions a ddrescue mapfile says are already on the destinations. */
  seeded: RegionMap | null;
  /** A copied job that only needs verifying. */
  verifyOnly: boolean;
  /** Unfinished jobs for the same pair that a --fresh clone replaces. */
  replaces: number[];
  /** The source's partition table, when it has a usable one. */
  partitions: PartitionTable | null;
  /** What is rewritten on the destinations (their tables, their ends); null: nothing. */
  tables: PlannedTables | null;
}

/** Canonical path, so that another name for the same thing finds the same job (a URL as given). */
export function canonical(p: string): string {
  if (isUrl(p)) return p;
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

export async function plan(meta: Metadata, request: SessionRequest): Promise<Plan> {
  return request.kind === 'resume' ? planResume(meta, request) : planClone(meta, request);
}

async function planClone(meta: Metadata, request: CloneRequest): Promise<Plan> {
  const options = { ...DEFAULT_OPTIONS, ...request.options };
  const problem = optionsProblem(options);
  if (problem) throw new Refused(problem);
  if (request.regionSize !== undefined) {
    const sizeProblem = regionSizeProblem(request.regionSize, []);
    if (sizeProblem) throw new Refused(sizeProblem);
  }
  const mapText = request.fromMap === undefined ? null : readMapfile(request.fromMap);
  const sourcePath = canonical(request.source);
  const sha256 = expectedHash(request);
  const destPaths = request.destinations.map(canonical);
  const twice = namedTwice(request.destinations);
  if (twice) throw new Refused(twice);
  const existing = request.fresh ? null : meta.findUnfinished(sourcePath, destPaths);
  // A finished job is brought up to date where its devices are still the same size;
  // otherwise (and for compressed backups) a new job starts.
  const finished =
    request.fresh || existing || destPaths.some(isZstPath)
      ? null
      : meta.findFinished(sourcePath, destPaths);
  const going = existing ?? (finished && sameSizes(finished) ? finished : null);
  if (going) {
    const why =
      (request.regionSize !== undefined && request.regionSize !== going.regionSize
        ? `--region-size can't change for job ${going.id} (it copies ${formatBytes(going.regionSize)} regions); run the clone with --fresh to start over`
        : null) ??
      (request.fromMap !== undefined
        ? `--from-map seeds a new job, and job ${going.id} already copies this source to these destinations; run the clone with --fresh to start over`
        : null) ??
      (sha256 && sha256.hex !== going.sourceIdentity.sha256?.hex
        ? `--sha256 can't change for job ${going.id} (${going.sourceIdentity.sha256?.hex ?? 'it checks none'}); run the clone with --fresh to start over`
        : null) ??
      fixedOptionProblem(going.id, going.options, request.options);
    if (why) throw new Refused(why);
    return existing
      ? planResume(meta, { ...request, kind: 'resume', job: existing.id })
      : planUpdate(going, request);
  }

  const source = await openReadable(sourcePath, 'source', { sha256 });
  return closingOnError([source], async () => {
    const { partitions, tables } = await planTables(source, options, destPaths);
    const sizes = sizeRule(partitions, options);
    const probes = destPaths.map((d) => checkDestination(source, d, request, sizes));
    const regionSize = request.regionSize ?? DEFAULT_REGION_SIZE;
    const sizeProblem = regionSizeProblem(regionSize, [
      source.logicalBlockSize,
      ...probes.map((p) => p.logicalBlockSize),
    ]);
    if (sizeProblem) throw new Refused(sizeProblem);
    const size = tables?.copyEnd ?? knownSize(source);
    const geometry = size === null ? unknownGeometry(regionSize) : makeGeometry(size, regionSize);
    const withRules = withZstRules(options, probes);
    const free = withRules.usedOnly ? await freeSpace(source, geometry) : null;
    const seeded = mapText === null ? null : await mapSeed(request.fromMap!, mapText, geometry);
    if (seeded) holdsRescuedData(probes, seeded, geometry);
    const replaces = request.fresh
      ? meta
          .jobsFor(sourcePath, destPaths)
          .filter((j) => j.state !== 'done')
          .map((j) => j.id)
      : [];
    return {
      intent: 'new',
      record: null,
      sourcePath,
      source,
      sourceIdentity: await identify(source, true),
      geometry,
      sizeEstimate: sizeEstimate(source, geometry),
      options: withRules,
      destinations: probes.map((p, index) => ({ probe: p, index, record: null, restore: false })),
      drop: [],
      free,
      seeded,
      verifyOnly: false,
      replaces,
      partitions,
      tables,
    };
  });
}

/** Resumes job `id` onto the same source and destinations; anything else is refused. */
async function planResume(
  meta: Metadata,
  request: ResumeRequest | (CloneRequest & { kind: 'resume'; job: number }),
): Promise<Plan> {
  const record = meta.getJob(request.job);
  if (!record) throw new Refused(`there is no job ${request.job}`);
  if (record.state === 'running' || record.state === 'verifying') {
    throw new Refused(`job ${record.id} is already running (process ${record.pid})`);
  }
  const options = { ...record.options, ...liveOptions(request.options) };
  const problem = optionsProblem(options);
  if (problem) throw new Refused(problem);
  // A finished job copied everything to every destination left; one that lost a
  // destination (an older DriveTwin called that done too) resumes to bring it back.
  const copied =
    record.state === 'done' && record.destinations.every((d) => !d.failed || d.dropped);
  const verifyOnly = copied;
  if ('verifyOnly' in request && request.verifyOnly) {
    if (!copied) {
      throw new Refused(`job ${record.id} is not finished (${record.state}): resume it first`);
    }
    options.verify = true;
  } else if (copied && (!options.verify || record.verified === true)) {
    throw new Refused(
      `job ${record.id} is already done${record.verified ? ' and verified' : ''}: run the same ` +
        'clone again to bring its destinations up to date' +
        (record.verified ? '' : ', or resume it with --verify to verify it'),
    );
  }
  return planExisting(record, request, {
    intent: 'resume',
    options,
    sameContent: true,
    verifyOnly,
  });
}

/**
 * Brings a finished clone up to date: the session compares every region of the
 * source with the destinations and hydrates again only those that differ.
 */
async function planUpdate(record: JobRecord, request: CloneRequest): Promise<Plan> {
  const options = { ...record.options, ...liveOptions(request.options) };
  const problem = optionsProblem(options);
  if (problem) throw new Refused(problem);
  return planExisting(record, request, {
    intent: 'update',
    options,
    sameContent: false,
    verifyOnly: false,
  });
}

async function planExisting(
  record: JobRecord,
  request: Allow & { drop?: string[] },
  how: { intent: Intent; options: JobOptions; sameContent: boolean; verifyOnly: boolean },
): Promise<Plan> {
  const dropPaths = new Set((request.drop ?? []).map(canonical));
  for (const p of dropPaths) {
    if (!record.destinations.some((d) => d.path === p)) {
      throw new Refused(`--drop ${p}: job ${record.id} does not write there`);
    }
  }
  // A download is checked against the hash the job started with (or none).
  const sha256 = isUrl(record.source) ? (record.sourceIdentity.sha256 ?? null) : undefined;
  const source = await openReadable(record.source, 'source', { sha256 });
  return closingOnError([source], async () => {
    const sourceIdentity = await checkSource(record, source, how.sameContent);
    const paths = record.destinations.map((d) => d.path);
    const { partitions, tables } = await planTables(source, how.options, paths);
    if (how.options.fit && tables?.copyEnd !== record.sourceSize) {
      throw new Refused(
        `the partitions of ${record.source} end elsewhere than when job ${record.id} fitted them ` +
          `(at ${tables?.copyEnd ?? '?'} bytes, not ${record.sourceSize}): run the clone with --fresh`,
      );
    }
    const sizes = sizeRule(partitions, how.options);
    const drop: number[] = [];
    const destinations: PlannedDestination[] = [];
    for (const d of record.destinations) {
      // An update compares every destination, so one dropped before comes back with it.
      if (d.dropped && how.intent !== 'update') continue;
      if (dropPaths.has(d.path)) {
        drop.push(d.index);
        continue;
      }
      destinations.push({
        probe: checkJobDestination(record, d, source, request, sizes),
        index: d.index,
        record: d,
        restore: d.failed !== null,
      });
    }
    if (destinations.length === 0) {
      throw new Refused(`job ${record.id} has no destination left: every one was dropped`);
    }
    const options = withZstRules(
      how.options,
      destinations.map((d) => d.probe),
    );
    const geometry = geometryOf(record);
    return {
      intent: how.intent,
      record,
      sourcePath: record.source,
      source,
      sourceIdentity,
      geometry,
      sizeEstimate: sizeEstimate(source, geometry),
      options,
      destinations,
      drop,
      free: options.usedOnly ? await freeSpace(source, geometry) : null,
      seeded: null,
      verifyOnly: how.verifyOnly,
      replaces: [],
      partitions,
      tables,
    };
  });
}

/** Asked once before writing to drives; false declines. */
export type Confirm = (
  drives: Array<{ path: string; size: number; detail: string }>,
) => Promise<boolean>;

/** Drives among the planned destinations, asked about once before anything is claimed. */
export async function confirmDrives(p: Plan, confirm: Confirm): Promise<void> {
  if (p.verifyOnly) return;
  const drives = p.destinations
    .filter((d) => d.probe.kind === 'block')
    .map(({ probe: found }) => {
      const info = describeBlockDevice(found.path);
      const mounted = info.mountpoints.length ? `, mounted at ${info.mountpoints.join(', ')}` : '';
      return {
        path: found.path,
        size: found.size,
        detail: `${formatBytes(found.size)}${mounted}`,
      };
    });
  if (drives.length > 0 && !(await confirm(drives))) {
    throw new Refused('not confirmed: nothing was written');
  }
}

/** A stream that doesn't say its size: the estimate its file gives (engine/io/compressed). */
function sizeEstimate(source: Device, g: Geometry): number | null {
  if (Number.isFinite(g.regionCount) || !isStream(source)) return null;
  return source.estimate;
}

/** --sha256, checked: only for a download, 64 hexadecimal digits. */
function expectedHash(request: CloneRequest): ExpectedHash | undefined {
  if (request.sha256 === undefined) return undefined;
  if (!isUrl(request.source)) {
    throw new Refused('--sha256 checks a download: the source must be an http:// or https:// URL');
  }
  const hex = parseSha256(request.sha256);
  if (!hex) throw new Refused(`--sha256 takes 64 hexadecimal digits, not "${request.sha256}"`);
  return { hex, from: 'given' };
}

/** A job's geometry: sourceSize 0 means a stream whose end was not reached yet. */
export function geometryOf(record: JobRecord): Geometry {
  return record.sourceSize > 0
    ? makeGeometry(record.sourceSize, record.regionSize)
    : unknownGeometry(record.regionSize);
}

function unknownGeometry(regionSize: number): Geometry {
  return { size: Number.MAX_SAFE_INTEGER, regionSize, regionCount: Infinity };
}

async function closingOnError<T>(devices: Device[], work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    await closeAll(devices);
    throw e;
  }
}

function sameSizes(record: JobRecord): boolean {
  // A fitted job copied only the partitions: the source's own size is its identity's.
  const sourceSize = record.options.fit ? record.sourceIdentity.size : record.sourceSize;
  return (
    probe(record.source).size === sourceSize &&
    record.destinations.every((d) => d.failed !== null || probe(d.path).size === d.size)
  );
}

/** A backup is written strictly in order and never sparse: zeros go into the stream. */
function withZstRules(options: JobOptions, probes: Probe[]): JobOptions {
  return probes.some((p) => p.kind === 'zst') ? { ...options, sequential: true } : options;
}

/** The source must be the one the job started from; an update allows new content. */
async function checkSource(
  record: JobRecord,
  source: Device,
  sameContent: boolean,
): Promise<Identity> {
  const now = await identify(source, true);
  const then = sameContent
    ? record.sourceIdentity
    : { ...record.sourceIdentity, headSha256: undefined };
  const problem = identityProblem(`source ${record.source}`, then, now);
  if (problem) throw new Refused(`${problem}; job ${record.id} can't go on from it`);
  return now;
}

/** A destination of an existing job: there, the same one, and still safe to write. */
function checkJobDestination(
  record: JobRecord,
  d: DestinationRecord,
  source: Device,
  allow: Allow,
  sizes: SizeRule,
): Probe {
  const found = probe(d.path);
  const dropHint = `, or finish without it: drivetwin resume ${record.id} --drop ${d.path}`;
  if (found.kind === 'missing') {
    throw new Refused(`destination ${d.path} is gone: reattach it${dropHint}`);
  }
  // Said before the size checks: a detached drive or a swapped one is not "too small".
  if (found.kind === 'block' && found.size !== d.size) {
    const now = found.size === 0 ? 'has no medium (size 0)' : `changed size to ${found.size} bytes`;
    throw new Refused(
      `destination ${d.path} ${now}; job ${record.id} wrote to ${d.size} bytes there: ` +
        `reattach the same drive${dropHint}`,
    );
  }
  checkDestination(source, d.path, allow, sizes);
  const now = identifyPath(d.path, { ...found, kind: found.kind === 'block' ? 'block' : 'file' });
  const why = identityProblem(`destination ${d.path}`, d.identity, now);
  if (why) throw new Refused(`${why}; job ${record.id} can't go on onto it${dropHint}`);
  return found;
}

type SizeRule = Pick<VerdictOptions, 'partitions' | 'fit'>;

/** What the size rule weighs besides the source's size: its partitions, and whether the copy is fitted. */
function sizeRule(partitions: PartitionTable | null, options: JobOptions): SizeRule {
  const fit = options.fit;
  return partitions
    ? { partitions: { end: partitions.partitionsEnd, fitSize: partitions.fitSize }, fit }
    : { fit };
}

/** The one target-safety rule (drives/safety.ts), with the source's real size. */
function checkDestination(source: Device, dest: string, allow: Allow, sizes: SizeRule): Probe {
  if (isUrl(dest)) throw new Refused(`${dest}: a destination can't be a URL (only a source can)`);
  // A stream of unknown size is checked when its end is read: a write past the drive fails.
  const sourceSize = knownSize(source) ?? undefined;
  const problems = destinationProblems(source.path, dest, { ...allow, sourceSize, ...sizes });
  if (problems.length > 0) throw new Refused(problems.join('; '));
  const found = probe(dest);
  return found.kind === 'missing' ? { ...found, kind: isZstPath(dest) ? 'zst' : 'file' } : found;
}
