// May a drive be read from, may a target be written — and why not.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatBytes } from '../size';
import type { Drive } from './classify';
import { blockInfoOf, type BlockInfo, type BlockNode, SWAP } from './topology';
import { nodeOfBlockDevice, readSystemSnapshot } from './linux';
import { canonical, fileRegion, overlapProblem, regionKey } from './overlap';

export type Role = 'source' | 'target';
export type Verdict = { level: 'usable' | 'confirm' | 'refused'; reasons: string[] };

export interface VerdictOptions {
  sourcePath?: string;
  allowMounted?: boolean;
  allowSystem?: boolean;
  /** Bytes of the chosen source: a smaller target is refused. */
  sourceSize?: number;
}

function describeDrive(drive: Drive): string {
  return `${drive.path} (${drive.name}, ${formatBytes(drive.size)})`;
}

function mountedReason(drive: Drive): string {
  const mounts = drive.mountpoints.filter((m) => m !== SWAP);
  const parts: string[] = [];
  if (mounts.length > 0) parts.push(`is mounted at ${mounts.join(', ')}`);
  if (drive.mountpoints.includes(SWAP)) parts.push('is in use as swap');
  return `${drive.path} ${parts.join(' and ')}`;
}

/** Whether `drive` is, or overlaps, the chosen source: asked of the live system when both exist. */
function sourceOverlap(drive: Drive, sourcePath: string): string | null {
  // An image file still to be created is asked about too: it would lie on its folder's filesystem.
  if (fs.existsSync(sourcePath) && (fs.existsSync(drive.path) || drive.kind === 'file')) {
    try {
      return overlapProblem(sourcePath, drive.path, readSystemSnapshot());
    } catch {
      // fall through to what the paths alone say
    }
  }
  const source = path.resolve(sourcePath);
  if (source === path.resolve(drive.path)) return `${drive.path} is the source`;
  if (drive.backingFile && path.resolve(drive.backingFile) === source) {
    return `${drive.path} is a loop device backed by the source image ${sourcePath}`;
  }
  const partition = new RegExp(`^${drive.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}p?\\d+$`);
  if (drive.kind === 'block' && partition.test(source)) {
    return `the source ${sourcePath} is a partition of ${drive.path}`;
  }
  return null;
}

