// Everything that happens before the first byte is written: every check, the
// user's confirmation, then opening the devices and the job's record. A check
// that fails throws Refused and nothing has been written.
//
// Three ways in: a fresh clone, the resume of an unfinished job, and the delta
// re-clone of a finished one (only the regions that differ are copied again).

import fs from 'node:fs';
import path from 'node:path';
import type { Target } from './copier';
import {
  DEFAULT_REGION_SIZE,
  type Geometry,
  makeGeometry,
  regionRange,
  regionSizeProblem,
} from './geometry';
import { BlockDevice } from './io/block-device';
import { type Device, isStream, knownSize } from './io/device';
import { IMAGE_BLOCK_SIZE, ImageFile } from './io/image-file';
import { ZstImage } from './io/zst-image';
import { type Identity, identify, identityProblem } from './identity';
import { blockFacts, describeBlockDevice, destinationProblems } from './drives';
import { HydrationJob } from './job';
import type { JobOptions, JobRecord, Metadata } from './metadata';
import { RegionMap } from './region-map';
import { throttleProblem } from './throttle';
import { formatBytes } from './size';

export class Refused extends Error {}

export interface CloneRequest {
  source: string;
  destinations: string[];
  regionSize?: number;
  options: JobOptions;
  allowMounted?: boolean;
  allowSystem?: boolean;
  /** A GNU ddrescue mapfile: its finished areas are already on the destinations. */
  fromMap?: string;
}

type Allow = Pick<CloneRequest, 'allowMounted' | 'allowSystem'>;

/** Asked once before writing to drives; false declines. */
export type Confirm = (
  drives: Array<{ path: string; size: number; detail: string }>,
) => Promise<boolean>;

export interface PreparedJob {
  job: HydrationJob;
  record: JobRecord;
  resumed: boolean;
  /** A delta re-clone: how many regions were found to differ. */
  delta: number | null;
  /** Free space of a used-only clone: not copied, so not compared either. */
  free: RegionMap | null;
  source: Device;
  destinations: Device[];
  close(): Promise<void>;
}

export const DEFAULT_OPTIONS: JobOptions = {
  threshold: 32,
  batch: 8,
  throttle: 100,
  maxRate: 0,
  sparse: null,
  ignoreErrors: false,
  sequential: false,
  verify: false,
  usedOnly: false,
  zeroFree: false,
};

function optionsProblem(o: JobOptions): string | null {
  if (!Number.isInteger(o.threshold) || o.threshold < 1 || o.threshold > 4096) {
    return `threshold must be a whole number from 1 to 4096, not ${o.threshold}`;
  }
  if (!Number.isInteger(o.batch) || o.batch < 1 || o.batch > o.threshold) {
    return `batch must be a whole number from 1 to the threshold (${o.threshold}), not ${o.batch}`;
  }
  if (o.zeroFree && !o.usedOnly) return 'zeroing free space only makes sense with --used-only';
  return throttleProblem({ percent: o.throttle, maxRate: o.maxRate });
}

/** A destination written as a compressed, resumable backup. */
const isZstPath = (p: string): boolean => /\.zst$/i.test(p);

interface Probe {
  path: string;
  kind: 'block' | 'file' | 'zst' | 'missing';
  size: number;
  logicalBlockSize: number;
}

function probe(p: string): Probe {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return { path: p, kind: 'missing', size: 0, logicalBlockSize: IMAGE_BLOCK_SIZE };
  }
  if (st.isBlockDevice()) {
    const info = blockFacts(p);
    return { path: p, kind: 'block', size: info.size, logicalBlockSize: info.logicalBlockSize };
  }
  if (st.isFile()) {
    const kind = isZstPath(p) ? 'zst' : 'file';
    return { path: p, kind, size: st.size, logicalBlockSize: IMAGE_BLOCK_SIZE };
  }
  throw new Refused(`${p} is neither a drive nor an image file`);
}

