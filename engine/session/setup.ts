// The first writes, once every check passed and the destinations and the job are
// claimed: where a new job's destinations hold old partition tables (partitions/wipe.ts:
// the job zeroes them before its first region), images emptied or resized, backups created or cut back to their last whole
// frame, the starting bitmap committed (seeded from a mapfile, with free space placed,
// or reduced to what a returning destination holds), then the hydration job.

import { createHash, randomBytes } from 'node:crypto';
import type { Claim } from './claim';
import type { Target } from '../hydration/copier';
import { type Geometry, type Range, regionRange } from '../geometry';
import type { Device } from '../io/device';
import { ImageFile } from '../io/image-file';
import { ZstImage } from '../io/zst-image';
import type { JobTarget } from '../hydration/job-parts';
import type { Metadata } from '../store/metadata';
import { Refused, openReadable } from '../io/open';
import type { JobOptions } from '../options';
import { type TableWrites, tableWrites } from '../partitions/rewrite';
import type { Plan } from './plan';
import { RegionMap } from '../store/region-map';
import { oldTableRanges, without } from '../partitions/wipe';

export interface SetUp {
  map: RegionMap;
  targets: JobTarget[];
  /** Regions zeroed rather than copied (free space written on some destination). */
  zeroRegions: RegionMap | null;
}

export async function setUp(meta: Metadata, plan: Plan, claim: Claim, id: number): Promise<SetUp> {
  const { geometry } = plan;
  let map = plan.record ? meta.loadBitmap(plan.record) : new RegionMap(geometry.regionCount);
  if (plan.seeded) map.load([{ index: 0, bytes: plan.seeded.bits }]);
  // A destination coming back holds only what was committed while it was in the job.
  for (const d of plan.destinations.filter((d) => d.restore)) {
    map = meta.restoreDestination({ ...plan.record!, id }, d.index);
  }
  const resumeAt = plan.intent === 'resume' && !plan.verifyOnly ? zstResumePoint(plan, map) : null;
  // An image file is as big as the source — or, fitted, as the disk that just holds its partitions.
  const size =
    plan.tables?.imageSize ?? (Number.isFinite(geometry.regionCount) ? geometry.size : null);
  const targets: JobTarget[] = [];
  try {
    for (const d of plan.destinations) {
      const drive = claim.drives.get(d.index);
      if (drive) claim.drives.delete(d.index);
      // Only verifying: nothing is written, a backup is read by decompressing it.
      const opened = drive
        ? { device: drive as Device, emptied: false }
        : plan.verifyOnly
          ? { device: await openReadable(d.probe.path, 'destination'), emptied: false }
          : await openImage(d.probe.path, d.probe.kind === 'zst', size, {
              fresh: plan.intent === 'new' && !plan.seeded,
              resumeAt,
            });
      const target = targetFor(opened.device, opened, d, plan.options);
      // New identifiers are chosen once for the job: a resume or an update writes the same.
      const kept = d.record?.identity.newIdSeed;
      const seed = plan.options.newIds ? (kept ?? randomBytes(16).toString('hex')) : null;
      if (seed && !kept) meta.setIdSeed(id, d.index, seed);
      const wipe =
        plan.intent === 'new' && !opened.emptied ? await oldTables(opened.device, plan, map) : [];
      targets.push({
        ...target,
        tables: tableWritesFor(plan, opened.device, seed),
        index: d.index,
        ...(wipe.length > 0 ? { wipe } : {}),
      });
      if (opened.emptied && plan.intent === 'new') meta.markEmptied(id, d.index);
    }
  } catch (e) {
    await Promise.all(targets.map((t) => t.device.close().catch(() => undefined)));
    throw e;
  }
  const zeroRegions = placeFreeSpace(plan.free, map, targets);
  commitMap(meta, id, map);
  if (!plan.verifyOnly) meta.clearVerified(id);
  return { map, targets, zeroRegions };
}

/**
 * Invariant 9: where a new job's destination holds old partition tables, zeroed before
 * any region is copied — but for what a mapfile says is already there. A backup is a
 * stream, and `--sequential` writes in ascending order only: the source's table is then
 * written in its place at the start, first.
 */
