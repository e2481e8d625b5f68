// Drives and image files as the handlers see them: what the contract shows of each
// (DriveInfo, with its verdicts), the paths the user gives, and the checks on a clone
// before the engine is asked (the engine checks everything again; this is where the
// user is told).

import fs from 'node:fs';
import path from 'node:path';
import { type Drive, fileDrive, imageFileDrive } from '../engine/drives/classify';
import { driveFacts, type Facts, pathFacts } from '../engine/drives/facts';
import { drivePlatform } from '../engine/drives/platform';
import type { SystemSnapshot } from '../engine/drives/topology';
import {
  inUse,
  namedTwice,
  sourceVerdict,
  targetVerdict,
  verdictFor,
} from '../engine/drives/safety';
import { imageSize } from '../engine/io/compressed/index';
import { isUrl } from '../engine/io/http/url';
import { type PartitionsEnd, partitionsOf } from '../engine/session/plan-tables';
import type { CloneRequest, DriveQuery } from '../preload/api';
import type { DriveInfo, DriveRole } from '../preload/events';
import { ApiError } from './api-error';

/**
 * An image file as the copy sees it: a compressed image is as big as what it holds
 * (exact where its format says, else an estimate), not as its file.
 */
export async function imageDrive(file: string): Promise<Drive & { sizeKnown: boolean }> {
  const drive = imageFileDrive(file);
  try {
    const { size, known } = await imageSize(drive.path);
    return { ...drive, size, sizeKnown: known };
  } catch {
    return { ...drive, sizeKnown: true }; // not there yet, or unreadable: its verdict says so
  }
}

/** A download picked as a source: what the copy will see of it, asked of its server once. */
export interface PickedDownload {
  drive: Drive & { sizeKnown: boolean };
  partitions: PartitionsEnd | null;
}

/**
 * What is at `url`, as the engine will read it: its image's size (exact where the server
 * or the format says it, else a guess) and its partition table. ApiError 'refused' with
 * the engine's words when it can't be had (404, an untrusted certificate…).
 */
export async function describeDownload(url: string): Promise<PickedDownload> {
  const { openReadable } = await import('../engine/io/open');
  const { isStream } = await import('../engine/io/device');
  const { streamSize } = await import('../engine/io/compressed/index');
  const { partitionsIn } = await import('../engine/session/plan-tables');
  const { urlFileName } = await import('../engine/io/http/checksum-file');
  let source;
  try {
    source = await openReadable(url, 'source');
  } catch (e) {
    throw new ApiError('refused', (e as Error).message);
  }
  try {
    const { size, known } = isStream(source)
      ? streamSize(source as Parameters<typeof streamSize>[0])
      : { size: source.size, known: true };
    const drive: Drive & { sizeKnown: boolean } = {
      ...fileDrive({
        path: url,
        name: urlFileName(url) || url,
        size,
        bus: 'download',
        readOnly: true,
      }),
      sizeKnown: known,
    };
    return { drive, partitions: await partitionsIn(source).catch(() => null) };
  } finally {
    await source.close();
  }
}

/** A download is read, never written. */
const DOWNLOAD_VERDICTS: DriveInfo['verdicts'] = {
  source: { level: 'usable', reasons: [] },
  target: { level: 'refused', reasons: ['a download is only read: it can’t be a target'] },
};

/**
 * The picture of the drives the handlers look in: the one the drive list came from
 * (`kept`), else read now without blocking; where none can be read, nothing is known of
 * the drives beyond the list.
 */
export async function drivesPicture(kept: SystemSnapshot | null): Promise<() => SystemSnapshot> {
  const known = kept ??
    (await drivePlatform()
      .snapshot()
      .catch(() => null)) ?? { topology: { nodes: new Map() }, uses: [] };
  return () => known;
}

