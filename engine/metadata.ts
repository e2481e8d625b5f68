// The job database: jobs, their destinations, the hydrated bitmap (in chunks),
// unreadable extents and errors. One module owns the schema and its version rule.

import fs from 'node:fs';
import path from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { type Range, mergeRanges } from './geometry';
import { RegionMap } from './region-map';
import type { Identity } from './identity';

export const SCHEMA_MAJOR = 1;
export const SCHEMA_MINOR = 0;
/** PRAGMA application_id: "DTwn", so another program's SQLite file is told apart. */
const APPLICATION_ID = 0x4454776e;

export class MetadataError extends Error {}

export type JobState = 'running' | 'interrupted' | 'done' | 'failed';
export type Mode = 'rw' | 'ro' | 'fail';

export interface JobOptions {
  threshold: number;
  batch: number;
  throttle: number;
  maxRate: number;
  sparse: boolean | null;
  ignoreErrors: boolean;
  sequential: boolean;
  verify: boolean;
  /** Copy only what an ext2/3/4 or FAT32 file system uses. */
  usedOnly: boolean;
  /** With usedOnly: write zeros over free space on drives (images get holes anyway). */
  zeroFree: boolean;
}

export interface DestinationRecord {
  index: number;
  path: string;
  size: number;
  identity: Identity;
  failed: string | null;
}

export interface JobRecord {
  id: number;
  source: string;
  sourceSize: number;
  sourceIdentity: Identity;
  regionSize: number;
  regionsTotal: number;
  regionsHydrated: number;
  unreadableBytes: number;
  options: JobOptions;
  state: JobState;
  mode: Mode;
  pid: number | null;
  error: string | null;
  statusLine: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  destinations: DestinationRecord[];
}

export interface CommitDelta {
  chunks: Array<{ index: number; bytes: Buffer }>;
  regionsHydrated: number;
  unreadable: Range[];
  unreadableBytes: number;
  statusLine: string;
}

