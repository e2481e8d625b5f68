// The regions a plan starts from: the free space of a used-only clone (read from the
// source's file systems, partition by partition) and the areas a GNU ddrescue mapfile
// calls rescued. Reads only; what can't be used throws Refused.

import fs from 'node:fs';
import { describeBlockDevice, drivePlatform } from '../drives/platform';
import type { UsedSpaceInfo } from '../events';
import { DEFAULT_REGION_SIZE, type Geometry, makeGeometry, regionRange } from '../geometry';
import { type Device, isStream, knownSize } from '../io/device';
import { type Probe, Refused, openReadable } from '../io/open';
import { RegionMap } from '../store/region-map';

/** A used-only clone's free regions, and what it reads of each partition. */
export interface FreeSpace {
  free: RegionMap;
  info: UsedSpaceInfo;
}

/** Regions of the source's file systems that hold nothing; refuses what can't be read safely. */
export async function freeSpace(source: Device, g: Geometry): Promise<FreeSpace> {
  refuseMounted(source);
  if (isStream(source)) {
    throw new Refused(
      `--used-only: ${source.path} is compressed, so it can only be read in order, and the ` +
        'maps of its file systems are spread over it: decompress it first, or copy it whole',
    );
  }
  const fsys = await import('../filesystems');
  let found;
  try {
    found = await fsys.sourceUsedSpace(source);
  } catch (e) {
    if (e instanceof fsys.UsedSpaceRefused) throw new Refused(`--used-only: ${e.message}`);
    throw e;
  }
  if (!found) {
    const held = await fsys.identifySource(source);
    throw new Refused(
      `--used-only: ${source.path} holds no partition table and no ext2/3/4, FAT, NTFS or ` +
        `exFAT file system${held ? ` (it holds ${held})` : ''}`,
    );
  }
  const free = new RegionMap(g.regionCount);
  let freeBytes = 0;
  for (const run of fsys.freeRegions(found.used, g.size, g.regionSize)) {
    free.setRange(run.first, run.count);
    freeBytes += regionRange(g, run.first, run.count).length;
  }
  const { table, areas, outsideBytes, afterLastBytes } = found;
  const fitted = Math.max(0, afterLastBytes - (source.size - g.size)); // --fit leaves the rest out anyway
  return {
    free,
    info: {
      table,
      areas,
      outsideBytes,
      afterLastBytes: fitted,
      bytesToCopy: g.size - freeBytes,
      bytesTotal: g.size,
    },
  };
}

/** What a used-only copy of the source at `path` would read (the app's estimate); reads only. */
export async function usedSpaceOf(
  path: string,
  regionSize = DEFAULT_REGION_SIZE,
): Promise<UsedSpaceInfo> {
  const source = await openReadable(path);
  try {
    const size = knownSize(source) ?? source.size;
    return (await freeSpace(source, makeGeometry(size, regionSize))).info;
  } finally {
    await source.close();
  }
}

/**
 * A file system mounted from the source — the drive, any of its partitions, the loop
 * device over an image file, or the image itself through FUSE — changes under the copy.
 */
function refuseMounted(source: Device): void {
  const snapshot = source.kind === 'file' ? drivePlatform().readSnapshot() : null;
  const drives = snapshot
    ? [...snapshot.topology.nodes.values()]
        .filter((n) => n.type === 'loop' && n.backingFile && sameFile(n.backingFile, source.path))
        .map((n) => n.path)
    : [source.path];
  for (const drive of drives) {
    const info = describeBlockDevice(drive);
    if (info.mountpoints.length === 0) continue;
    const parts = info.partitions
      .map((p) => ({ p, at: describeBlockDevice(p).mountpoints }))
      .filter(({ at }) => at.length > 0);
    const said = parts.length > 0 ? parts : [{ p: drive, at: info.mountpoints }];
    const words = said.map(({ p, at }) =>
      at.includes('[SWAP]') ? `${p} is in use as swap` : `${p} is mounted at ${at.join(', ')}`,
    );
    const over = drive === source.path ? '' : ` (the loop device over ${source.path})`;
    throw new Refused(`--used-only: ${words.join('; ')}${over}; unmount it first`);
  }
  const fused = snapshot?.uses.filter((u) => sameFile(u.source, source.path)) ?? [];
  if (fused.length > 0) {
    const at = fused.map((u) => u.mountpoint).join(', ');
    throw new Refused(`--used-only: ${source.path} is mounted at ${at}; unmount it first`);
  }
}

/** Two paths name the same file (a loop device's backing file may be named otherwise). */
function sameFile(a: string, b: string): boolean {
  try {
    const x = fs.statSync(a);
    const y = fs.statSync(b);
    return x.ino === y.ino && x.dev === y.dev;
  } catch {
    return false;
  }
}

export function readMapfile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Refused(
      `--from-map ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

/** Regions a ddrescue mapfile calls finished: already on the destinations. */
export async function mapSeed(file: string, text: string, g: Geometry): Promise<RegionMap> {
  const { parseMapfile, finishedRegions } = await import('../store/ddrescue-map');
  let runs;
  try {
    runs = finishedRegions(parseMapfile(text), g.size, g.regionSize);
  } catch (e) {
    throw new Refused(`--from-map ${file}: ${(e as Error).message}`);
  }
  const seeded = new RegionMap(g.regionCount);
  for (const run of runs) seeded.setRange(run.first, run.count);
  return seeded;
}

/** A mapfile's finished areas must really be on every destination: refuses those that can't hold them. */
export function holdsRescuedData(probes: Probe[], seeded: RegionMap, g: Geometry): void {
  const runs = seeded.runs();
  const last = runs[runs.length - 1];
  const tail = last ? regionRange(g, last.first, last.count) : { offset: 0, length: 0 };
  const rescuedEnd = tail.offset + tail.length;
  for (const p of probes) {
    if (p.kind === 'missing' || !fs.existsSync(p.path)) {
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
