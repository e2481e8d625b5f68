// May a drive or file be read from, may a target be written — and why not. The one
// place for these rules and their sentences: the drive list's verdicts (what the
// renderer shows), the backend's check before it asks the engine, and the engine's
// own check before the first byte all come here, so all three say the same thing.
// Each sentence names the path it is about.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatBytes } from '../size';
import type { Drive } from './classify';
import { driveFacts, type Facts, pathFacts } from './facts';
import type { Overlap, Within } from './overlap';
import { drivePlatform } from './platform';
import { type DriveNote, SWAP, type SystemSnapshot } from './topology';

export type Role = 'source' | 'target';
export type Verdict = { level: 'usable' | 'confirm' | 'refused'; reasons: string[] };

export interface VerdictOptions {
  /** The chosen source: a target that is it, or lies on it or under it, is refused. */
  sourcePath?: string;
  /** Bytes of the chosen source: a smaller drive is refused (an image file is grown). */
  sourceSize?: number;
  /**
   * The source's partitions (engine/partitions): a smaller drive that holds them may take
   * a copy fitted to it — only the partitions, with a table for its size — when `fit`.
   */
  partitions?: { end: number; fitSize: number };
  /** The copy may be fitted to a smaller drive (--fit; the app offers it in the confirmation). */
  fit?: boolean;
  allowMounted?: boolean;
  allowSystem?: boolean;
}

// ---------------------------------------------------------------------------
// The sentences

/** "is mounted at /media/x and is in use as swap", or what holds it: null when nothing uses it. */
function inUseSentence(mountpoints: string[], holders: string[]): string | null {
  const mounts = mountpoints.filter((m) => m !== SWAP);
  const uses: string[] = [];
  if (mounts.length > 0) uses.push(`is mounted at ${mounts.join(', ')}`);
  if (mountpoints.includes(SWAP)) uses.push('is in use as swap');
  if (uses.length === 0 && holders.length > 0) uses.push(`is in use by ${holders.join(', ')}`);
  return uses.length > 0 ? uses.join(' and ') : null;
}