/** Opens a drive, image or compressed image for reading only; `role` names it in messages. */
export async function openReadable(p: string, role = 'source'): Promise<Device> {
  const found = probe(p);
  if (found.kind === 'missing') throw new Refused(`${role} ${p} does not exist`);
  try {
    if (found.kind === 'block') return await BlockDevice.open(p, false);
    const { detectCompression, openCompressedSource } = await import('./io/compressed/index');
    if (detectCompression(p)) return await openCompressedSource(p);
    const device = ImageFile.open(p, false);
    if (device.size === 0) throw new Refused(`${role} ${p} is empty`);
    return device;
  } catch (e) {
    if (e instanceof Refused) throw e;
    throw new Refused(`${role} ${p} can't be read: ${(e as Error).message}`);
  }
}

/** Canonical path, so that another name for the same thing finds the same job. */
function canonical(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** Closes `devices` if `work` throws, and passes the error on. */
async function closingOnError<T>(devices: () => Device[], work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    await Promise.all(devices().map((d) => d.close().catch(() => undefined)));
    throw e;
  }
}

export async function setUpClone(
  meta: Metadata,
  request: CloneRequest,
  confirm: Confirm,
): Promise<PreparedJob> {
  const problem = optionsProblem(request.options);
  if (problem) throw new Refused(problem);
  const sourcePath = canonical(request.source);
  const destPaths = request.destinations.map(canonical);
  if (new Set(destPaths).size !== destPaths.length) {
    throw new Refused('the same destination is named twice');
  }
  const unfinished = meta.findUnfinished(sourcePath, destPaths);
  if (unfinished) return setUpResume(meta, unfinished.id, confirm, request.options, request);
  // A finished job is brought up to date where its devices are still the same size;
  // otherwise (and for compressed backups) a fresh job starts.
  const finished = destPaths.some(isZstPath) ? null : meta.findFinished(sourcePath, destPaths);
  if (finished && sameSizes(finished)) return setUpDelta(meta, finished, confirm, request);

  const source = await openReadable(sourcePath);
  const opened: Device[] = [];
  return closingOnError(
    () => [source, ...opened],
    async () => {
      const probes = destPaths.map((d) => checkDestination(source, d, request));
      const regionSize = request.regionSize ?? DEFAULT_REGION_SIZE;
      const sizeProblem = regionSizeProblem(regionSize, [
        source.logicalBlockSize,
        ...probes.map((p) => p.logicalBlockSize),
      ]);
      if (sizeProblem) throw new Refused(sizeProblem);
      const size = knownSize(source);
      const geometry = size === null ? unknownGeometry(regionSize) : makeGeometry(size, regionSize);
      const options = withZstRules(request.options, probes);
      // Everything that can refuse runs before the confirmation and the first write.
      const free = options.usedOnly ? await freeSpace(source, geometry) : null;
      const seeded = request.fromMap ? await mapSeed(request.fromMap, geometry) : null;
      if (seeded) holdsRescuedData(probes, seeded, geometry);
      await confirmDrives(probes, confirm);

      const sourceIdentity = await identify(source, true);
      // Seeded destinations keep what is on them: the mapfile says it is already there.
      const destinations = await openDestinations(probes, size, { fresh: !seeded });
      opened.push(...destinations.map((d) => d.device));
      const targets = destinations.map((d) => targetFor(d.device, d.emptied, options));
      const id = meta.createJob({
        source: sourcePath,
        // 0 until a stream's end is read.
        sourceSize: size ?? 0,
        sourceIdentity,
        regionSize,
        regionsTotal: size === null ? 0 : geometry.regionCount,
        options,
        destinations: await Promise.all(
          destinations.map(async (d) => ({
            path: d.device.path,
            size: d.device.size,
            identity: { ...(await identify(d.device, false)), emptied: d.emptied },
          })),
        ),
      });
      const record = meta.getJob(id) as JobRecord;
      const map = new RegionMap(geometry.regionCount);
      if (seeded) map.load([{ index: 0, bytes: seeded.bits }]);
      const zeroRegions = placeFreeSpace(free, map, targets);
      commitMap(meta, record, map);
      return assemble(meta, record, source, targets, map, { resumed: false, zeroRegions, free });
    },
  );
}

