// Every check before a job may write: what the user asked (a clone, or the resume of
// a job), whether each flag is valid for it, which job it means and with which intent
// (new, resume, update), sizes, identities and the target-safety rules. Reads only:
// a check that fails throws Refused, and nothing anywhere has been written.

import fs from 'node:fs';
import path from 'node:path';
import { describeBlockDevice } from '../drives/platform';
import { namedTwice } from '../drives/safety';
import { DEFAULT_REGION_SIZE, type Geometry, makeGeometry, regionSizeProblem } from '../geometry';
import { type Identity, identify } from '../io/identity';
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
import type { UsedSpaceInfo } from '../events';
import type { PartitionTable } from '../partitions/table';
import {
  type Allow,
  checkDestination,
  checkJobDestination,
  checkSource,
  sizeRule,
} from './plan-checks';
import { freeSpace, holdsRescuedData, mapSeed, readMapfile } from './plan-regions';
import { measureSource } from './measure';
import { type PlannedTables, planTables } from './plan-tables';
import type { RegionMap } from '../store/region-map';
import { formatBytes } from '../size';

export type Intent = 'new' | 'resume' | 'update';

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
  /** A source whose size is only guessed is decompressed once first, to know it. */
  measure?: boolean;
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
  /** A used-only clone: what it reads of each partition. */
  usedSpace: UsedSpaceInfo | null;
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
    const guessed = knownSize(source) === null;
    const measured = guessed && request.measure ? (await measureSource(sourcePath)).size : null;
    const sourceSize = measured ?? knownSize(source);
    const probes = destPaths.map((d) => checkDestination(source, d, request, sizes, sourceSize));
    const regionSize = request.regionSize ?? DEFAULT_REGION_SIZE;
    const sizeProblem = regionSizeProblem(regionSize, [
      source.logicalBlockSize,
      ...probes.map((p) => p.logicalBlockSize),
    ]);
    if (sizeProblem) throw new Refused(sizeProblem);
    const size = tables?.copyEnd ?? sourceSize;
    const geometry = size === null ? unknownGeometry(regionSize) : makeGeometry(size, regionSize);
    const withRules = withZstRules(options, probes);
    const used = withRules.usedOnly ? await freeSpace(source, geometry) : null;
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
      free: used?.free ?? null,
      usedSpace: used?.info ?? null,
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
  if (record.unresumable) {
    throw new Refused(
      `job ${record.id} can't be resumed: ${record.unresumable}; clone again with --fresh to start over`,
    );
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
    const used = options.usedOnly ? await freeSpace(source, geometry) : null;
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
      free: used?.free ?? null,
      usedSpace: used?.info ?? null,
      seeded: null,
      verifyOnly: how.verifyOnly,
      replaces: [],
      partitions,
      tables,
    };
  });
}

/**
 * Said before writing from a source whose size is only guessed (a compressed image that
 * doesn't state it: bzip2, gzip past 4 GiB or of several members, zstd without sizes);
 * null when the size is known.
 */
export function sizeGuessNote(p: Plan, estimate = p.sizeEstimate): string | null {
  if (Number.isFinite(p.geometry.regionCount)) return null;
  const about = estimate === null ? 'its size' : `about ${formatBytes(estimate)}`;
  return (
    `${p.sourcePath} doesn't say how big its image is: ${about} is a guess. If the image is ` +
    'bigger than a destination drive, the copy stops at the drive’s end and can’t finish on it; ' +
    `"drivetwin size ${p.sourcePath}" (or clone --measure) decompresses it once to know`
  );
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
      const guess = sizeGuessNote(p);
      return {
        path: found.path,
        size: found.size,
        detail: `${formatBytes(found.size)}${mounted}${guess ? ` — ${guess}` : ''}`,
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