function withinSentence(inner: string, outer: string, how: Within): string {
  switch (how.as) {
    case 'file on':
      return `${inner} is a file on ${outer}`;
    case 'partition of':
      return `${inner} is a partition of ${outer}`;
    case 'partition of a loop over':
      return `${inner} is a partition of ${how.disk}, a loop device backed by ${outer}`;
    case 'on':
      return `${inner} lies on ${outer}${how.backing ? ` (through the loop device's backing file ${how.backing})` : ''}`;
  }
}

function overlapSentence(target: string, o: Overlap): string {
  const source = `the source ${o.source}`;
  switch (o.kind) {
    case 'same':
      return `${target} is the source${o.via ? ` (same ${o.via} as ${o.source})` : ''}`;
    case 'target is a loop over the source':
      return `${target} is a loop device backed by the source image ${o.source}`;
    case 'source is a loop over the target':
      return `${source} is a loop device backed by ${target}`;
    case 'loops over one file':
      return `${target} and ${source} are loop devices backed by the same file${o.file ? ` ${o.file}` : ''}`;
    case 'within':
      return o.inner === 'target'
        ? withinSentence(target, source, o.how)
        : withinSentence(source, target, o.how);
  }
}

/** Why nothing can be done with it at all (gone, a folder, unknown), or null. */
function unusable(f: Facts): string | null {
  if (f.kind === 'missing' && f.drivePath) return `${f.path} is not connected`;
  if (f.kind === 'folder') return `${f.path} is a folder`;
  if (f.kind === 'other') return `${f.path} is neither a drive nor a file`;
  if (f.unknownDevice) return `${f.path} is not a block device the system knows`;
  return null;
}

/** What a note means for writing a drive (`target`) or copying from it. */
function noteSentence(p: string, note: DriveNote, role: Role): string {
  switch (note) {
    case 'bitlocker':
      return role === 'target'
        ? `${p} holds a BitLocker volume: its contents are lost for good, recovery key or not`
        : `${p} holds a BitLocker volume: the copy holds its encrypted bytes`;
    case 'bitlocker-locked':
      return `${p} holds a locked BitLocker volume`;
    case 'dynamic':
      return role === 'target'
        ? `${p} is a dynamic disk: volumes that span it and other disks are lost too`
        : `${p} is a dynamic disk: a volume that spans other disks is not all on it`;
  }
}

function noMedium(f: Facts): string {
  return `${f.path} has no medium (size 0)`;
}

function smaller(f: Facts, sourceSize: number): string {
  return `${f.path} (${formatBytes(f.size)}) is smaller than the source (${formatBytes(sourceSize)})`;
}

/** Where the source's last partition ends, and what the drive holds. */
function partitionsSentence(f: Facts, partitions: { end: number; fitSize: number }): string {
  const backup = partitions.fitSize - partitions.end;
  const after = backup > 0 ? ` and its GPT's backup needs ${formatBytes(backup)} after it` : '';
  return `the last partition ends at ${formatBytes(partitions.end)}${after}; this drive holds ${formatBytes(f.size)}`;
}

/**
 * The size rule: a drive smaller than the source is refused, unless the source's
 * partitions fit on it and the copy is fitted to it. Empty: its size is no obstacle;
 * `confirm`: what fitting means, said before anything is written.
 */
function sizeRule(f: Facts, opts: VerdictOptions): { refused?: string; confirm?: string } {
  const { sourceSize, partitions, fit } = opts;
  // A stream of unknown size: only a fitted copy's size is known before its end is read.
  const bigEnough = sourceSize === undefined || f.size >= sourceSize;
  const smallerThanSource = sourceSize === undefined ? null : smaller(f, sourceSize);
  if (partitions && f.size < partitions.fitSize && (fit || !bigEnough)) {
    const lead = smallerThanSource
      ? `${smallerThanSource} and its`
      : `${f.path} is too small: the source's`;
    return { refused: `${lead} partitions don't fit: ${partitionsSentence(f, partitions)}` };
  }
  if (bigEnough) return {};
  if (!partitions) return { refused: smallerThanSource! };
  if (!fit) {
    return {
      refused: `${smallerThanSource}, but its partitions fit: ${partitionsSentence(f, partitions)}. Copy only them with --fit`,
    };
  }
  return {
    confirm: `${smallerThanSource}: only its partitions are copied, with a partition table for this size (${partitionsSentence(f, partitions)})`,
  };
}

// ---------------------------------------------------------------------------
// The rules

/** Mounted, swap, held open, or the backing file of a loop device that is: writing it needs allowMounted. */
export function inUse(f: Facts): boolean {
  return [f, ...f.loops].some((u) => inUseSentence(u.mountpoints, u.holders) !== null);
}

/** Why it can't be read from, or null. */
function unreadable(f: Facts): string | null {
  const stop = unusable(f);
  if (stop) return stop;
  if (f.kind === 'missing') return `${f.path} does not exist`;
  if (f.unreadable) return `${f.path} cannot be read (${f.unreadable})`;
  if (f.size > 0) return null;
  return f.kind === 'file' ? `${f.path} is empty` : noMedium(f);
}

/** May it be read from? Refused when it can't be; a mounted drive gets a note. */
export function sourceVerdict(f: Facts): Verdict {
  const refusal = unreadable(f);
  if (refusal) return { level: 'refused', reasons: [refusal] };
  const mounted = f.mountpoints.some((m) => m !== SWAP) ? inUseSentence(f.mountpoints, []) : null;
  const notes = mounted
    ? [`${f.path} ${mounted}: files changed during the copy may be copied inconsistently`]
    : [];
  notes.push(...f.notes.map((note) => noteSentence(f.path, note, 'source')));
  return { level: 'usable', reasons: notes };
}

/**
 * May it be written? Writing a drive always needs confirmation; an image file is
 * usable (it is created, or emptied and grown to the source's size).
 */
export function targetVerdict(f: Facts, opts: VerdictOptions = {}): Verdict {
  const stop = unusable(f);
  if (stop) return { level: 'refused', reasons: [stop] };
  if (f.missingFolder) {
    return {
      level: 'refused',
      reasons: [`${f.path} can't be created: folder ${f.missingFolder} does not exist`],
    };
  }
  const refused: string[] = [];
  const confirm: string[] = [];
  /** Refused, or when `allowed` said as what the user accepts by confirming. */
  const unless = (allowed: boolean | undefined, why: string, consequence: string): void => {
    if (allowed) confirm.push(`${why}: ${consequence}`);
    else refused.push(why);
  };
  if (f.overlap) refused.push(overlapSentence(f.path, f.overlap));
  if (f.readOnly) refused.push(`${f.path} is read-only`);
  if (f.kind === 'block' && f.size === 0) refused.push(noMedium(f));
  // A target that is the source, or part of it, is refused for that, not for its size.
  if (f.kind === 'block' && f.size > 0 && !f.overlap) {
    const size = sizeRule(f, opts);
    if (size.refused) refused.push(size.refused);
    if (size.confirm) confirm.push(size.confirm);
  }
  if (f.system) {
    const why = f.wholeDisk
      ? `${f.path} is on ${f.wholeDisk}, which holds the running system`
      : `${f.path} holds the running system`;
    unless(opts.allowSystem, why, 'writing it destroys the system you are running');
  }
  // Linux writes a drive in use as it is; macOS and Windows unmount or lock it first.
  const used = inUseSentence(f.mountpoints, f.holders);
  if (used) unless(opts.allowMounted, `${f.path} ${used}`, drivePlatform().whenInUse);
  for (const loop of f.loops) {
    // Writing the backing file of a mounted loop device writes under a live filesystem.
    const loopUsed = inUseSentence(loop.mountpoints, loop.holders);
    if (!loopUsed) continue;
    const why = `${f.path} is the backing file of ${loop.path}, which ${loopUsed}`;
    unless(opts.allowMounted, why, 'it will be written while in use');
  }
  for (const note of f.notes) confirm.push(noteSentence(f.path, note, 'target'));
  if (refused.length > 0) return { level: 'refused', reasons: refused };
  if (f.kind === 'block') {
    const drive = `${f.path} (${f.name}, ${formatBytes(f.size)})`;
    return {
      level: 'confirm',
      reasons: [`everything on ${drive} will be overwritten`, ...confirm],
    };
  }
  const exists =
    f.kind === 'file' && f.size > 0
      ? [`${f.path} exists (${formatBytes(f.size)}) and will be overwritten`]
      : [];
  return { level: 'usable', reasons: [...exists, ...confirm] };
}

// ---------------------------------------------------------------------------
// For the drive list, the engine, and both

/**
 * A listed drive's verdict as a source or as a target (the drive list; the renderer
 * shows it). `snapshot`: the picture the list came from, else read when needed.
 */
export function verdictFor(
  drive: Drive,
  role: Role,
  opts: VerdictOptions = {},
  snapshot?: () => SystemSnapshot,
): Verdict {
  return role === 'source'
    ? sourceVerdict(driveFacts(drive, undefined, snapshot))
    : targetVerdict(driveFacts(drive, opts.sourcePath, snapshot), opts);
}

/**
 * Why `dest` may not be written when cloning from `source`, as the system is now (the
 * engine's check before the first byte). Empty: it may.
 */
export function destinationProblems(
  source: string,
  dest: string,
  opts: Omit<VerdictOptions, 'sourcePath'> = {},
): string[] {
  const verdict = targetVerdict(pathFacts(dest, { source }), opts);
  return verdict.level === 'refused' ? verdict.reasons : [];
}

/** Targets are named by any path to them: a second name for one already named is refused. */
export function namedTwice(targets: string[]): string | null {
  const seen = new Set<string>();
  for (const target of targets) {
    let real: string;
    try {
      real = fs.realpathSync(target);
    } catch {
      real = path.resolve(target);
    }
    if (seen.has(real)) return `${target} is named twice`;
    seen.add(real);
  }
  return null;
}