async function oldTables(device: Device, plan: Plan, seeded: RegionMap): Promise<Range[]> {
  if (device instanceof ZstImage || plan.options.sequential || plan.verifyOnly) return [];
  const kept = seeded.runs().map((r) => regionRange(plan.geometry, r.first, r.count));
  return without(await oldTableRanges(device), kept);
}

/** Opens an image or backup destination, emptying a fresh image so zero regions can stay holes. */
async function openImage(
  file: string,
  zst: boolean,
  size: number | null,
  how: { fresh: boolean; resumeAt: number | null },
): Promise<{ device: Device; emptied: boolean }> {
  if (zst) {
    const length = size ?? Number.MAX_SAFE_INTEGER;
    const device = how.fresh
      ? ZstImage.create(file, length)
      : ZstImage.resume(file, length, how.resumeAt ?? 0);
    return { device, emptied: false };
  }
  const image = ImageFile.open(file, true);
  if (!how.fresh) return { device: image, emptied: false };
  const emptied = image.reset(size ?? 0);
  if (!emptied && size !== null && image.size < size) {
    await image.close();
    throw new Refused(`destination ${file} can't be resized to ${size} bytes`);
  }
  return { device: image, emptied };
}

/**
 * Sparse is the default for emptied image files, and for drives only when asked.
 * Free space of a used-only clone is zeroed on backups always, elsewhere when asked.
 * An update writes zeros too: a region may have turned to zeros in the source.
 */
function targetFor(
  device: Device,
  opened: { emptied: boolean },
  d: Plan['destinations'][number],
  options: JobOptions,
): Target {
  const zst = device instanceof ZstImage;
  const emptied = opened.emptied || Boolean(d.record?.identity.emptied);
  const sparse = !zst && (options.sparse ?? device.kind === 'file');
  return {
    device,
    skipZeros: sparse && (device.kind === 'block' || emptied),
    writesFree: zst || (options.zeroFree && !emptied),
  };
}

/**
 * What a destination gets instead of the source's partition tables, for its own size;
 * a backup keeps them. New identifiers come from `seed` when there is one.
 */
function tableWritesFor(plan: Plan, device: Device, seed: string | null): TableWrites | undefined {
  if (!plan.tables || device instanceof ZstImage) return undefined;
  const { table, copyEnd } = plan.tables;
  return tableWrites(table, copyEnd, device.size, seed === null ? false : seededBytes(seed));
}

/** An endless stream of bytes from `seed`: the same identifiers whenever the job writes them. */
function seededBytes(seed: string): (n: number) => Buffer {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (n) => {
    while (pool.length < n) {
      const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
      pool = Buffer.concat([pool, block]);
    }
    const out = Buffer.from(pool.subarray(0, n));
    pool = pool.subarray(n);
    return out;
  };
}

/** Where every backup among the destinations can go on from: a frame boundary, at most the committed prefix. */
function zstResumePoint(plan: Plan, map: RegionMap): number | null {
  const zst = plan.destinations.filter((d) => d.probe.kind === 'zst');
  if (zst.length === 0) return null;
  const g: Geometry = plan.geometry;
  const firstGap = map.nextClear(0);
  const committed = firstGap < 0 ? g.size : firstGap * g.regionSize;
  const at = Math.min(
    ...zst.map((d) => ZstImage.boundaryAtOrBefore(d.probe.path, committed, g.regionSize)),
  );
  // Regions past the last complete frame are hydrated again.
  for (let r = Math.ceil(at / g.regionSize); r < g.regionCount; r++) map.clear(r);
  return at;
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
export function commitMap(meta: Metadata, id: number, map: RegionMap, statusLine = ''): void {
  const chunks = map.takeDirtyChunks();
  if (chunks.length === 0) return;
  meta.commit(id, {
    chunks,
    regionsHydrated: map.count,
    unreadable: [],
    unreadableBytes: 0,
    statusLine,
  });
}
