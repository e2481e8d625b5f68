// A job as the process running it holds it — its record when the run began, with what
// the run changed: the bitmap, the unreadable extents, the destinations that failed —
// written into a new job database when the one on disk was found damaged, so that the
// job can be resumed from what is really on its destinations.

import type BetterSqlite3 from 'better-sqlite3';
import type { Range } from '../geometry';
import type { JobOptions } from '../options';
import { CHUNK_BYTES, type RegionMap } from './region-map';
import type { JobRecord, JobState } from './job-record';

export interface JobCopy {
  /** As read when the run began. */
  record: JobRecord;
  /** 0 while a stream's size is unknown. */
  sourceSize: number;
  regionsTotal: number;
  state: JobState;
  error: string | null;
  options: JobOptions;
  /** Committed: on every destination still in the job, flushed. */
  map: RegionMap;
  unreadable: Range[];
  /** Destinations that left the job in this run, and the bitmap they held then. */
  failed: Array<{ index: number; reason: string; held: Uint8Array }>;
  copySeconds: number;
}

/** Inserts `job` with its id into the (new) database `db`; run inside a transaction. */
export function writeJobCopy(db: BetterSqlite3.Database, job: JobCopy): void {
  const r = job.record;
  const now = new Date().toISOString();
  db.prepare(
    `INSERT INTO jobs (id, source, source_size, source_identity, region_size, regions_total,
       regions_hydrated, unreadable_bytes, options, state, mode, pid, error, status_line,
       created_at, updated_at, finished_at, verified, copy_seconds, verify_seconds)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'rw', NULL, ?, NULL, ?, ?, ?, NULL, ?, ?)`,
  ).run(
    r.id,
    r.source,
    job.sourceSize,
    JSON.stringify(r.sourceIdentity),
    r.regionSize,
    job.regionsTotal,
    job.map.count,
    job.unreadable.reduce((n, u) => n + u.length, 0),
    JSON.stringify(job.options),
    job.state,
    job.error,
    r.createdAt,
    now,
    job.state === 'done' || job.state === 'failed' ? now : null,
    r.copySeconds + job.copySeconds,
    r.verifySeconds,
  );
  const destination = db.prepare(
    'INSERT INTO destinations (job, idx, path, size, identity, failed, dropped) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  for (const d of r.destinations) {
    const failed = job.failed.find((f) => f.index === d.index)?.reason ?? d.failed;
    destination.run(
      r.id,
      d.index,
      d.path,
      d.size,
      JSON.stringify(d.identity),
      failed,
      d.dropped ? 1 : 0,
    );
  }
  const put = (table: string, extra: number[], bits: Uint8Array): void => {
    const columns = table === 'bitmap' ? 'job, chunk, bits' : 'job, idx, chunk, bits';
    const marks = table === 'bitmap' ? '?, ?, ?' : '?, ?, ?, ?';
    const insert = db.prepare(`INSERT INTO ${table} (${columns}) VALUES (${marks})`);
    for (let at = 0, chunk = 0; at < bits.length; at += CHUNK_BYTES, chunk++) {
      const bytes = bits.subarray(at, at + CHUNK_BYTES);
      if (bytes.some((b) => b !== 0)) insert.run(r.id, ...extra, chunk, Buffer.from(bytes));
    }
  };
  put('bitmap', [], job.map.bits);
  for (const f of job.failed) put('destination_bitmap', [f.index], f.held);
  const bad = db.prepare('INSERT INTO unreadable (job, offset, length) VALUES (?, ?, ?)');
  for (const u of job.unreadable) bad.run(r.id, u.offset, u.length);
}
