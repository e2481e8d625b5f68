// What is on a drive or image file now — what a copy onto it would erase: its partition
// table, each partition's file system, label and size, a file system on the whole
// device, or nothing. On Linux from util-linux: `blkid -p` probes the signatures itself
// (no udev database needed, so it works on loop devices and image files alike, and on
// partitions that have no /dev node: it probes them at their offset), and `sfdisk
// --json` reads the partition table. Elsewhere it says it could not look.
//
// "Blank" is said only when it is proven: a new or empty file, or every byte read back
// as zero — holes of a sparse image (or of a loop device's backing file) are zeros
// without reading them; up to BLANK_READ_LIMIT of data is read, never blocking the
// process's event loop (the app's bridge shares it). Otherwise an unrecognised device
// is "nothing recognised" — and whether its start or end holds data.

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import type { DriveContents, PartitionContents, Range } from '../events';
import { dataMap } from '../io/holes';

export type { DriveContents, PartitionContents };

/** Up to this size a device with no signature is read whole to tell blank from not. */
export const BLANK_READ_LIMIT = 256 * 1024 * 1024;
const EDGE = 1024 * 1024;

/** Runs a program: its stdout, or an error carrying its exit code and stderr. */
export type Run = (program: string, args: string[]) => Promise<string>;

export const runProgram: Run = (program, args) =>
  new Promise((resolve, reject) => {
    execFile(program, args, { timeout: 10_000, maxBuffer: 4 << 20 }, (error, stdout, stderr) => {
      if (error) {
        const e = error as Error & { code?: number | string; stderr?: string };
        e.stderr = String(stderr);
        reject(e);
      } else resolve(String(stdout));
    });
  });