const SCHEMA = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL,
  source_size INTEGER NOT NULL,
  source_identity TEXT NOT NULL,
  region_size INTEGER NOT NULL,
  regions_total INTEGER NOT NULL,
  regions_hydrated INTEGER NOT NULL DEFAULT 0,
  unreadable_bytes INTEGER NOT NULL DEFAULT 0,
  options TEXT NOT NULL,
  state TEXT NOT NULL,
  mode TEXT NOT NULL DEFAULT 'rw',
  pid INTEGER,
  error TEXT,
  status_line TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  finished_at TEXT
);
CREATE TABLE destinations (
  job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  path TEXT NOT NULL,
  size INTEGER NOT NULL,
  identity TEXT NOT NULL,
  failed TEXT,
  PRIMARY KEY (job, idx)
);
CREATE TABLE bitmap (
  job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  chunk INTEGER NOT NULL,
  bits BLOB NOT NULL,
  PRIMARY KEY (job, chunk)
);
CREATE TABLE unreadable (
  job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL
);
CREATE INDEX unreadable_job ON unreadable(job, offset);
CREATE TABLE errors (
  id INTEGER PRIMARY KEY,
  job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  at TEXT NOT NULL,
  device TEXT,
  message TEXT NOT NULL
);
`;

/** Where the database lives unless --db or DRIVETWIN_DB says otherwise. */
export function defaultDatabasePath(env = process.env, platform = process.platform): string {
  const home = env.HOME ?? env.USERPROFILE ?? '.';
  if (platform === 'win32') {
    const { join } = path.win32;
    return join(env.APPDATA ?? join(home, 'AppData', 'Roaming'), 'DriveTwin', 'jobs.db');
  }
  if (platform === 'darwin') {
    return path.join(home, 'Library', 'Application Support', 'DriveTwin', 'jobs.db');
  }
  const data = env.XDG_DATA_HOME || path.join(home, '.local', 'share');
  return path.join(data, 'drivetwin', 'jobs.db');
}

/** The version rule: same major loads, a newer minor is tolerated, another major is refused. */
export function versionProblem(major: number, minor: number): string | null {
  if (major === SCHEMA_MAJOR) return null;
  const which = major > SCHEMA_MAJOR ? 'a newer' : 'an older';
  return (
    `the job database has schema ${major}.${minor}, from ${which} DriveTwin; ` +
    `this one reads ${SCHEMA_MAJOR}.x (use --db to choose another database)`
  );
}

const now = (): string => new Date().toISOString();

interface JobRow {
  id: number;
  source: string;
  source_size: number;
  source_identity: string;
  region_size: number;
  regions_total: number;
  regions_hydrated: number;
  unreadable_bytes: number;
  options: string;
  state: JobState;
  mode: Mode;
  pid: number | null;
  error: string | null;
  status_line: string | null;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

export class Metadata {
  private constructor(readonly db: BetterSqlite3.Database) {}

  static open(file: string): Metadata {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    // Loaded here, not at the top: commands that never touch the database start faster.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const Database = require('better-sqlite3') as typeof BetterSqlite3;
    let db: BetterSqlite3.Database;
    try {
      db = new Database(file);
      db.pragma('busy_timeout = 5000');
    } catch (e) {
      throw new MetadataError(`${file} is not a DriveTwin job database: ${(e as Error).message}`);
    }
    try {
      // Checked before anything is written, so another program's file is left as it was.
      Metadata.migrate(db, file);
      db.pragma('journal_mode = WAL');
      db.pragma('foreign_keys = ON');
    } catch (e) {
      db.close();
      throw e instanceof MetadataError ? e : new MetadataError((e as Error).message);
    }
    return new Metadata(db);
  }

  private static migrate(db: BetterSqlite3.Database, file: string): void {
    let appId: number;
    try {
      appId = db.pragma('application_id', { simple: true }) as number;
    } catch (e) {
      throw new MetadataError(`${file} is not a DriveTwin job database: ${(e as Error).message}`);
    }
    const tables = db.prepare(`SELECT count(*) AS n FROM sqlite_master`).get() as { n: number };
    if (appId === 0 && tables.n === 0) {
      db.transaction(() => {
        db.exec(SCHEMA);
        db.pragma(`application_id = ${APPLICATION_ID}`);
        const put = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
        put.run('schema_major', String(SCHEMA_MAJOR));
        put.run('schema_minor', String(SCHEMA_MINOR));
      })();
      return;
    }
    if (appId !== APPLICATION_ID) {
      throw new MetadataError(
        `${file} is not a DriveTwin job database (it belongs to another program)`,
      );
    }
    const get = (key: string): number =>
      Number(
        (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string }).value,
      );
    const problem = versionProblem(get('schema_major'), get('schema_minor'));
    if (problem) throw new MetadataError(problem);
  }

  close(): void {
    this.db.close();
  }

  createJob(job: {
    source: string;
    sourceSize: number;
    sourceIdentity: Identity;
    regionSize: number;
    regionsTotal: number;
    options: JobOptions;
    destinations: Array<{ path: string; size: number; identity: Identity }>;
  }): number {
    return this.db.transaction(() => {
      const t = now();
      const { lastInsertRowid } = this.db
        .prepare(
          `INSERT INTO jobs (source, source_size, source_identity, region_size, regions_total,
             options, state, pid, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)`,
        )
        .run(
          job.source,
          job.sourceSize,
          JSON.stringify(job.sourceIdentity),
          job.regionSize,
          job.regionsTotal,
          JSON.stringify(job.options),
          process.pid,
          t,
          t,
        );
      const id = Number(lastInsertRowid);
      const put = this.db.prepare(
        'INSERT INTO destinations (job, idx, path, size, identity) VALUES (?, ?, ?, ?, ?)',
      );
      job.destinations.forEach((d, i) =>
        put.run(id, i, d.path, d.size, JSON.stringify(d.identity)),
      );
      return id;
    })();
  }

  getJob(id: number): JobRecord | null {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return row ? this.toRecord(row) : null;
  }

  listJobs(): JobRecord[] {
    const rows = this.db.prepare('SELECT * FROM jobs ORDER BY id').all() as JobRow[];
    return rows.map((r) => this.toRecord(r));
  }

  /** The newest unfinished job copying exactly this source to exactly these destinations. */
  findUnfinished(source: string, destinations: string[]): JobRecord | null {
    return this.findJob(source, destinations, `state != 'done'`);
  }

  /** The newest finished one: cloning it again brings the destinations up to date. */
  findFinished(source: string, destinations: string[]): JobRecord | null {
    return this.findJob(source, destinations, `state = 'done'`);
  }

  private findJob(source: string, destinations: string[], stateTest: string): JobRecord | null {
    const key = (paths: string[]): string => [...paths].sort().join('\n');
    const rows = this.db
      .prepare(`SELECT * FROM jobs WHERE source = ? AND ${stateTest} ORDER BY id DESC`)
      .all(source) as JobRow[];
    const match = rows
      .map((row) => this.toRecord(row))
      .find((job) => key(job.destinations.map((d) => d.path)) === key(destinations));
    return match ?? null;
  }

  /** A streamed source's size, learnt when its end was read. */
  setSourceSize(jobId: number, size: number, regionsTotal: number): void {
    this.db
      .prepare('UPDATE jobs SET source_size = ?, regions_total = ? WHERE id = ?')
      .run(size, regionsTotal, jobId);
  }

  /** A delta re-clone starts from a source whose content changed. */
  setSourceIdentity(jobId: number, identity: Identity): void {
    this.db
      .prepare('UPDATE jobs SET source_identity = ? WHERE id = ?')
      .run(JSON.stringify(identity), jobId);
  }

  loadBitmap(job: JobRecord): RegionMap {
    // 0: a streamed source whose end has not been read yet.
    const map = new RegionMap(job.regionsTotal || Infinity);
    const rows = this.db
      .prepare('SELECT chunk AS index_, bits FROM bitmap WHERE job = ?')
      .all(job.id) as Array<{ index_: number; bits: Buffer }>;
    map.load(rows.map((r) => ({ index: r.index_, bytes: r.bits })));
    return map;
  }

  /** Joined: extents found by neighbouring batches may touch. */
  loadUnreadable(jobId: number): Range[] {
    return mergeRanges(
      this.db
        .prepare('SELECT offset, length FROM unreadable WHERE job = ? ORDER BY offset')
        .all(jobId) as Range[],
    );
  }

  /** One transaction: the bitmap delta and the counters move together or not at all. */
  commit(jobId: number, delta: CommitDelta): void {
    this.db.transaction(() => {
      const put = this.db.prepare(
        'INSERT INTO bitmap (job, chunk, bits) VALUES (?, ?, ?) ON CONFLICT (job, chunk) DO UPDATE SET bits = excluded.bits',
      );
      for (const c of delta.chunks) put.run(jobId, c.index, c.bytes);
      const bad = this.db.prepare('INSERT INTO unreadable (job, offset, length) VALUES (?, ?, ?)');
      for (const r of delta.unreadable) bad.run(jobId, r.offset, r.length);
      this.db
        .prepare(
          `UPDATE jobs SET regions_hydrated = ?, unreadable_bytes = unreadable_bytes + ?,
             status_line = ?, updated_at = ? WHERE id = ?`,
        )
        .run(delta.regionsHydrated, delta.unreadableBytes, delta.statusLine, now(), jobId);
    })();
  }

  setState(
    jobId: number,
    state: JobState,
    extra: { error?: string | null; mode?: Mode; options?: JobOptions } = {},
  ): void {
    const finished = state === 'done' || state === 'failed' ? now() : null;
    this.db
      .prepare(
        `UPDATE jobs SET state = ?, pid = ?, error = coalesce(?, error), mode = coalesce(?, mode),
           options = coalesce(?, options), updated_at = ?, finished_at = ? WHERE id = ?`,
      )
      .run(
        state,
        state === 'running' ? process.pid : null,
        extra.error ?? null,
        extra.mode ?? null,
        extra.options ? JSON.stringify(extra.options) : null,
        now(),
        finished,
        jobId,
      );
  }

  failDestination(jobId: number, index: number, reason: string): void {
    this.db
      .prepare('UPDATE destinations SET failed = ? WHERE job = ? AND idx = ?')
      .run(reason, jobId, index);
  }

  recordError(jobId: number, device: string | null, message: string): void {
    this.db
      .prepare('INSERT INTO errors (job, at, device, message) VALUES (?, ?, ?, ?)')
      .run(jobId, now(), device, message);
  }

  forget(jobId: number): boolean {
    return this.db.prepare('DELETE FROM jobs WHERE id = ?').run(jobId).changes > 0;
  }

  private toRecord(row: JobRow): JobRecord {
    const destinations = (
      this.db
        .prepare('SELECT * FROM destinations WHERE job = ? ORDER BY idx')
        .all(row.id) as Array<{
        idx: number;
        path: string;
        size: number;
        identity: string;
        failed: string | null;
      }>
    ).map((d) => ({
      index: d.idx,
      path: d.path,
      size: d.size,
      identity: JSON.parse(d.identity) as Identity,
      failed: d.failed,
    }));
    // A job marked running whose process is gone was killed: it is interrupted.
    const state = row.state === 'running' && !processAlive(row.pid) ? 'interrupted' : row.state;
    return {
      id: row.id,
      source: row.source,
      sourceSize: row.source_size,
      sourceIdentity: JSON.parse(row.source_identity) as Identity,
      regionSize: row.region_size,
      regionsTotal: row.regions_total,
      regionsHydrated: row.regions_hydrated,
      unreadableBytes: row.unreadable_bytes,
      options: JSON.parse(row.options) as JobOptions,
      state,
      mode: row.mode,
      pid: row.pid,
      error: row.error,
      statusLine: row.status_line,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      finishedAt: row.finished_at,
      destinations,
    };
  }
}

function processAlive(pid: number | null): boolean {
  if (pid === null) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