/** Resumes job `id` onto the same source and destinations; anything else is refused. */
export async function setUpResume(
  meta: Metadata,
  id: number,
  confirm: Confirm,
  newOptions?: Partial<JobOptions>,
  allow: Allow = {},
): Promise<PreparedJob> {
  const record = meta.getJob(id);
  if (!record) throw new Refused(`there is no job ${id}`);
  if (record.state === 'done') throw new Refused(`job ${id} is already done`);
  if (record.state === 'running') throw new Refused(`job ${id} is running (process ${record.pid})`);
  const merged = { ...record.options, ...pickLive(newOptions) };
  const problem = optionsProblem(merged);
  if (problem) throw new Refused(problem);

  const source = await openReadable(record.source);
  const opened: Device[] = [];
  return closingOnError(
    () => [source, ...opened],
    async () => {
      await checkSource(record, source, true);
      const geometry = geometryOf(record);
      const map = meta.loadBitmap(record);
      const live = liveDestinations(record, source, allow);
      const options = withZstRules(merged, live.probes);
      const free = options.usedOnly ? await freeSpace(source, geometry) : null;
      await confirmDrives(live.probes, confirm);
      // A backup continues after its last complete frame, which may lie before the last commit.
      const resumeAt = zstResumePoint(live.probes, map, geometry);
      const destinations = await openDestinations(live.probes, knownSize(source), { resumeAt });
      opened.push(...destinations.map((d) => d.device));
      const targets = await checkedTargets(record, live.records, destinations, options);
      commitMap(meta, record, map);
      meta.setState(id, 'running', { options });
      const zeroRegions = placeFreeSpace(free, map, targets);
      return assemble(meta, { ...record, options }, source, targets, map, {
        resumed: true,
        zeroRegions,
        free,
      });
    },
  );
}

/**
 * Brings a finished clone up to date: compares every region of the source with the
 * destinations and hydrates again only those that differ.
 */
async function setUpDelta(
  meta: Metadata,
  record: JobRecord,
  confirm: Confirm,
  request: CloneRequest,
): Promise<PreparedJob> {
  const options = { ...record.options, ...pickLive(request.options) };
  const source = await openReadable(record.source);
  const opened: Device[] = [];
  return closingOnError(
    () => [source, ...opened],
    async () => {
      const sourceIdentity = await checkSource(record, source, false);
      const geometry = geometryOf(record);
      const live = liveDestinations(record, source, request);
      const free = options.usedOnly ? await freeSpace(source, geometry) : null;
      await confirmDrives(live.probes, confirm);
      const destinations = await openDestinations(live.probes, record.sourceSize, {});
      opened.push(...destinations.map((d) => d.device));
      // Zeros must be written now: a region may have turned to zeros in the source.
      const targets = (await checkedTargets(record, live.records, destinations, options)).map(
        (t) => ({ ...t, skipZeros: false }),
      );
      const { verify } = await import('./verify');
      const found = await verify(
        source,
        targets.map((t) => t.device),
        geometry,
        { skipRegion: (r) => free?.has(r) ?? false, unreadable: meta.loadUnreadable(record.id) },
      );
      const differing = new Set(Object.values(found.mismatchedRegions).flat());
      const map = meta.loadBitmap(record);
      for (const r of differing) map.clear(r);
      commitMap(meta, record, map);
      meta.setSourceIdentity(record.id, sourceIdentity);
      meta.setState(record.id, 'running', { options });
      // A stream was read to its end by verify: the copy needs it from the start again.
      const copyFrom = isStream(source) ? await openReadable(record.source) : source;
      if (copyFrom !== source) opened.push(copyFrom);
      return assemble(meta, { ...record, options }, copyFrom, targets, map, {
        resumed: true,
        delta: differing.size,
        free,
        alsoClose: copyFrom !== source ? [source] : [],
      });
    },
  );
}

