// Is the destination the source, or on it, or under it?
//
// Every path is reduced to a region: a block device (by kernel name) or a file (by
// dev:ino). A loop device *is* its backing file, so it is reduced to it. A region lies
// within its containers: a partition in its disk, a volume in its slaves, a file in the
// device of its filesystem. Two paths overlap when one is the other or lies within it;
// two partitions of one disk share a container and do not overlap.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { drivePlatform } from './platform';
import { type BlockNode, loopBacking, type SystemSnapshot } from './topology';

/**
 * How a target and the source share bytes; safety.ts says it in words. `same`: one
 * thing, `via` another name for it (a link, another path to the device) unless null.
 */
export type Overlap = { source: string } & (
  | { kind: 'same'; via: 'device' | 'file' | null }
  | { kind: 'target is a loop over the source' }
  | { kind: 'source is a loop over the target' }
  | { kind: 'loops over one file'; file: string | null }
  | { kind: 'within'; inner: 'target' | 'source'; how: Within }
);

/**
 * How the inner one lies within the outer one: a file on it, a partition of it, a
 * partition of `disk` (a loop device over it), or on it, maybe through `backing`,
 * the backing file of a loop device.
 */
export type Within =
  | { as: 'file on' }
  | { as: 'partition of' }
  | { as: 'partition of a loop over'; disk: string }
  | { as: 'on'; backing: string | null };

export interface OverlapTarget {
  path: string;
  /** 'file' also for an image file still to be created. */
  kind: 'block' | 'file';
  backingFile: string | null;
}

type Region =
  | { kind: 'block'; node: BlockNode }
  | { kind: 'file'; dev: bigint; ino: bigint | null; fsNode: BlockNode | null; file: string };

function regionKey(region: Region): string {
  if (region.kind === 'block') return `block:${region.node.name}`;
  return region.ino === null ? `new file:${region.file}` : `file:${region.dev}:${region.ino}`;
}

function fileRegion(file: string, snapshot: SystemSnapshot): Region | null {
  try {
    const st = fs.statSync(file, { bigint: true });
    return {
      kind: 'file',
      dev: st.dev,
      ino: st.ino,
      fsNode: drivePlatform().fileSystemNode(file, st.dev, snapshot),
      file,
    };
  } catch {
    return null;
  }
}

/** A loop device stands for its backing file. */
function canonical(region: Region, snapshot: SystemSnapshot): Region {
  if (region.kind === 'block' && region.node.type === 'loop' && region.node.backingFile) {
    return fileRegion(region.node.backingFile, snapshot) ?? region;
  }
  return region;
}

/** Keys of the region (as canonical) and of everything it lies within. */
function containers(
  region: Region,
  snapshot: SystemSnapshot,
  seen = new Set<string>(),
): Set<string> {
  const self = canonical(region, snapshot);
  const key = regionKey(self);
  if (seen.has(key)) return seen;
  seen.add(key);
  const below =
    self.kind === 'block'
      ? self.node.parents
          .map((p) => snapshot.topology.nodes.get(p))
          .filter((n): n is BlockNode => !!n)
      : self.fsNode
        ? [self.fsNode]
        : [];
  for (const node of below) containers({ kind: 'block', node }, snapshot, seen);
  return seen;
}

function regionOf(p: string, snapshot: SystemSnapshot): Region | null {
  const platform = drivePlatform();
  if (platform.isDrive(p, () => snapshot)) {
    try {
      return { kind: 'block', node: platform.driveNode(p, snapshot).node };
    } catch {
      return null;
    }
  }
  if (!fs.existsSync(p)) {
    // A file still to be created lies on the filesystem of its folder.
    const folder = fileRegion(path.dirname(path.resolve(p)), snapshot);
    return folder?.kind === 'file' ? { ...folder, ino: null, file: path.resolve(p) } : null;
  }
  return fileRegion(p, snapshot);
}

/** How `inner` lies within `outer`, as precisely as the picture allows. */
function within(inner: Region, outer: Region, snapshot: SystemSnapshot): Within {
  if (inner.kind === 'file') return { as: 'file on' };
  const parent = snapshot.topology.nodes.get(inner.node.parents[0] ?? '');
  if (inner.node.type === 'part' && parent) {
    if (outer.kind === 'block' && parent.name === outer.node.name) return { as: 'partition of' };
    const disk = canonical({ kind: 'block', node: parent }, snapshot);
    if (regionKey(disk) === regionKey(canonical(outer, snapshot))) {
      return { as: 'partition of a loop over', disk: parent.path };
    }
  }
  return { as: 'on', backing: loopBacking(snapshot.topology, inner.node) };
}

