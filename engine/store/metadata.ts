// The job database: jobs, their destinations, the hydrated bitmap (in chunks),
// unreadable extents and errors, each statement prepared once. The file itself — its
// schema, version rule and where it lives — is engine/store/database.ts.

import fs from 'node:fs';
import { inodeOf } from '../io/inode';
import path from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { MetadataError, isBusy, lockedMessage } from './database';
import { connect, sqlite } from './connect';
import { type Committed, readBack, sleepSync } from './read-back';
import { type JobCopy, writeJobCopy } from './job-copy';
import { type Range, mergeRanges } from '../geometry';
import { RegionMap } from './region-map';
import type { Identity } from '../io/identity';
import {
  type DestinationRow,
  type JobRecord,
  type JobRow,
  type JobState,
  type Mode,
  toRecord,
} from './job-record';
import { JobLocks } from './job-lock';
import type { JobOptions } from '../options';

export interface CommitDelta {
  chunks: Array<{ index: number; bytes: Buffer }>;
  regionsHydrated: number;
  unreadable: Range[];
  unreadableBytes: number;
  statusLine: string;
}

const now = (): string => new Date().toISOString();

type Chunk = { index: number; bytes: Buffer };

export class Metadata {
  private readonly statements = new Map<string, BetterSqlite3.Statement>();
  /** dev:ino of the file when opened: a file deleted or replaced under us is noticed. */
  private inode: string | null;
  /** Who runs which job: a lock per job the kernel lets go of, never a pid. */
  private readonly locks: JobLocks;
  /** Why the file was found damaged: nothing more is written to it. */
  private damaged: string | null = null;

  private constructor(
    public db: BetterSqlite3.Database,
    readonly file: string,
  ) {
    this.inode = inodeOf(file);
    this.locks = new JobLocks(file);
  }

  static open(file: string): Metadata {
    const resolved = path.resolve(file);
    return new Metadata(connect(resolved), resolved);
  }

  /** Each statement is prepared once, on first use. */
  private sql(text: string): BetterSqlite3.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  /** A write transaction taken at once, so a lock held elsewhere is met before anything else is done. */
  private write<T>(work: () => T): T {
    try {
      return this.db.transaction(work).immediate();
    } catch (e) {
      if (isBusy(e)) throw new MetadataError(lockedMessage(this.file));
      throw e;
    }
  }

  close(): void {
    this.db.close();
  }

  /** This process is done with job `id` (its session ended): another may take it. */
  releaseJob(id: number): void {
    this.locks.release(id);
  }

  /** False once the file was deleted or replaced: what is committed now reaches no file anyone will open. */
  stillAtPath(): boolean {
    return this.inode !== null && inodeOf(this.file) === this.inode;
  }

  /** Writes everything this connection holds to a new database at its path (after the file was deleted). */
  saveAgain(): void {
    if (fs.existsSync(this.file)) throw new Error(`${this.file} exists again: left as it is`);
    this.db.prepare('VACUUM INTO ?').run(this.file);
  }

  /**
   * After a commit of job `jobId`: the file read back as another process (a resume)
   * would read it — its header, its length, the job's row and the bitmap chunks just
   * committed. Null when it holds what was committed; otherwise why not, and from then
   * on nothing more is written to it (writeAgain makes a new one).
   */
  damageOnDisk(jobId: number, expected: Committed): string | null {
    if (this.damaged) return this.damaged;
    // Asked again after a moment: another process's checkpoint may be under way.
    for (let attempt = 0; ; attempt++) {
      const problem = readBack(this.file, sqlite(), jobId, expected);
      if (problem === null) return null;
      if (attempt === 2) return (this.damaged = problem);
      sleepSync(25);
    }
  }