/** A job's geometry: sourceSize 0 means a stream whose end was not reached yet. */
function geometryOf(record: JobRecord): Geometry {
  return record.sourceSize > 0
    ? makeGeometry(record.sourceSize, record.regionSize)
    : unknownGeometry(record.regionSize);
}

function unknownGeometry(regionSize: number): Geometry {
  return { size: Number.MAX_SAFE_INTEGER, regionSize, regionCount: Infinity };
}

function sameSizes(record: JobRecord): boolean {
  return (
    probe(record.source).size === record.sourceSize &&
    record.destinations.every((d) => d.failed || probe(d.path).size === d.size)
  );
}

/** On resume only the knobs that don't change what lands on disk may change. */
function pickLive(o?: Partial<JobOptions>): Partial<JobOptions> {
  if (!o) return {};
  const { threshold, batch, throttle, maxRate, verify, ignoreErrors, sequential } = o;
  return Object.fromEntries(
    Object.entries({
      threshold,
      batch,
      throttle,
      maxRate,
      verify,
      ignoreErrors,
      sequential,
    }).filter(([, v]) => v !== undefined),
  );
}

/** A backup is written strictly in order and never sparse: zeros go into the stream. */
function withZstRules(options: JobOptions, probes: Probe[]): JobOptions {
  return probes.some((p) => p.kind === 'zst') ? { ...options, sequential: true } : options;
}

/** The source must be the one the job started from; the delta re-clone allows new content. */
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

function liveDestinations(record: JobRecord, source: Device, allow: Allow) {
  const records = record.destinations.filter((d) => !d.failed);
  if (records.length === 0) throw new Refused(`every destination of job ${record.id} failed`);
  const probes = records.map((d) => {
    const found = probe(d.path);
    if (found.kind === 'missing') throw new Refused(`destination ${d.path} is gone`);
    // Said before the size checks: a detached drive or a swapped one is not "too small".
    if (found.kind === 'block' && found.size !== d.size) {
      const now =
        found.size === 0 ? 'has no medium (size 0)' : `changed size to ${found.size} bytes`;
      throw new Refused(
        `destination ${d.path} ${now}; job ${record.id} wrote to ${d.size} bytes there: ` +
          'reattach the same drive',
      );
    }
    checkDestination(source, d.path, allow);
    return found;
  });
  return { records, probes };
}

async function checkedTargets(
  record: JobRecord,
  records: JobRecord['destinations'],
  opened: Array<{ device: Device }>,
  options: JobOptions,
): Promise<Target[]> {
  const targets: Target[] = [];
  for (const [i, d] of records.entries()) {
    const { device } = opened[i];
    const why = identityProblem(`destination ${d.path}`, d.identity, await identify(device, false));
    if (why) throw new Refused(`${why}; job ${record.id} can't go on onto it`);
    targets.push(targetFor(device, Boolean(d.identity.emptied), options));
  }
  return targets;
}

function checkDestination(source: Device, dest: string, allow: Allow): Probe {
  const found = probe(dest);
  if (found.kind === 'missing') {
    if (!fs.existsSync(path.dirname(dest))) {
      throw new Refused(`destination ${dest}: folder ${path.dirname(dest)} does not exist`);
    }
    return { ...found, kind: isZstPath(dest) ? 'zst' : 'file' };
  }
  const problems = destinationProblems(source.path, dest, allow);
  if (problems.length > 0) throw new Refused(problems.join('; '));
  // A stream of unknown size is checked when its end is read: a write past the drive fails.
  const size = knownSize(source);
  if (found.kind === 'block' && size !== null && found.size < size) {
    throw new Refused(
      `destination ${dest} is smaller (${formatBytes(found.size)}) than the source (${formatBytes(size)})`,
    );
  }
  return found;
}