/** `blkid -o export` output: KEY=value lines. */
export function parseBlkidExport(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/** `sfdisk --json` output: the table's type and its partitions in bytes. */
export function parseSfdiskJson(text: string): {
  label: string;
  partitions: Array<{ number: number; offset: number; size: number; name: string | null }>;
} {
  const table = (JSON.parse(text) as { partitiontable?: SfdiskTable }).partitiontable;
  if (!table) throw new Error('sfdisk: no partition table in its output');
  const sector = table.sectorsize ?? 512;
  return {
    label: table.label,
    partitions: (table.partitions ?? []).map((p, i) => ({
      number: Number(/(\d+)$/.exec(p.node)?.[1] ?? i + 1),
      offset: p.start * sector,
      size: p.size * sector,
      name: p.name ?? null,
    })),
  };
}

interface SfdiskTable {
  label: string;
  sectorsize?: number;
  partitions?: Array<{ node: string; start: number; size: number; name?: string }>;
}

/** blkid's exit code 2: nothing found. */
function nothingFound(e: unknown): boolean {
  return (e as { code?: unknown }).code === 2;
}

async function probe(run: Run, path: string, at?: { offset: number; size: number }) {
  const args = ['-p', '-o', 'export'];
  if (at) args.push('--offset', String(at.offset), '--size', String(at.size));
  try {
    return parseBlkidExport(await run('blkid', [...args, path]));
  } catch (e) {
    if (nothingFound(e)) return {};
    throw e;
  }
}

/** Reads `length` bytes at `offset` and says whether any is not zero (the event loop goes on). */
async function holdsData(file: fs.promises.FileHandle, offset: number, length: number) {
  const buffer = Buffer.alloc(Math.min(length, EDGE));
  const zeros = Buffer.alloc(buffer.length);
  for (let done = 0; done < length;) {
    const want = Math.min(buffer.length, length - done);
    const { bytesRead } = await file.read(buffer, 0, want, offset + done);
    if (bytesRead <= 0) break;
    if (!buffer.subarray(0, bytesRead).equals(zeros.subarray(0, bytesRead))) return true;
    done += bytesRead;
  }
  return false;
}

/**
 * The file whose holes say where `path` can hold data: itself when it is a file, the
 * backing file of a loop device that maps it from its start; else null.
 */
function holeMapFile(path: string, st: fs.Stats): string | null {
  if (st.isFile()) return path;
  const loop = /^\/dev\/(loop\d+)$/.exec(path)?.[1];
  if (!loop) return null;
  const sys = `/sys/block/${loop}/loop`;
  try {
    const offset = Number(fs.readFileSync(`${sys}/offset`, 'utf8'));
    const backing = fs.readFileSync(`${sys}/backing_file`, 'utf8').trim();
    return offset === 0 && !backing.endsWith('(deleted)') ? backing : null;
  } catch {
    return null;
  }
}

/** The spans of `path` that can hold data (holes read as zeros): all of it when no one can say. */
function dataSpans(path: string, st: fs.Stats, size: number): Range[] {
  const mapFile = holeMapFile(path, st);
  if (mapFile === null) return [{ offset: 0, length: size }];
  let fd: number | null = null;
  try {
    fd = fs.openSync(mapFile, 'r');
    return dataMap(fd, mapFile, size, 4096) ?? [{ offset: 0, length: size }];
  } catch {
    return [{ offset: 0, length: size }];
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

/**
 * Blank: every byte that can hold data was read and is zero (a file's or a loop
 * device's holes are zeros without reading; up to BLANK_READ_LIMIT of data is read).
 * Otherwise whether its start or end holds data.
 */
async function emptiness(path: string, st: fs.Stats, size: number) {
  const spans = dataSpans(path, st, size);
  const file = await fs.promises.open(path, 'r');
  try {
    if (spans.reduce((n, r) => n + r.length, 0) <= BLANK_READ_LIMIT) {
      let data = false;
      for (const r of spans) if (!data) data = await holdsData(file, r.offset, r.length);
      return { blank: !data, dataSeen: data };
    }
    const data =
      (await holdsData(file, 0, EDGE)) || (await holdsData(file, Math.max(0, size - EDGE), EDGE));
    return { blank: false, dataSeen: data };
  } finally {
    await file.close();
  }
}

/** Nothing found yet; `why`: it could not be looked at, and why. */
function nothingYet(path: string, size: number, why: string | null = null): DriveContents {
  return {
    path,
    size,
    examined: why === null,
    why,
    partitionTable: null,
    partitions: [],
    filesystem: null,
    newFile: false,
    blank: false,
    dataSeen: false,
  };
}

function whyNot(e: unknown, path: string): string {
  const err = e as NodeJS.ErrnoException & { stderr?: string };
  if (err.code === 'ENOENT' && err.path === undefined) return 'blkid is not installed';
  if (err.code === 'EACCES' || /permission denied/i.test(err.stderr ?? err.message)) {
    return `DriveTwin may not read ${path} without administrator rights`;
  }
  return (err.stderr || err.message).trim().split('\n')[0];
}

/** What is on `path` (a block device or an image file, which may not exist yet). */
export async function driveContents(
  path: string,
  size: number,
  opts: { run?: Run; platform?: NodeJS.Platform } = {},
): Promise<DriveContents> {
  const run = opts.run ?? runProgram;
  const st = fs.statSync(path, { throwIfNoEntry: false });
  if (!st || (st.isFile() && st.size === 0)) {
    return { ...nothingYet(path, 0), newFile: !st, blank: true };
  }
  if ((opts.platform ?? process.platform) !== 'linux') {
    return nothingYet(path, size, 'DriveTwin can only look inside drives on Linux so far');
  }
  try {
    const whole = await probe(run, path);
    const contents = nothingYet(path, size);
    if (whole.PTTYPE) {
      contents.partitionTable = whole.PTTYPE;
      const table = parseSfdiskJson(await run('sfdisk', ['--json', path]));
      for (const p of table.partitions) {
        const found = await probe(run, path, p);
        contents.partitions.push({
          ...p,
          fsType: found.TYPE ?? null,
          label: found.LABEL ?? null,
        });
      }
      return contents;
    }
    if (whole.TYPE) {
      contents.filesystem = { type: whole.TYPE, label: whole.LABEL ?? null };
      return contents;
    }
    return { ...contents, ...(await emptiness(path, st, size)) };
  } catch (e) {
    return nothingYet(path, size, whyNot(e, path));
  }
}