/** `snapshot`: the picture `drive` was listed from, for the verdicts. */
export function toDriveInfo(
  drive: Drive & { sizeKnown?: boolean; pickedAs?: DriveRole[] },
  query: DriveQuery,
  snapshot: () => SystemSnapshot,
  sourceSize?: number,
  partitions?: { end: number; fitSize: number } | null,
): DriveInfo {
  return {
    path: drive.path,
    name: drive.name,
    size: drive.size,
    sizeKnown: drive.sizeKnown ?? true,
    logicalBlockSize: drive.logicalBlockSize,
    bus: drive.bus,
    removable: drive.removable,
    readOnly: drive.readOnly,
    mountpoints: [...drive.mountpoints],
    system: drive.system,
    kind: drive.kind,
    serial: drive.serial,
    backingFile: drive.backingFile,
    verdicts: isUrl(drive.path)
      ? DOWNLOAD_VERDICTS
      : {
          source: verdictFor(drive, 'source', {}, snapshot),
          target: verdictFor(
            drive,
            'target',
            {
              sourcePath: query.source,
              sourceSize,
              // A smaller drive that holds the source's partitions is offered a fitted copy.
              ...(partitions ? { partitions, fit: true } : {}),
              allowMounted: query.allowMounted,
              allowSystem: query.allowSystem,
            },
            snapshot,
          ),
        },
    pickedAs: [...(drive.pickedAs ?? [])],
  };
}