async function confirmDrives(probes: Probe[], confirm: Confirm): Promise<void> {
  const drives = probes
    .filter((p) => p.kind === 'block')
    .map((p) => {
      const info = describeBlockDevice(p.path);
      const mounted = info.mountpoints.length ? `, mounted at ${info.mountpoints.join(', ')}` : '';
      return { path: p.path, size: p.size, detail: `${formatBytes(p.size)}${mounted}` };
    });
  if (drives.length > 0 && !(await confirm(drives))) {
    throw new Refused('not confirmed: nothing was written');
  }
}

/** Where every backup among the destinations can go on from: a frame boundary, at most the committed prefix. */
function zstResumePoint(probes: Probe[], map: RegionMap, g: Geometry): number | null {
  const zst = probes.filter((p) => p.kind === 'zst');
  if (zst.length === 0) return null;
  const firstGap = map.nextClear(0);
  const committed = firstGap < 0 ? g.size : firstGap * g.regionSize;
  const at = Math.min(
    ...zst.map((p) => ZstImage.boundaryAtOrBefore(p.path, committed, g.regionSize)),
  );
  // Regions past the last complete frame are hydrated again.
  for (let r = Math.ceil(at / g.regionSize); r < g.regionCount; r++) map.clear(r);
  return at;
}

interface OpenedDestination {
  device: Device;
  emptied: boolean;
}

/** `size` null: a stream of unknown size, whose images grow as they are written. */
async function openDestinations(
  probes: Probe[],
  size: number | null,
  how: { fresh?: boolean; resumeAt?: number | null },
): Promise<OpenedDestination[]> {
  const opened: OpenedDestination[] = [];
  try {
    for (const p of probes) {
      opened.push(await openDestination(p, size, how));
    }
  } catch (e) {
    await Promise.all(opened.map((o) => o.device.close()));
    if (e instanceof Refused) throw e;
    throw new Refused(`can't open a destination for writing: ${(e as Error).message}`);
  }
  return opened;
}

async function openDestination(
  p: Probe,
  size: number | null,
  how: { fresh?: boolean; resumeAt?: number | null },
): Promise<OpenedDestination> {
  if (p.kind === 'block') return { device: await BlockDevice.open(p.path, true), emptied: false };
  if (p.kind === 'zst') {
    const length = size ?? Number.MAX_SAFE_INTEGER;
    const device = how.fresh
      ? ZstImage.create(p.path, length)
      : ZstImage.resume(p.path, length, how.resumeAt ?? 0);
    return { device, emptied: false };
  }
  const file = ImageFile.open(p.path, true);
  if (!how.fresh) return { device: file, emptied: false };
  // A fresh image is emptied first, so zero regions can be left as holes.
  const emptied = file.reset(size ?? 0);
  if (!emptied && size !== null && file.size < size) {
    await file.close();
    throw new Refused(`destination ${p.path} can't be resized to ${size} bytes`);
  }
  return { device: file, emptied };
}

/**
 * Sparse is the default for emptied image files, and for drives only when asked.
 * Free space of a used-only clone is zeroed on backups always, elsewhere when asked.
 */
function targetFor(device: Device, emptied: boolean, options: JobOptions): Target {
  const zst = device instanceof ZstImage;
  const sparse = !zst && (options.sparse ?? device.kind === 'file');
  return {
    device,
    skipZeros: sparse && (device.kind === 'block' || emptied),
    writesFree: zst || (options.zeroFree && !emptied),
  };
}

