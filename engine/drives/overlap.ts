// Is the destination the source, or on it, or under it?
//
// Every path is reduced to a region: a block device (by kernel name) or a file (by
// dev:ino). A loop device *is* its backing file, so it is reduced to it. A region lies
// within its containers: a partition in its disk, a volume in its slaves, a file in the
// device of its filesystem. Two paths overlap when one is the other or lies within it;
// two partitions of one disk share a container and do not overlap.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { devnoOf, nodeOfBlockDevice } from './linux';
import {
  type BlockNode,
  findNode,
  isAnonymous,
  loopBacking,
  nodeByDevno,
  type SystemSnapshot,
} from './topology';

type Region =
  | { kind: 'block'; node: BlockNode }
  | { kind: 'file'; dev: bigint; ino: bigint | null; fsNode: BlockNode | null; file: string };

export function regionKey(region: Region): string {
  if (region.kind === 'block') return `block:${region.node.name}`;
  return region.ino === null ? `new file:${region.file}` : `file:${region.dev}:${region.ino}`;
}

/** The block device holding the filesystem a file is on. */
function filesystemNode(dev: bigint, snapshot: SystemSnapshot): BlockNode | null {
  const devno = devnoOf(dev);
  if (!isAnonymous(devno)) return nodeByDevno(snapshot.topology, devno) ?? null;
  // readSystemSnapshot already turned resolvable anonymous devnos into real ones; what
  // is left (tmpfs, overlay) is on no block device. Match the source path all the same.
  const use = snapshot.uses.find((u) => u.devno === devno);
  return use ? (findNode(snapshot.topology, use.source) ?? null) : null;
}

export function fileRegion(file: string, snapshot: SystemSnapshot): Region | null {
  try {
    const st = fs.statSync(file, { bigint: true });
    return {
      kind: 'file',
      dev: st.dev,
      ino: st.ino,
      fsNode: filesystemNode(st.dev, snapshot),
      file,
    };
  } catch {
    return null;
  }
}

/** A loop device stands for its backing file. */
export function canonical(region: Region, snapshot: SystemSnapshot): Region {
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
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    // A file still to be created lies on the filesystem of its folder.
    const folder = fileRegion(path.dirname(path.resolve(p)), snapshot);
    return folder?.kind === 'file' ? { ...folder, ino: null, file: path.resolve(p) } : null;
  }
  if (!st.isBlockDevice()) return fileRegion(p, snapshot);
  try {
    return { kind: 'block', node: nodeOfBlockDevice(p, snapshot).node };
  } catch {
    return null;
  }
}

/** "`inner` lies within `outer`", said as precisely as the picture allows. */
function within(
  inner: Region,
  innerLabel: string,
  outer: Region,
  outerLabel: string,
  snapshot: SystemSnapshot,
): string {
  if (inner.kind === 'file') return `${innerLabel} is a file on ${outerLabel}`;
  const parent = snapshot.topology.nodes.get(inner.node.parents[0] ?? '');
  if (inner.node.type === 'part' && parent) {
    if (outer.kind === 'block' && parent.name === outer.node.name)
      return `${innerLabel} is a partition of ${outerLabel}`;
    const disk = canonical({ kind: 'block', node: parent }, snapshot);
    if (regionKey(disk) === regionKey(canonical(outer, snapshot))) {
      return `${innerLabel} is a partition of ${parent.path}, a loop device backed by ${outerLabel}`;
    }
  }
  const backing = loopBacking(snapshot.topology, inner.node);
  return `${innerLabel} lies on ${outerLabel}${backing ? ` (through the loop device's backing file ${backing})` : ''}`;
}

/** Why writing `dest` would write the source `source`, or null. */
export function overlapProblem(
  source: string,
  dest: string,
  snapshot: SystemSnapshot,
): string | null {
  const src = regionOf(source, snapshot);
  const dst = regionOf(dest, snapshot);
  if (!src || !dst) return null;
  const srcCanon = canonical(src, snapshot);
  const dstCanon = canonical(dst, snapshot);
  const also =
    dest === source ? '' : ` (same ${src.kind === 'block' ? 'device' : 'file'} as ${source})`;
  if (regionKey(srcCanon) === regionKey(dstCanon)) {
    if (src.kind === dst.kind && (src.kind === 'file' || regionKey(src) === regionKey(dst))) {
      return `${dest} is the source${also}`;
    }
    if (dst.kind === 'block' && src.kind === 'file')
      return `${dest} is a loop device backed by the source image ${source}`;
    if (src.kind === 'block' && dst.kind === 'file')
      return `the source ${source} is a loop device backed by ${dest}`;
    return `${dest} and the source ${source} are loop devices backed by the same file ${dst.kind === 'block' ? dst.node.backingFile : ''}`;
  }
  if (containers(dst, snapshot).has(regionKey(srcCanon))) {
    return within(dst, dest, src, `the source ${source}`, snapshot);
  }
  if (containers(src, snapshot).has(regionKey(dstCanon))) {
    return within(src, `the source ${source}`, dst, dest, snapshot);
  }
  return null;
}