function realOrResolved(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

export function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/** The listed drive that `p` names (any path to it), or undefined. */
export function findDrive(drives: Drive[], p: string): Drive | undefined {
  const real = realOrResolved(p);
  return drives.find((d) => d.path === p || realOrResolved(d.path) === real);
}

/**
 * Facts about `p` for the safety rules: a listed drive as the user was shown it, and
 * anything else as it is now. A block device DriveTwin does not list is not written.
 */
function factsOf(
  p: string,
  drives: Drive[],
  snapshot: () => SystemSnapshot,
  source?: string,
): Facts {
  const listed = findDrive(drives, p);
  const st = statOrNull(p);
  if (listed?.kind === 'block' && st) return driveFacts(listed, source, snapshot);
  if (st?.isBlockDevice()) {
    throw new ApiError('refused', `${p} is not a drive DriveTwin lists (no longer connected?)`);
  }
  return pathFacts(p, { source, drive: listed?.kind === 'block', snapshot });
}

export function requireAbsolute(p: string, what: string): string {
  if (!path.isAbsolute(p)) throw new ApiError('invalid', `${what}: give a full path, not "${p}"`);
  return path.resolve(p);
}

/** A source: a full path, or an http(s) URL (a download). */
export function requireSource(p: string): string {
  return isUrl(p) ? p : requireAbsolute(p, 'source');
}

/** The paths a command reads, for elevation: a download is no file. */
export function filesOnly(paths: string[]): string[] {
  return paths.filter((p) => !isUrl(p));
}

/**
 * The size and partition table a copy from `source` has: a download's as its server
 * described it when its URL was given, else read from the drive or image.
 */
export async function sourceShape(
  source: string,
  drives: Drive[],
  download: PickedDownload | null | undefined,
): Promise<{ sourceSize: number | undefined; partitions: PartitionsEnd | null }> {
  if (download) return { sourceSize: download.drive.size, partitions: download.partitions };
  return { sourceSize: await sourceSizeOf(source, drives), partitions: await partitionsOf(source) };
}

/** The size a copy from `p` has: a drive's, or an image's uncompressed size. */
export async function sourceSizeOf(p: string, drives: Drive[]): Promise<number | undefined> {
  const listed = findDrive(drives, p);
  if (listed?.kind === 'block') return listed.size;
  return statOrNull(p) ? (await imageDrive(p)).size : listed?.size;
}

/** A source that can be read (a drive DriveTwin lists, or a file), as a full path; else why not. */
export function checkSource(p: string, drives: Drive[], snapshot: () => SystemSnapshot): string {
  const source = requireAbsolute(p, 'source');
  const sourceFacts = factsOf(source, drives, snapshot);
  const readable = sourceVerdict(sourceFacts);
  if (readable.level === 'refused') {
    const gone = sourceFacts.kind === 'missing' && !sourceFacts.drivePath;
    throw new ApiError(gone ? 'not-found' : 'refused', readable.reasons.join('; '));
  }
  return source;
}

/**
 * Every check the user must hear about before the engine is asked: the source can
 * be read, each target may be written (engine/drives/safety.ts says why not), and
 * each drive target carries the confirmation it needs. `drives`: as listed now, and
 * `snapshot` the picture they were listed from; `download`: the source is a URL, and
 * this is what its server said of it.
 */
export async function checkClone(
  request: CloneRequest,
  drives: Drive[],
  snapshot: () => SystemSnapshot,
  download: PickedDownload | null,
): Promise<{ confirmed: string[]; allowMounted: boolean; allowSystem: boolean }> {
  // A download was looked at when its URL was given: it is no file or drive to check here.
  const source = download
    ? requireSource(request.source)
    : checkSource(request.source, drives, snapshot);
  const twice = namedTwice(request.targets.map((t) => t.path));
  if (twice) throw new ApiError('refused', twice);
  const { sourceSize, partitions } = await sourceShape(source, drives, download);

  const confirmed: string[] = [];
  let allowMounted = false;
  let allowSystem = false;
  for (const target of request.targets) {
    requireAbsolute(target.path, 'target');
    const listed = findDrive(drives, target.path);
    const systemDrive = listed?.kind === 'block' && listed.system;
    if (target.confirmSystemName !== undefined && !systemDrive) {
      throw new ApiError(
        'invalid',
        `target ${target.path}: confirmSystemName is only for the drive that holds the system`,
      );
    }
    const facts = factsOf(target.path, drives, snapshot, source);
    const verdict = targetVerdict(facts, {
      sourceSize,
      ...(partitions ? { partitions, fit: request.options?.fit === true } : {}),
      allowMounted: target.allowMounted === true,
      allowSystem: target.confirmSystemName !== undefined,
    });
    if (verdict.level === 'refused') throw new ApiError('refused', verdict.reasons.join('; '));
    allowMounted ||= target.allowMounted === true && inUse(facts);
    if (facts.kind !== 'block') continue;
    if (target.confirmed !== true) {
      throw new ApiError(
        'refused',
        `target ${target.path} is a drive: everything on it will be overwritten, ` +
          'and the user has to confirm that (confirmed: true)',
      );
    }
    if (listed?.system && target.confirmSystemName !== listed.name) {
      throw new ApiError(
        'refused',
        `target ${target.path} holds the running system: confirmSystemName must be its name, "${listed.name}"`,
      );
    }
    allowSystem ||= facts.system;
    confirmed.push(target.path);
  }
  return { confirmed, allowMounted, allowSystem };
}

/**
 * The image file the user picked or typed, as a full path: one to read must be a
 * readable file; one to write, a file or nothing yet, in a folder that exists.
 */
export function checkImageFile(chosen: string, forWriting: boolean): string {
  const file = requireAbsolute(chosen, 'image');
  const st = statOrNull(file);
  if (forWriting) {
    if (st && !st.isFile()) throw new ApiError('refused', `${file} is not a regular file`);
    const folder = path.dirname(file);
    if (!statOrNull(folder)?.isDirectory()) {
      throw new ApiError('not-found', `folder ${folder} does not exist`);
    }
  } else {
    if (!st) throw new ApiError('not-found', `${file} does not exist`);
    if (!st.isFile()) throw new ApiError('refused', `${file} is not an image file`);
    try {
      fs.accessSync(file, fs.constants.R_OK);
    } catch {
      throw new ApiError('refused', `${file} can't be read`);
    }
  }
  return file;
}

/**
 * What driveContents may look into: a drive DriveTwin lists, or an image file (picked,
 * or a regular file; one that does not exist yet is a new file). With its size.
 */
export function contentsPath(
  p: string,
  drives: Drive[],
  picked: boolean,
): { path: string; size: number } {
  const file = requireAbsolute(p, 'path');
  const listed = findDrive(drives, file);
  if (listed?.kind === 'block') return { path: listed.path, size: listed.size };
  const st = statOrNull(file);
  if (st?.isBlockDevice()) {
    throw new ApiError('refused', `${p} is not a drive DriveTwin lists (no longer connected?)`);
  }
  if (st && !st.isFile()) throw new ApiError('refused', `${p} is not an image file`);
  if (!st && !picked) throw new ApiError('not-found', `${p} does not exist`);
  return { path: file, size: st?.size ?? 0 };
}
