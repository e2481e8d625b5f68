// What the safety rules look at about one source or target, however it was learned:
// from the drive list (what the user was shown) or from the system now (what the
// engine is about to open). safety.ts holds the rules and says them in words.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Drive, driveName } from './classify';
import { loopsBackedBy, type Overlap, overlapOf } from './overlap';
import { drivePlatform } from './platform';
import { blockInfoOf, type DriveNote, notesOf, type SystemSnapshot } from './topology';

export interface Facts {
  path: string;
  /** 'missing': nothing there — a drive that is gone, or an image file still to be created. */
  kind: 'block' | 'file' | 'missing' | 'folder' | 'other';
  /** Named as a drive (listed as one, or under /dev/): never created as a file when missing. */
  drivePath: boolean;
  /** For drives, as a person knows it: "SanDisk Cruzer Blade". */
  name: string;
  size: number;
  readOnly: boolean;
  /** Why a file can't be read (its error code), or null. */
  unreadable: string | null;
  /** A block device missing from the system's picture of the block layer. */
  unknownDevice: boolean;
  /** Of it and of everything on it; a swap area is `[SWAP]`. */
  mountpoints: string[];
  /** What holds it open: device-mapper or md devices on it or its partitions. */
  holders: string[];
  /** On the disk that holds the running system. */
  system: boolean;
  /** The disk a partition is on; null for a whole disk or a file. */
  wholeDisk: string | null;
  backingFile: string | null;
  /** For a file to be created: its folder, when that does not exist. */
  missingFolder: string | null;
  /** For a file: the loop devices it backs, with what uses them. */
  loops: Array<{ path: string; mountpoints: string[]; holders: string[] }>;
  /** How it shares bytes with the chosen source, or null. */
  overlap: Overlap | null;
  /** BitLocker, a dynamic disk: what the user must hear before it is written. */
  notes: DriveNote[];
}

/** One read of the system, taken when first needed. */
function lazySnapshot(): () => SystemSnapshot {
  let snapshot: SystemSnapshot | null = null;
  return () => (snapshot ??= drivePlatform().readSnapshot());
}

/** With how it shares bytes with `source`; a drive that is gone shares none. */
function withOverlap(
  facts: Facts,
  source: string | undefined,
  snapshot: () => SystemSnapshot,
): Facts {
  if (source === undefined || (facts.kind === 'missing' && facts.drivePath)) return facts;
  const kind = facts.kind === 'block' ? 'block' : 'file';
  return { ...facts, overlap: overlapOf(source, { ...facts, kind }, snapshot) };
}

/** Nothing at `p`: the facts every gatherer starts from. */
function nothingKnown(p: string): Facts {
  return {
    path: p,
    kind: 'missing',
    drivePath: false,
    name: path.basename(p),
    size: 0,
    readOnly: false,
    unreadable: null,
    unknownDevice: false,
    mountpoints: [],
    holders: [],
    system: false,
    wholeDisk: null,
    backingFile: null,
    missingFolder: null,
    loops: [],
    overlap: null,
    notes: [],
  };
}

/** The error code of `check`, or null when it passes. */
function failure(check: () => void): string | null {
  try {
    check();
    return null;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/**
 * Facts about a listed drive as the list has it; image files are read now.
 * `source`: the chosen source, for the overlap; `snapshot`: the picture to look in (the
 * app's main process passes one it read without blocking), else read when first needed.
 */
export function driveFacts(
  drive: Drive,
  source?: string,
  snapshot: () => SystemSnapshot = lazySnapshot(),
): Facts {
  if (drive.kind === 'file') return pathFacts(drive.path, { source, snapshot });
  const facts: Facts = {
    ...nothingKnown(drive.path),
    kind: 'block',
    drivePath: true,
    name: drive.name,
    size: drive.size,
    readOnly: drive.readOnly,
    mountpoints: drive.mountpoints,
    holders: drive.holders,
    system: drive.system,
    backingFile: drive.backingFile,
    notes: drive.notes ?? [],
  };
  return withOverlap(facts, source, snapshot);
}

/**
 * Facts about whatever is at `p`, read from the system now. `drive`: `p` was listed
 * as a drive, so it is not a file to create if it is gone.
 */
export function pathFacts(
  p: string,
  opts: { source?: string; drive?: boolean; snapshot?: () => SystemSnapshot } = {},
): Facts {
  const snapshot = opts.snapshot ?? lazySnapshot();
  const platform = drivePlatform();
  // A drive is asked about first: stat can't describe a Windows one.
  const drive = platform.isDrive(p, snapshot);
  const st = drive ? null : statOrNull(p);
  const base = nothingKnown(p);
  let facts: Facts;
  if (drive) {
    facts = liveBlockFacts(p, snapshot());
  } else if (!st) {
    const drivePath = opts.drive === true || platform.isDrivePath(p);
    const folder = path.dirname(path.resolve(p));
    const folderExists = statOrNull(folder)?.isDirectory() === true;
    facts = { ...base, drivePath, missingFolder: drivePath || folderExists ? null : folder };
  } else if (st.isFile()) {
    facts = {
      ...base,
      kind: 'file',
      size: st.size,
      readOnly: failure(() => fs.accessSync(p, fs.constants.W_OK)) !== null,
      unreadable: failure(() => fs.accessSync(p, fs.constants.R_OK)),
      loops: loopsBackedBy(p, snapshot()).map((node) => {
        const info = blockInfoOf(snapshot(), node);
        return { path: node.path, mountpoints: info.mountpoints, holders: info.holders };
      }),
    };
  } else {
    facts = { ...base, kind: st.isDirectory() ? 'folder' : 'other' };
  }
  return withOverlap(facts, opts.source, snapshot);
}

/** A drive as its system describes it now. */
function liveBlockFacts(p: string, snapshot: SystemSnapshot): Facts {
  const base: Facts = { ...nothingKnown(p), kind: 'block', drivePath: true };
  let found;
  try {
    found = drivePlatform().driveNode(p, snapshot);
  } catch {
    return { ...base, unknownDevice: true };
  }
  const info = blockInfoOf(snapshot, found.node, found.real);
  return {
    ...base,
    name: driveName(found.node),
    size: info.size,
    readOnly: info.readOnly,
    mountpoints: info.mountpoints,
    holders: info.holders,
    system: info.system,
    wholeDisk: info.wholeDisk === found.real ? null : info.wholeDisk,
    backingFile: info.backingFile,
    notes: notesOf(snapshot, found.node.name),
  };
}