  /**
   * The file was found damaged: it is kept aside (renamed), and a new database at its
   * path receives `jobs` as this process holds them. Returns where the damaged one went.
   */
  writeAgain(jobs: JobCopy[]): string {
    const aside = `${this.file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    try {
      this.db.close();
    } catch {
      // a damaged file may fail to close cleanly; the connection goes all the same
    }
    for (const suffix of ['', '-wal', '-shm']) {
      if (fs.existsSync(this.file + suffix)) fs.renameSync(this.file + suffix, aside + suffix);
    }
    this.statements.clear();
    this.db = connect(this.file);
    this.inode = inodeOf(this.file);
    this.damaged = null;
    this.db.transaction(() => jobs.forEach((j) => writeJobCopy(this.db, j)))();
    return aside;
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
    return this.write(() => {
      const t = now();
      const { lastInsertRowid } = this.sql(
        `INSERT INTO jobs (source, source_size, source_identity, region_size, regions_total,
           options, state, pid, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)`,
      ).run(
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
      // Held before the row is seen: nobody can take the new job for an interrupted one.
      if (!this.locks.take(id)) throw new MetadataError(`job ${id} is locked by another process`);
      const put = this.sql(
        'INSERT INTO destinations (job, idx, path, size, identity) VALUES (?, ?, ?, ?, ?)',
      );
      job.destinations.forEach((d, i) =>
        put.run(id, i, d.path, d.size, JSON.stringify(d.identity)),
      );
      return id;
    });
  }

  /**
   * Takes job `id` for this process: its lock first (refused while another process or
   * session holds it), then its row, in one transaction.
   */
  claimJob(id: number, options: JobOptions, state: 'running' | 'verifying' = 'running'): void {
    if (!this.locks.take(id)) {
      const row = this.sql('SELECT pid FROM jobs WHERE id = ?').get(id) as
        { pid: number | null } | undefined;
      throw new MetadataError(`job ${id} is already running (process ${row?.pid ?? '?'})`);
    }
    try {
      this.write(() => {
        const found = this.sql('SELECT id FROM jobs WHERE id = ?').get(id);
        if (!found) throw new MetadataError(`there is no job ${id}`);
        this.sql(
          `UPDATE jobs SET state = ?, pid = ?, options = ?, error = NULL, mode = 'rw',
             updated_at = ?, finished_at = NULL WHERE id = ?`,
        ).run(state, process.pid, JSON.stringify(options), now(), id);
      });
    } catch (e) {
      this.locks.release(id);
      throw e;
    }
  }

  getJob(id: number): JobRecord | null {
    const row = this.sql('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return row ? this.record(row) : null;
  }

  listJobs(): JobRecord[] {
    const rows = this.sql('SELECT * FROM jobs ORDER BY id').all() as JobRow[];
    return rows.map((r) => this.record(r));
  }

  /** The newest unfinished job copying exactly this source to exactly these destinations. */
  findUnfinished(source: string, destinations: string[]): JobRecord | null {
    return this.jobsFor(source, destinations).find((j) => j.state !== 'done') ?? null;
  }

  /** The newest finished one: cloning it again brings the destinations up to date. */
  findFinished(source: string, destinations: string[]): JobRecord | null {
    return this.jobsFor(source, destinations).find((j) => j.state === 'done') ?? null;
  }

  /** Every job copying exactly this source to exactly these destinations, newest first. */
  jobsFor(source: string, destinations: string[]): JobRecord[] {
    const key = (paths: string[]): string => [...paths].sort().join('\n');
    const rows = this.sql(`SELECT * FROM jobs WHERE source = ? ORDER BY id DESC`).all(
      source,
    ) as JobRow[];
    return rows
      .map((row) => this.record(row))
      .filter((job) => key(job.destinations.map((d) => d.path)) === key(destinations));
  }

  /** A streamed source's size, learnt when its end was read. */
  setSourceSize(jobId: number, size: number, regionsTotal: number): void {
    if (this.damaged) return;
    this.sql('UPDATE jobs SET source_size = ?, regions_total = ? WHERE id = ?').run(
      size,
      regionsTotal,
      jobId,
    );
  }

  /** A destination image the job emptied first: where nothing was written it reads zeros. */
  markEmptied(jobId: number, index: number): void {
    this.sql(
      `UPDATE destinations SET identity = json_set(identity, '$.emptied', json('true'))
       WHERE job = ? AND idx = ?`,
    ).run(jobId, index);
  }

  /** A destination's seed for new identifiers (--new-ids), chosen once for the job. */
  setIdSeed(jobId: number, index: number, seed: string): void {
    this.sql(
      `UPDATE destinations SET identity = json_set(identity, '$.newIdSeed', ?)
       WHERE job = ? AND idx = ?`,
    ).run(seed, jobId, index);
  }

  /** A delta re-clone starts from a source whose content changed. */
  setSourceIdentity(jobId: number, identity: Identity): void {
    this.sql('UPDATE jobs SET source_identity = ? WHERE id = ?').run(
      JSON.stringify(identity),
      jobId,
    );
  }

  loadBitmap(job: Pick<JobRecord, 'id' | 'regionsTotal'>): RegionMap {
    return this.bitmapOf(job, this.sql('SELECT chunk, bits FROM bitmap WHERE job = ?').all(job.id));
  }

  private bitmapOf(job: Pick<JobRecord, 'regionsTotal'>, rows: unknown[]): RegionMap {
    // 0: a streamed source whose end has not been read yet.
    const map = new RegionMap(job.regionsTotal || Infinity);
    map.load((rows as Array<{ chunk: number; bits: Buffer }>).map(chunkOf));
    return map;
  }

  /** The regions a client wrote through the served destination. */
  loadWritten(jobId: number, regionsTotal: number): RegionMap {
    const rows = this.sql('SELECT chunk, bits FROM written WHERE job = ?').all(jobId);
    return this.bitmapOf({ regionsTotal }, rows);
  }

  /** Regions a client is about to write: recorded (synchronously, durably) before the write. */
  markWritten(jobId: number, chunks: Chunk[]): void {
    this.db.transaction(() => {
      const put = this.sql(
        'INSERT INTO written (job, chunk, bits) VALUES (?, ?, ?) ON CONFLICT (job, chunk) DO UPDATE SET bits = excluded.bits',
      );
      for (const c of chunks) put.run(jobId, c.index, c.bytes);
    })();
  }

  /** The destinations were brought back to the source's content (an update): no region is a client's any more. */
  clearWritten(jobId: number): void {
    this.sql('DELETE FROM written WHERE job = ?').run(jobId);
  }

  /** Joined: extents found by neighbouring batches may touch. */
  loadUnreadable(jobId: number): Range[] {
    return mergeRanges(
      this.sql('SELECT offset, length FROM unreadable WHERE job = ? ORDER BY offset').all(
        jobId,
      ) as Range[],
    );
  }

  /** One transaction: the bitmap delta and the counters move together or not at all. */
  commit(jobId: number, delta: CommitDelta): void {
    if (this.damaged) return;
    this.db.transaction(() => {
      this.putChunks(jobId, delta.chunks);
      const bad = this.sql('INSERT INTO unreadable (job, offset, length) VALUES (?, ?, ?)');
      for (const r of delta.unreadable) bad.run(jobId, r.offset, r.length);
      this.sql(
        `UPDATE jobs SET regions_hydrated = ?, unreadable_bytes = unreadable_bytes + ?,
           status_line = ?, updated_at = ? WHERE id = ?`,
      ).run(delta.regionsHydrated, delta.unreadableBytes, delta.statusLine, now(), jobId);
    })();
  }

  private putChunks(jobId: number, chunks: Chunk[]): void {
    const put = this.sql(
      'INSERT INTO bitmap (job, chunk, bits) VALUES (?, ?, ?) ON CONFLICT (job, chunk) DO UPDATE SET bits = excluded.bits',
    );
    for (const c of chunks) put.run(jobId, c.index, c.bytes);
  }

  setState(
    jobId: number,
    state: JobState,
    extra: {
      error?: string | null;
      mode?: Mode;
      options?: JobOptions;
      copySeconds?: number;
      /** Why a resume can't finish it. */
      unresumable?: string;
    } = {},
  ): void {
    if (this.damaged) return;
    const finished = state === 'done' || state === 'failed' ? now() : null;
    this.sql(
      `UPDATE jobs SET state = ?, pid = ?, error = coalesce(?, error), mode = coalesce(?, mode),
         options = coalesce(?, options), copy_seconds = copy_seconds + ?, updated_at = ?,
         finished_at = ?, unresumable = coalesce(?, unresumable) WHERE id = ?`,
    ).run(
      state,
      state === 'running' || state === 'verifying' ? process.pid : null,
      extra.error ?? null,
      extra.mode ?? null,
      extra.options ? JSON.stringify(extra.options) : null,
      extra.copySeconds ?? 0,
      now(),
      finished,
      extra.unresumable ?? null,
      jobId,
    );
  }

  /** The end of a verify: equal or not (null: it could not compare every destination). */
  setVerified(jobId: number, verified: boolean | null, seconds: number): void {
    if (this.damaged) return;
    this.sql(
      `UPDATE jobs SET verified = ?, verify_seconds = verify_seconds + ?, updated_at = ? WHERE id = ?`,
    ).run(verified === null ? null : Number(verified), seconds, now(), jobId);
  }

  /** A copy is about to change the destinations: any earlier verify result no longer holds. */
  clearVerified(jobId: number): void {
    this.sql('UPDATE jobs SET verified = NULL WHERE id = ?').run(jobId);
  }

  /**
   * A destination left the job: it keeps the bitmap committed while it was in, which is
   * what it surely holds (every commit flushed it), so it can come back later.
   */
  failDestination(jobId: number, index: number, reason: string): void {
    if (this.damaged) return;
    this.db.transaction(() => {
      this.sql('UPDATE destinations SET failed = ? WHERE job = ? AND idx = ?').run(
        reason,
        jobId,
        index,
      );
      this.sql('DELETE FROM destination_bitmap WHERE job = ? AND idx = ?').run(jobId, index);
      this.sql(
        `INSERT INTO destination_bitmap (job, idx, chunk, bits)
         SELECT job, ?, chunk, bits FROM bitmap WHERE job = ?`,
      ).run(index, jobId);
    })();
  }

  /** The user chose to finish without this destination. */
  dropDestination(jobId: number, index: number): void {
    this.db.transaction(() => {
      this.sql(
        `UPDATE destinations SET failed = coalesce(failed, 'dropped by the user'), dropped = 1
         WHERE job = ? AND idx = ?`,
      ).run(jobId, index);
      this.sql('DELETE FROM destination_bitmap WHERE job = ? AND idx = ?').run(jobId, index);
    })();
  }

  /**
   * A failed destination comes back: the job's bitmap becomes what every destination
   * holds, i.e. it loses the regions committed after this one failed. Returns that map.
   */
  restoreDestination(job: JobRecord, index: number): RegionMap {
    return this.db.transaction(() => {
      const map = this.loadBitmap(job);
      const held = this.bitmapOf(
        job,
        this.sql('SELECT chunk, bits FROM destination_bitmap WHERE job = ? AND idx = ?').all(
          job.id,
          index,
        ),
      );
      for (const run of map.runs()) {
        for (let r = run.first; r < run.first + run.count; r++) if (!held.has(r)) map.clear(r);
      }
      this.putChunks(job.id, map.takeDirtyChunks());
      this.sql('UPDATE jobs SET regions_hydrated = ? WHERE id = ?').run(map.count, job.id);
      this.sql('UPDATE destinations SET failed = NULL, dropped = 0 WHERE job = ? AND idx = ?').run(
        job.id,
        index,
      );
      this.sql('DELETE FROM destination_bitmap WHERE job = ? AND idx = ?').run(job.id, index);
      return map;
    })();
  }

  recordError(jobId: number, device: string | null, message: string): void {
    if (this.damaged) return;
    this.sql('INSERT INTO errors (job, at, device, message) VALUES (?, ?, ?, ?)').run(
      jobId,
      now(),
      device,
      message,
    );
  }

  forget(jobId: number): boolean {
    const gone = this.sql('DELETE FROM jobs WHERE id = ?').run(jobId).changes > 0;
    this.locks.forget(jobId);
    return gone;
  }

  private record(row: JobRow): JobRecord {
    const destinations = this.sql('SELECT * FROM destinations WHERE job = ? ORDER BY idx').all(
      row.id,
    ) as DestinationRow[];
    const running = row.state === 'running' || row.state === 'verifying';
    return toRecord(row, destinations, running && this.locks.isHeld(row.id));
  }
}

function chunkOf(row: { chunk: number; bits: Buffer }): Chunk {
  return { index: row.chunk, bytes: row.bits };
}