/** Regions of the source's file system that hold nothing; refuses what can't be read safely. */
async function freeSpace(source: Device, g: Geometry): Promise<RegionMap> {
  if (source.kind === 'block' && describeBlockDevice(source.path).mountpoints.length > 0) {
    throw new Refused(`--used-only: ${source.path} is mounted; unmount it first`);
  }
  const { usedSpace, freeRegions, FilesystemRefused } = await import('./filesystems');
  let used;
  try {
    used = await usedSpace(source);
  } catch (e) {
    if (e instanceof FilesystemRefused) throw new Refused(`--used-only: ${e.message}`);
    throw e;
  }
  if (!used) {
    throw new Refused(`--used-only: ${source.path} holds no ext2/3/4 or FAT32 file system`);
  }
  const free = new RegionMap(g.regionCount);
  for (const run of freeRegions(used.used, g.size, g.regionSize))
    free.setRange(run.first, run.count);
  return free;
}

/** A mapfile's finished areas must really be on every destination: refuses those that can't hold them. */
function holdsRescuedData(probes: Probe[], seeded: RegionMap, g: Geometry): void {
  const runs = seeded.runs();
  const last = runs[runs.length - 1];
  const tail = last ? regionRange(g, last.first, last.count) : { offset: 0, length: 0 };
  const rescuedEnd = tail.offset + tail.length;
  for (const p of probes) {
    if (p.kind === 'missing') {
      throw new Refused(`--from-map: ${p.path} does not exist, so it holds no rescued data`);
    }
    if (p.kind === 'zst') {
      throw new Refused(`--from-map: ${p.path} is a compressed backup, written from the start`);
    }
    if (p.kind === 'file' && p.size < rescuedEnd) {
      throw new Refused(
        `--from-map: ${p.path} ends before the last area the mapfile calls rescued`,
      );
    }
  }
}

/** Regions a ddrescue mapfile calls finished: already on the destinations. */
async function mapSeed(file: string, g: Geometry): Promise<RegionMap> {
  const { parseMapfile, finishedRegions } = await import('./ddrescue-map');
  let runs;
  try {
    runs = finishedRegions(parseMapfile(fs.readFileSync(file, 'utf8')), g.size, g.regionSize);
  } catch (e) {
    throw new Refused(`--from-map ${file}: ${(e as Error).message}`);
  }
  const seeded = new RegionMap(g.regionCount);
  for (const run of runs) seeded.setRange(run.first, run.count);
  return seeded;
}

/**
 * dm-clone's discard: free regions are hydrated without copying — at once where no
 * destination needs them written, else by zeroing them. Returns the regions to zero.
 */
function placeFreeSpace(
  free: RegionMap | null,
  map: RegionMap,
  targets: Target[],
): RegionMap | null {
  if (!free) return null;
  if (targets.some((t) => t.writesFree)) return free;
  for (const run of free.runs()) map.setRange(run.first, run.count);
  return null;
}

/** Writes the map's changed chunks before any copying starts. */
function commitMap(meta: Metadata, record: JobRecord, map: RegionMap): void {
  const chunks = map.takeDirtyChunks();
  if (chunks.length === 0) return;
  meta.commit(record.id, {
    chunks,
    regionsHydrated: map.count,
    unreadable: [],
    unreadableBytes: 0,
    statusLine: record.statusLine ?? '',
  });
}

function assemble(
  meta: Metadata,
  record: JobRecord,
  source: Device,
  targets: Target[],
  map: RegionMap,
  how: {
    resumed: boolean;
    delta?: number;
    zeroRegions?: RegionMap | null;
    free?: RegionMap | null;
    alsoClose?: Device[];
  },
): PreparedJob {
  const geometry = geometryOf(record);
  const job = new HydrationJob({
    id: record.id,
    metadata: meta,
    geometry,
    source,
    targets,
    map,
    options: record.options,
    zeroRegions: how.zeroRegions,
  });
  const destinations = targets.map((t) => t.device);
  const all = [source, ...destinations, ...(how.alsoClose ?? [])];
  return {
    job,
    record,
    resumed: how.resumed,
    delta: how.delta ?? null,
    free: how.free ?? null,
    source,
    destinations,
    close: async () => {
      await Promise.all(all.map((d) => d.close().catch(() => undefined)));
    },
  };
}
