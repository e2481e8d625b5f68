// Everything that happens before the first byte is written: every check, the
// user's confirmation, then opening the devices and the job's record. A check
// that fails throws Refused and nothing has been written.

import fs from 'node:fs';
import path from 'node:path';
import type { Target } from './copier';
import { DEFAULT_REGION_SIZE, makeGeometry, regionSizeProblem } from './geometry';
import { BlockDevice } from './io/block-device';
import type { Device } from './io/device';
import { IMAGE_BLOCK_SIZE, ImageFile } from './io/image-file';
import { identify, identityProblem } from './identity';
import { describeBlockDevice, destinationProblems } from './drives';
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
}

/** Asked once before writing to drives; false declines. */
export type Confirm = (
  drives: Array<{ path: string; size: number; detail: string }>,
) => Promise<boolean>;

export interface PreparedJob {
  job: HydrationJob;
  record: JobRecord;
  resumed: boolean;
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
};

function optionsProblem(o: JobOptions): string | null {
  if (!Number.isInteger(o.threshold) || o.threshold < 1 || o.threshold > 4096) {
    return `threshold must be a whole number from 1 to 4096, not ${o.threshold}`;
  }
  if (!Number.isInteger(o.batch) || o.batch < 1 || o.batch > o.threshold) {
    return `batch must be a whole number from 1 to the threshold (${o.threshold}), not ${o.batch}`;
  }
  return throttleProblem({ percent: o.throttle, maxRate: o.maxRate });
}

interface Probe {
  path: string;
  kind: 'block' | 'file' | 'missing';
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
    const info = describeBlockDevice(p);
    return { path: p, kind: 'block', size: info.size, logicalBlockSize: info.logicalBlockSize };
  }
  if (st.isFile())
    return { path: p, kind: 'file', size: st.size, logicalBlockSize: IMAGE_BLOCK_SIZE };
  throw new Refused(`${p} is neither a drive nor an image file`);
}

/** Opens a drive or image for reading only; `role` names it in the messages. */
export async function openReadable(p: string, role = 'source'): Promise<Device> {
  const found = probe(p);
  if (found.kind === 'missing') throw new Refused(`${role} ${p} does not exist`);
  try {
    const device =
      found.kind === 'block' ? await BlockDevice.open(p, false) : ImageFile.open(p, false);
    if (device.size === 0) throw new Refused(`${role} ${p} is empty`);
    return device;
  } catch (e) {
    if (e instanceof Refused) throw e;
    throw new Refused(`${role} ${p} can't be read: ${(e as Error).message}`);
  }
}

const openSource = (p: string): Promise<Device> => openReadable(p);

/** Canonical path, so that another name for the same thing finds the same job. */
function canonical(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
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

  const source = await openSource(sourcePath);
  try {
    const probes = destPaths.map((d) => checkDestination(source, d, request));
    const regionSize = request.regionSize ?? DEFAULT_REGION_SIZE;
    const sizeProblem = regionSizeProblem(regionSize, [
      source.logicalBlockSize,
      ...probes.map((p) => p.logicalBlockSize),
    ]);
    if (sizeProblem) throw new Refused(sizeProblem);
    await confirmDrives(probes, confirm);

    const sourceIdentity = await identify(source, true);
    const destinations = await openDestinations(probes, source.size, true);
    const geometry = makeGeometry(source.size, regionSize);
    const targets = destinations.map((d) => targetFor(d.device, d.emptied, request.options));
    const id = meta.createJob({
      source: sourcePath,
      sourceSize: source.size,
      sourceIdentity,
      regionSize,
      regionsTotal: geometry.regionCount,
      options: request.options,
      destinations: await Promise.all(
        destinations.map(async (d) => ({
          path: d.device.path,
          size: d.device.size,
          identity: { ...(await identify(d.device, false)), emptied: d.emptied },
        })),
      ),
    });
    const record = meta.getJob(id) as JobRecord;
    return assemble(meta, record, source, targets, false);
  } catch (e) {
    await source.close();
    throw e;
  }
}

