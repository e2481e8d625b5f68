// The job database checked, not trusted: after a commit, the file is read back as
// another process — a resume — would read it. A file truncated, overwritten or
// replaced under a running job is found here, not when the job is resumed.

import fs from 'node:fs';
import type BetterSqlite3 from 'better-sqlite3';
import { headerProblem, sqliteBinding } from './database';

export interface Committed {
  regionsHydrated: number;
  chunks: Array<{ index: number; bytes: Buffer }>;
}

/**
 * What is wrong with `file` for job `jobId` just after it committed `expected`: its
 * header, its length, the job's row and the bitmap chunks just written, read on a
 * connection of their own. Null when it holds what was committed.
 */
export function readBack(
  file: string,
  Database: typeof BetterSqlite3,
  jobId: number,
  expected: Committed,
): string | null {
  let other: BetterSqlite3.Database | null = null;
  try {
    const fd = fs.openSync(file, 'r');
    const header = Buffer.alloc(100);
    let size: number;
    try {
      fs.readSync(fd, header, 0, 100, 0);
      size = fs.fstatSync(fd).size;
    } finally {
      fs.closeSync(fd);
    }
    const problem = headerProblem(header, size);
    if (problem) return problem;
    other = new Database(file, {
      readonly: true,
      fileMustExist: true,
      nativeBinding: sqliteBinding(),
    });
    const row = other.prepare('SELECT regions_hydrated AS n FROM jobs WHERE id = ?').get(jobId) as
      { n: number } | undefined;
    if (!row) return `job ${jobId} is not in it any more`;
    if (row.n !== expected.regionsHydrated) {
      return `it says ${row.n} regions are hydrated, not the ${expected.regionsHydrated} committed`;
    }
    const chunk = other.prepare('SELECT bits FROM bitmap WHERE job = ? AND chunk = ?');
    for (const c of expected.chunks) {
      const found = chunk.get(jobId, c.index) as { bits: Buffer } | undefined;
      if (!found?.bits.equals(c.bytes)) return 'it lost the bitmap just committed';
    }
    return null;
  } catch (e) {
    return (e as Error).message;
  } finally {
    other?.close();
  }
}

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
