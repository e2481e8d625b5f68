// The regions a plan starts from: the free space of a used-only clone (read from the
// source's file system) and the areas a GNU ddrescue mapfile calls rescued. Reads only;
// what can't be used throws Refused.

import fs from 'node:fs';
import { describeBlockDevice } from '../drives/platform';
import { type Geometry, regionRange } from '../geometry';
import type { Device } from '../io/device';
import { type Probe, Refused } from '../io/open';
import { RegionMap } from '../store/region-map';

/** Regions of the source's file system that hold nothing; refuses what can't be read safely. */
export async function freeSpace(source: Device, g: Geometry): Promise<RegionMap> {
  if (source.kind === 'block' && describeBlockDevice(source.path).mountpoints.length > 0) {
    throw new Refused(`--used-only: ${source.path} is mounted; unmount it first`);
  }
  const { usedSpace, freeRegions, FilesystemRefused } = await import('../filesystems');
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