/** How writing `target` would write the source, from the live system; null: it would not. */
function liveOverlap(source: string, target: string, snapshot: SystemSnapshot): Overlap | null {
  const src = regionOf(source, snapshot);
  const dst = regionOf(target, snapshot);
  if (!src || !dst) return null;
  const srcCanon = canonical(src, snapshot);
  const dstCanon = canonical(dst, snapshot);
  if (regionKey(srcCanon) === regionKey(dstCanon)) {
    if (src.kind === dst.kind && (src.kind === 'file' || regionKey(src) === regionKey(dst))) {
      return {
        source,
        kind: 'same',
        via: target === source ? null : src.kind === 'block' ? 'device' : 'file',
      };
    }
    if (dst.kind === 'block' && src.kind === 'file')
      return { source, kind: 'target is a loop over the source' };
    if (src.kind === 'block' && dst.kind === 'file')
      return { source, kind: 'source is a loop over the target' };
    return {
      source,
      kind: 'loops over one file',
      file: dst.kind === 'block' ? dst.node.backingFile : null,
    };
  }
  if (containers(dst, snapshot).has(regionKey(srcCanon))) {
    return { source, kind: 'within', inner: 'target', how: within(dst, src, snapshot) };
  }
  if (containers(src, snapshot).has(regionKey(dstCanon))) {
    return { source, kind: 'within', inner: 'source', how: within(src, dst, snapshot) };
  }
  return null;
}

/** What the paths alone say, when the live system can't be asked (a path from another machine). */
function overlapByPath(source: string, target: OverlapTarget): Overlap | null {
  const resolved = path.resolve(source);
  if (resolved === path.resolve(target.path)) return { source, kind: 'same', via: null };
  if (target.backingFile && path.resolve(target.backingFile) === resolved) {
    return { source, kind: 'target is a loop over the source' };
  }
  const partition = new RegExp(`^${target.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}p?\\d+$`);
  if (target.kind === 'block' && partition.test(resolved)) {
    return { source, kind: 'within', inner: 'source', how: { as: 'partition of' } };
  }
  return null;
}

/**
 * How writing `target` would write the source `source`, or null. Asked of the live
 * system when both exist; otherwise what the paths say.
 */
export function overlapOf(
  source: string,
  target: OverlapTarget,
  snapshot: () => SystemSnapshot,
): Overlap | null {
  // An image file still to be created is asked about too: it would lie on its folder's filesystem.
  const exists = (p: string): boolean => drivePlatform().isDrive(p, snapshot) || fs.existsSync(p);
  if (exists(source) && (exists(target.path) || target.kind === 'file')) {
    try {
      return liveOverlap(source, target.path, snapshot());
    } catch {
      // fall through to what the paths alone say
    }
  }
  return overlapByPath(source, target);
}

/** The loop devices whose backing file is `file` (by what it is, not by its name). */
export function loopsBackedBy(file: string, snapshot: SystemSnapshot): BlockNode[] {
  const region = fileRegion(file, snapshot);
  if (!region) return [];
  return [...snapshot.topology.nodes.values()].filter(
    (node) =>
      node.type === 'loop' &&
      node.backingFile !== null &&
      regionKey(canonical({ kind: 'block', node }, snapshot)) === regionKey(region),
  );
}

/**
 * Every other name for what writing `target` writes — what a second writer could reach
 * the same bytes by — for the claim to hold as well. A loop device (or a partition of
 * one, or a volume over one) writes its backing file, held `shared` when it writes only
 * a part of it; an image file is written by every loop device over it. Symlinks, bind
 * mounts and /dev/disk/by-* names need nothing more: flock holds the inode, and a
 * drive's exclusive open holds the device, whatever path reached them.
 */
export function otherNames(
  target: string,
  snapshot: SystemSnapshot,
): { files: Array<{ path: string; shared: boolean }>; drives: string[] } {
  const platform = drivePlatform();
  if (!platform.isDrive(target)) {
    return { files: [], drives: loopsBackedBy(target, snapshot).map((n) => n.path) };
  }
  const { node } = platform.driveNode(target, snapshot);
  const files: Array<{ path: string; shared: boolean }> = [];
  const drives: string[] = [];
  const seen = new Set<string>();
  const walk = (n: BlockNode): void => {
    if (seen.has(n.name)) return;
    seen.add(n.name);
    const backing = n.type === 'loop' && n.backingFile ? n.backingFile : null;
    // A backing file that was deleted ("… (deleted)") has no name left to hold.
    if (backing && fs.existsSync(backing)) {
      if (platform.isDrive(backing)) drives.push(backing);
      else files.push({ path: backing, shared: n !== node });
    }
    for (const p of n.parents) {
      const parent = snapshot.topology.nodes.get(p);
      if (parent) walk(parent);
    }
  };
  walk(node);
  return { files, drives };
}