/** Resumes job `id` onto the same source and destinations; anything else is refused. */
export async function setUpResume(
  meta: Metadata,
  id: number,
  confirm: Confirm,
  newOptions?: Partial<JobOptions>,
  allow: Pick<CloneRequest, 'allowMounted' | 'allowSystem'> = {},
): Promise<PreparedJob> {
  const record = meta.getJob(id);
  if (!record) throw new Refused(`there is no job ${id}`);
  if (record.state === 'done') throw new Refused(`job ${id} is already done`);
  if (record.state === 'running') throw new Refused(`job ${id} is running (process ${record.pid})`);
  const options = { ...record.options, ...pickLive(newOptions) };
  const problem = optionsProblem(options);
  if (problem) throw new Refused(problem);

  const source = await openSource(record.source);
  try {
    const sourceProblem = identityProblem(
      `source ${record.source}`,
      record.sourceIdentity,
      await identify(source, true),
    );
    if (sourceProblem) throw new Refused(`${sourceProblem}; job ${id} can't resume onto it`);
    const live = record.destinations.filter((d) => !d.failed);
    if (live.length === 0) throw new Refused(`every destination of job ${id} failed`);
    const probes = live.map((d) => {
      const found = probe(d.path);
      if (found.kind === 'missing') throw new Refused(`destination ${d.path} is gone`);
      // Said before the size checks: a detached drive or a swapped one is not "too small".
      if (found.size !== d.size) {
        const now =
          found.size === 0 ? 'has no medium (size 0)' : `changed size to ${found.size} bytes`;
        throw new Refused(
          `destination ${d.path} ${now}; job ${id} wrote to ${d.size} bytes there: ` +
            'reattach the same drive',
        );
      }
      checkDestination(source, d.path, allow);
      return found;
    });
    await confirmDrives(probes, confirm);
    const opened = await openDestinations(probes, source.size, false);
    const targets: Target[] = [];
    for (const [i, d] of live.entries()) {
      const { device } = opened[i];
      const now = await identify(device, false);
      const why = identityProblem(`destination ${d.path}`, d.identity, now);
      if (why) {
        await Promise.all(opened.map((o) => o.device.close()));
        throw new Refused(`${why}; job ${id} can't resume onto it`);
      }
      targets.push(targetFor(device, Boolean(d.identity.emptied), options));
    }
    meta.setState(id, 'running', { options });
    return assemble(meta, { ...record, options }, source, targets, true);
  } catch (e) {
    await source.close();
    throw e;
  }
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

function checkDestination(
  source: Device,
  dest: string,
  request: Pick<CloneRequest, 'allowMounted' | 'allowSystem'>,
): Probe {
  const found = probe(dest);
  if (found.kind === 'missing') {
    if (!fs.existsSync(path.dirname(dest))) {
      throw new Refused(`destination ${dest}: folder ${path.dirname(dest)} does not exist`);
    }
    return { ...found, kind: 'file' };
  }
  const problems = destinationProblems(source.path, dest, {
    allowMounted: request.allowMounted,
    allowSystem: request.allowSystem,
  });
  if (problems.length > 0) throw new Refused(problems.join('; '));
  if (found.kind === 'block' && found.size < source.size) {
    throw new Refused(
      `destination ${dest} is smaller (${formatBytes(found.size)}) than the source (${formatBytes(source.size)})`,
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

async function openDestinations(
  probes: Probe[],
  size: number,
  fresh: boolean,
): Promise<Array<{ device: Device; emptied: boolean }>> {
  const opened: Array<{ device: Device; emptied: boolean }> = [];
  try {
    for (const p of probes) {
      if (p.kind === 'block') {
        opened.push({ device: await BlockDevice.open(p.path, true), emptied: false });
        continue;
      }
      const file = ImageFile.open(p.path, true);
      opened.push({ device: file, emptied: false });
      if (!fresh) continue;
      // A fresh image is emptied first, so zero regions can be left as holes.
      const emptied = file.reset(size);
      if (!emptied && file.size < size) {
        throw new Refused(`destination ${p.path} can't be resized to ${size} bytes`);
      }
      opened[opened.length - 1].emptied = emptied;
    }
  } catch (e) {
    await Promise.all(opened.map((o) => o.device.close()));
    if (e instanceof Refused) throw e;
    throw new Refused(`can't open a destination for writing: ${(e as Error).message}`);
  }
  return opened;
}

/** Sparse is the default for image files, and for drives only when asked. */
function targetFor(device: Device, emptied: boolean, options: JobOptions): Target {
  const sparse = options.sparse ?? device.kind === 'file';
  return { device, skipZeros: sparse && (device.kind === 'block' || emptied) };
}

function assemble(
  meta: Metadata,
  record: JobRecord,
  source: Device,
  targets: Target[],
  resumed: boolean,
): PreparedJob {
  const geometry = makeGeometry(record.sourceSize, record.regionSize);
  const map = resumed ? meta.loadBitmap(record) : new RegionMap(geometry.regionCount);
  const job = new HydrationJob({
    id: record.id,
    metadata: meta,
    geometry,
    source,
    targets,
    map,
    options: record.options,
  });
  const destinations = targets.map((t) => t.device);
  return {
    job,
    record,
    resumed,
    source,
    destinations,
    close: async () => {
      await Promise.all([source, ...destinations].map((d) => d.close().catch(() => undefined)));
    },
  };
}