function sourceVerdict(drive: Drive): Verdict {
  const refused: string[] = [];
  if (drive.kind === 'file') {
    try {
      fs.accessSync(drive.path, fs.constants.R_OK);
      if (!fs.statSync(drive.path).isFile()) refused.push(`${drive.path} is not a regular file`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      refused.push(
        code === 'ENOENT'
          ? `${drive.path} does not exist`
          : `${drive.path} cannot be read (${code})`,
      );
    }
  }
  if (refused.length === 0 && drive.size === 0) {
    refused.push(
      drive.kind === 'file' ? `${drive.path} is empty` : `${drive.path} has no medium (size 0)`,
    );
  }
  if (refused.length > 0) return { level: 'refused', reasons: refused };
  const notes: string[] = [];
  if (drive.mountpoints.some((m) => m !== SWAP)) {
    notes.push(
      `${mountedReason(drive)}: files changed during the copy may be copied inconsistently`,
    );
  }
  return { level: 'usable', reasons: notes };
}

function targetVerdict(drive: Drive, opts: VerdictOptions): Verdict {
  const refused: string[] = [];
  const confirm: string[] = [];
  if (opts.sourcePath) {
    const overlap = sourceOverlap(drive, opts.sourcePath);
    if (overlap) refused.push(overlap);
  }
  if (drive.readOnly) refused.push(`${drive.path} is read-only`);
  if (drive.kind === 'block' && drive.size === 0)
    refused.push(`${drive.path} has no medium (size 0)`);
  if (
    opts.sourceSize !== undefined &&
    drive.kind === 'block' &&
    drive.size > 0 &&
    drive.size < opts.sourceSize
  ) {
    refused.push(
      `${drive.path} (${formatBytes(drive.size)}) is smaller than the source (${formatBytes(opts.sourceSize)})`,
    );
  }
  if (drive.system) {
    const why = `${drive.path} holds the running system`;
    if (opts.allowSystem) confirm.push(`${why}: writing it destroys the system you are running`);
    else refused.push(why);
  }
  if (drive.mountpoints.length > 0) {
    if (opts.allowMounted) confirm.push(`${mountedReason(drive)}: it will be written while in use`);
    else refused.push(mountedReason(drive));
  }
  if (refused.length > 0) return { level: 'refused', reasons: refused };
  if (drive.kind === 'file') {
    const reasons =
      drive.size > 0
        ? [`${drive.path} exists (${formatBytes(drive.size)}) and will be overwritten`]
        : [];
    return { level: 'usable', reasons };
  }
  return {
    level: 'confirm',
    reasons: [`everything on ${describeDrive(drive)} will be overwritten`, ...confirm],
  };
}

/**
 * May `drive` be cloned from (source) or onto (target)? Writing a drive always needs
 * confirmation; image files are usable unless they are, or lie on, the source.
 */
export function verdictFor(drive: Drive, role: Role, opts: VerdictOptions = {}): Verdict {
  return role === 'source' ? sourceVerdict(drive) : targetVerdict(drive, opts);
}

function inUseProblems(dest: string, info: BlockInfo): string[] {
  const mounts = info.mountpoints.filter((m) => m !== SWAP);
  const problems: string[] = [];
  if (mounts.length > 0) problems.push(`${dest} is mounted at ${mounts.join(', ')}`);
  if (info.mountpoints.includes(SWAP)) problems.push(`${dest} is in use as swap`);
  if (problems.length === 0 && info.holders.length > 0)
    problems.push(`${dest} is in use by ${info.holders.join(', ')}`);
  return problems;
}

/**
 * Why `dest` may not be written when cloning from `source` (block devices or files).
 * Empty: it may. Each problem is a sentence naming the path.
 */
export function destinationProblems(
  source: string,
  dest: string,
  opts: { allowMounted?: boolean; allowSystem?: boolean } = {},
): string[] {
  const problems: string[] = [];
  const snapshot = readSystemSnapshot();
  if (!fs.existsSync(source)) problems.push(`the source ${source} does not exist`);
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(dest);
  } catch {
    if (path.resolve(dest).startsWith('/dev/')) problems.push(`${dest} does not exist`);
    else if (!fs.existsSync(path.dirname(path.resolve(dest)))) {
      problems.push(`the folder of ${dest} (${path.dirname(path.resolve(dest))}) does not exist`);
    }
  }
  if (st && !st.isBlockDevice() && !st.isFile()) {
    problems.push(
      `${dest} is ${st.isDirectory() ? 'a folder' : 'neither a block device nor a regular file'}`,
    );
    return problems;
  }
  const overlap = overlapProblem(source, dest, snapshot);
  if (overlap) problems.push(overlap);
  if (st?.isBlockDevice()) {
    let found: { node: BlockNode; real: string };
    try {
      found = nodeOfBlockDevice(dest, snapshot);
    } catch (err) {
      problems.push((err as Error).message);
      return problems;
    }
    const { node, real } = found;
    const info = blockInfoOf(snapshot, node, real);
    if (info.readOnly) problems.push(`${dest} is read-only`);
    if (!opts.allowMounted) problems.push(...inUseProblems(dest, info));
    if (info.system && !opts.allowSystem) {
      const disk = info.wholeDisk === real ? '' : ` (${dest} is on ${info.wholeDisk})`;
      problems.push(`${dest} is on the system drive, which holds the running system${disk}`);
    }
  } else if (st?.isFile()) {
    try {
      fs.accessSync(dest, fs.constants.W_OK);
    } catch (err) {
      problems.push(`${dest} is read-only (${(err as NodeJS.ErrnoException).code})`);
    }
    if (!opts.allowMounted) {
      // Writing the backing file of a mounted loop device writes under a live filesystem.
      const region = fileRegion(dest, snapshot);
      for (const node of snapshot.topology.nodes.values()) {
        if (!region || node.type !== 'loop' || !node.backingFile) continue;
        const loop = canonical({ kind: 'block', node }, snapshot);
        if (regionKey(loop) !== regionKey(region)) continue;
        const info = blockInfoOf(snapshot, node);
        for (const problem of inUseProblems(node.path, info)) {
          problems.push(
            `${dest} is the backing file of ${node.path}, which ${problem.slice(node.path.length + 1)}`,
          );
        }
      }
    }
  }
  return problems;
}
