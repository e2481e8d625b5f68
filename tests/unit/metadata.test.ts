import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Identity } from '../../engine/io/identity';
import {
  MetadataError,
  SCHEMA_MAJOR,
  SCHEMA_MINOR,
  defaultDatabasePath,
  versionProblem,
} from '../../engine/store/database';
import { Metadata } from '../../engine/store/metadata';
import type { JobOptions } from '../../engine/options';
import { CHUNK_BYTES, RegionMap } from '../../engine/store/region-map';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-metadata-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let serial = 0;
const dbFile = (): string => path.join(root, `t${++serial}`, 'jobs.db');

const MiB = 1024 * 1024;
const options: JobOptions = {
  threshold: 8,
  batch: 4,
  throttle: 100,
  maxRate: 0,
  sparse: true,
  ignoreErrors: false,
  sequential: false,
  verify: true,
  usedOnly: false,
  zeroFree: false,
  fit: false,
  newIds: false,
};
const sourceIdentity: Identity = {
  kind: 'file',
  size: 100 * MiB,
  logicalBlockSize: 512,
  inode: '2049:12',
  headSha256: 'ab'.repeat(32),
};

function newJob(meta: Metadata, regionsTotal = 100): number {
  return meta.createJob({
    source: '/images/source.img',
    sourceSize: 100 * MiB,
    sourceIdentity,
    regionSize: MiB,
    regionsTotal,
    options,
    destinations: [
      {
        path: '/images/a.img',
        size: 100 * MiB,
        identity: { kind: 'file', size: 100 * MiB, logicalBlockSize: 512 },
      },
      {
        path: '/dev/sdz',
        size: 128 * MiB,
        identity: { kind: 'block', size: 128 * MiB, logicalBlockSize: 4096, serial: 'XYZ' },
      },
    ],
  });
}

const sha = (file: string): string =>
  createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** A pid that no process has right now. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '0']);
  assert.ok(child.pid > 0);
  return child.pid;
}

test('a created job reads back with its source, destinations, options and state', () => {
  const meta = Metadata.open(dbFile());
  try {
    const id = newJob(meta);
    const job = meta.getJob(id);
    assert.ok(job);
    assert.equal(job.id, id);
    assert.equal(job.source, '/images/source.img');
    assert.equal(job.sourceSize, 100 * MiB);
    assert.deepEqual(job.sourceIdentity, sourceIdentity);
    assert.equal(job.regionSize, MiB);
    assert.equal(job.regionsTotal, 100);
    assert.equal(job.regionsHydrated, 0);
    assert.equal(job.unreadableBytes, 0);
    assert.deepEqual(job.options, options);
    assert.equal(job.state, 'running');
    assert.equal(job.mode, 'rw');
    assert.equal(job.pid, process.pid);
    assert.equal(job.finishedAt, null);
    assert.deepEqual(
      job.destinations.map((d) => [d.index, d.path, d.size, d.identity.kind, d.failed]),
      [
        [0, '/images/a.img', 100 * MiB, 'file', null],
        [1, '/dev/sdz', 128 * MiB, 'block', null],
      ],
    );
    assert.equal(job.destinations[1].identity.serial, 'XYZ');
    assert.equal(meta.getJob(id + 1000), null);
    assert.deepEqual(
      meta.listJobs().map((j) => j.id),
      [id],
    );
    assert.equal(meta.findUnfinished('/images/source.img', ['/dev/sdz', '/images/a.img'])?.id, id);
    assert.equal(meta.findUnfinished('/images/source.img', ['/images/a.img']), null);
  } finally {
    meta.close();
  }
});

test('a new database is in WAL mode and carries the schema version', () => {
  const file = dbFile();
  Metadata.open(file).close();
  const db = new Database(file, { readonly: true });
  try {
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    const meta = Object.fromEntries(
      (
        db.prepare('SELECT key, value FROM meta').all() as Array<{ key: string; value: string }>
      ).map((r) => [r.key, r.value]),
    );
    assert.deepEqual(meta, {
      schema_major: String(SCHEMA_MAJOR),
      schema_minor: String(SCHEMA_MINOR),
    });
    assert.notEqual(db.pragma('application_id', { simple: true }), 0);
  } finally {
    db.close();
  }
});

test('a region marked hydrated survives reopening the database', () => {
  const file = dbFile();
  const regionsTotal = CHUNK_BYTES * 8 * 2 + 4321; // three chunks, not a multiple of 8
  let id: number;
  const map = new RegionMap(regionsTotal);
  {
    const meta = Metadata.open(file);
    id = newJob(meta, regionsTotal);
    map.setRange(0, 1000);
    map.set(40_000);
    map.set(regionsTotal - 1);
    meta.commit(id, {
      chunks: map.takeDirtyChunks(),
      regionsHydrated: map.count,
      unreadable: [{ offset: 5 * MiB, length: 4096 }],
      unreadableBytes: 4096,
      statusLine: 'first',
    });
    // A second commit writes only the chunk that changed, over the old row.
    map.setRange(1000, 500);
    const chunks = map.takeDirtyChunks();
    assert.deepEqual(
      chunks.map((c) => c.index),
      [0],
    );
    meta.commit(id, {
      chunks,
      regionsHydrated: map.count,
      unreadable: [],
      unreadableBytes: 0,
      statusLine: 'second',
    });
    meta.close();
  }
  const meta = Metadata.open(file);
  try {
    const job = meta.getJob(id);
    assert.ok(job);
    assert.equal(job.regionsHydrated, 1502);
    assert.equal(job.unreadableBytes, 4096);
    assert.equal(job.statusLine, 'second');
    const restored = meta.loadBitmap(job);
    assert.equal(restored.count, map.count);
    assert.deepEqual(restored.runs(), map.runs());
    assert.deepEqual(Buffer.from(restored.bits), Buffer.from(map.bits));
    assert.deepEqual(meta.loadUnreadable(id), [{ offset: 5 * MiB, length: 4096 }]);
  } finally {
    meta.close();
  }
});

test('a job is running while its lock is held, whatever its pid says, and interrupted once let go of', () => {
  const file = dbFile();
  const meta = Metadata.open(file);
  const other = Metadata.open(file);
  try {
    const id = newJob(meta);
    assert.equal(meta.getJob(id)?.state, 'running');
    // A dead pid does not end it: the lock says it runs, to this process and to another.
    meta.db.prepare('UPDATE jobs SET pid = ? WHERE id = ?').run(deadPid(), id);
    assert.equal(meta.getJob(id)?.state, 'running');
    assert.equal(other.getJob(id)?.state, 'running');
    assert.throws(() => other.claimJob(id, options), /job 1 is already running/);
    // Let go of, with a live process other than ours recorded: interrupted all the same.
    meta.releaseJob(id);
    meta.db.prepare('UPDATE jobs SET pid = ? WHERE id = ?').run(process.ppid, id);
    assert.equal(meta.getJob(id)?.state, 'interrupted');
    assert.equal(other.listJobs()[0].state, 'interrupted');
    // Still found for resuming, and taken by whoever resumes it.
    assert.equal(meta.findUnfinished('/images/source.img', ['/images/a.img', '/dev/sdz'])?.id, id);
    other.claimJob(id, options);
    assert.equal(meta.getJob(id)?.state, 'running');
    assert.throws(() => meta.claimJob(id, options), /already running \(process \d+\)/);
  } finally {
    other.close();
    meta.close();
  }
});

test('finished jobs keep their state whatever their pid', () => {
  const meta = Metadata.open(dbFile());
  try {
    const id = newJob(meta);
    meta.setState(id, 'done');
    const job = meta.getJob(id);
    assert.equal(job?.state, 'done');
    assert.equal(job?.pid, null);
    assert.ok(job?.finishedAt);
    assert.equal(meta.findUnfinished('/images/source.img', ['/images/a.img', '/dev/sdz']), null);
  } finally {
    meta.close();
  }
});

test('forgetting a job removes its bitmap, destinations, unreadable extents and errors', () => {
  const meta = Metadata.open(dbFile());
  try {
    const keep = newJob(meta);
    const id = newJob(meta, CHUNK_BYTES * 8 + 5);
    const map = new RegionMap(CHUNK_BYTES * 8 + 5);
    map.set(0);
    map.set(CHUNK_BYTES * 8 + 1);
    meta.commit(id, {
      chunks: map.takeDirtyChunks(),
      regionsHydrated: 2,
      unreadable: [{ offset: 0, length: 512 }],
      unreadableBytes: 512,
      statusLine: 's',
    });
    meta.commit(keep, {
      chunks: new RegionMap(100).takeDirtyChunks(),
      regionsHydrated: 0,
      unreadable: [],
      unreadableBytes: 0,
      statusLine: 's',
    });
    meta.recordError(id, '/dev/sdz', 'EIO');
    const rows = (table: string, job: number): number =>
      (
        meta.db.prepare(`SELECT count(*) AS n FROM ${table} WHERE job = ?`).get(job) as {
          n: number;
        }
      ).n;
    assert.equal(rows('bitmap', id), 2);
    assert.equal(rows('destinations', id), 2);
    assert.equal(rows('unreadable', id), 1);
    assert.equal(rows('errors', id), 1);

    assert.equal(meta.forget(id), true);
    assert.equal(meta.getJob(id), null);
    for (const table of ['bitmap', 'destinations', 'unreadable', 'errors'])
      assert.equal(rows(table, id), 0, table);
    assert.equal(rows('destinations', keep), 2, 'the other job keeps its rows');
    assert.equal(meta.forget(id), false);
  } finally {
    meta.close();
  }
});

test('the version rule: same major loads, a newer minor is tolerated, another major is refused', () => {
  assert.equal(versionProblem(SCHEMA_MAJOR, SCHEMA_MINOR), null);
  assert.equal(versionProblem(SCHEMA_MAJOR, SCHEMA_MINOR + 7), null);
  const newer = versionProblem(SCHEMA_MAJOR + 1, 0);
  assert.equal(
    newer,
    `the job database has schema ${SCHEMA_MAJOR + 1}.0, from a newer DriveTwin; this one reads ${SCHEMA_MAJOR}.x (use --db to choose another database)`,
  );
  assert.match(
    versionProblem(SCHEMA_MAJOR - 1, 3) ?? '',
    new RegExp(`schema ${SCHEMA_MAJOR - 1}\\.3, from an older DriveTwin`),
  );
});

/** A database of ours, with its meta rewritten. */
function ourDatabaseWith(major: string, minor: string): string {
  const file = dbFile();
  Metadata.open(file).close();
  const db = new Database(file);
  db.prepare(`UPDATE meta SET value = ? WHERE key = 'schema_major'`).run(major);
  db.prepare(`UPDATE meta SET value = ? WHERE key = 'schema_minor'`).run(minor);
  db.close();
  return file;
}

test('a database with a newer minor version opens', () => {
  const file = ourDatabaseWith(String(SCHEMA_MAJOR), String(SCHEMA_MINOR + 3));
  const meta = Metadata.open(file);
  try {
    newJob(meta);
    assert.equal(meta.listJobs().length, 1);
  } finally {
    meta.close();
  }
});

test('a database of schema major 2 is refused with the version message', () => {
  const file = ourDatabaseWith('2', '0');
  assert.throws(
    () => Metadata.open(file),
    (e: unknown) =>
      e instanceof MetadataError &&
      /schema 2\.0, from a newer DriveTwin; this one reads 1\.x/.test(e.message),
  );
});

test("another program's SQLite database is refused as not a DriveTwin database", () => {
  const file = path.join(root, 'other-program.sqlite');
  const db = new Database(file);
  db.exec(
    `CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES ('hello');`,
  );
  assert.equal(db.pragma('application_id', { simple: true }), 0);
  db.close();
  assert.throws(
    () => Metadata.open(file),
    (e: unknown) =>
      e instanceof MetadataError && e.message.includes(`${file} is not a DriveTwin job database`),
  );
});

test("refusing another program's SQLite database leaves its file unchanged", () => {
  const file = path.join(root, 'other-program-2.sqlite');
  const db = new Database(file);
  db.exec(
    `CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES ('hello');`,
  );
  db.close();
  const before = sha(file);
  assert.throws(() => Metadata.open(file), MetadataError);
  const header = fs.readFileSync(file).subarray(18, 20);
  assert.equal(
    sha(file),
    before,
    `the file changed (header bytes 18-19 now ${header[0]},${header[1]}: 2,2 means WAL)`,
  );
  assert.equal(fs.existsSync(`${file}-wal`), false, 'a -wal file was left beside it');
});

test('a file that is not SQLite at all is refused and left unchanged', () => {
  const file = path.join(root, 'not-sqlite.db');
  fs.writeFileSync(file, 'this is a text file, not a database\n'.repeat(200));
  const before = sha(file);
  assert.throws(
    () => Metadata.open(file),
    (e: unknown) =>
      e instanceof MetadataError && e.message.includes(`${file} is not a DriveTwin job database`),
  );
  assert.equal(sha(file), before);
});

test('the database lives in the per-OS user data directory', () => {
  assert.equal(
    defaultDatabasePath({ HOME: '/home/ann', XDG_DATA_HOME: '/data/ann' }, 'linux'),
    '/data/ann/drivetwin/jobs.db',
  );
  assert.equal(
    defaultDatabasePath({ HOME: '/home/ann' }, 'linux'),
    '/home/ann/.local/share/drivetwin/jobs.db',
  );
  assert.equal(
    defaultDatabasePath({ HOME: '/home/ann', XDG_DATA_HOME: '' }, 'linux'),
    '/home/ann/.local/share/drivetwin/jobs.db',
  );
  assert.equal(
    defaultDatabasePath({ HOME: '/Users/ann' }, 'darwin'),
    '/Users/ann/Library/Application Support/DriveTwin/jobs.db',
  );
  const appData = 'C:\\Users\\ann\\AppData\\Roaming';
  assert.equal(
    defaultDatabasePath({ USERPROFILE: 'C:\\Users\\ann', APPDATA: appData }, 'win32'),
    'C:\\Users\\ann\\AppData\\Roaming\\DriveTwin\\jobs.db',
  );
  assert.equal(
    defaultDatabasePath({ USERPROFILE: 'C:\\Users\\ann' }, 'win32'),
    path.win32.join('C:\\Users\\ann', 'AppData', 'Roaming', 'DriveTwin', 'jobs.db'),
  );
});

test('regions a client wrote through the served disk survive reopening; forgetting the job removes them', () => {
  const file = dbFile();
  const regionsTotal = CHUNK_BYTES * 8 + 77; // two chunks
  let id: number;
  {
    const meta = Metadata.open(file);
    id = newJob(meta, regionsTotal);
    const written = meta.loadWritten(id, regionsTotal);
    assert.equal(written.count, 0);
    written.set(3);
    written.set(regionsTotal - 1);
    meta.markWritten(id, written.takeDirtyChunks());
    meta.close();
  }
  const meta = Metadata.open(file);
  try {
    const again = meta.loadWritten(id, regionsTotal);
    assert.deepEqual(again.runs(), [
      { first: 3, count: 1 },
      { first: regionsTotal - 1, count: 1 },
    ]);
    meta.forget(id);
    assert.equal(meta.loadWritten(id, regionsTotal).count, 0);
  } finally {
    meta.close();
  }
});

test('a 1.1 database is brought to the current minor when opened (the regions clients wrote, why a job is unresumable), its jobs kept', () => {
  const file = dbFile();
  let id: number;
  {
    const meta = Metadata.open(file);
    id = newJob(meta);
    meta.close();
  }
  // As DriveTwin 1.1 left it: no table of written regions, no unresumable column.
  const db = new Database(file);
  db.exec('DROP TABLE written');
  db.exec('ALTER TABLE jobs DROP COLUMN unresumable');
  db.prepare(`UPDATE meta SET value = '1' WHERE key = 'schema_minor'`).run();
  db.close();
  const meta = Metadata.open(file);
  try {
    assert.equal(meta.getJob(id)?.source, '/images/source.img');
    const written = meta.loadWritten(id, 100);
    written.set(7);
    meta.markWritten(id, written.takeDirtyChunks());
    assert.ok(meta.loadWritten(id, 100).has(7));
    const minor = meta.db.prepare(`SELECT value FROM meta WHERE key = 'schema_minor'`).get() as {
      value: string;
    };
    assert.equal(minor.value, String(SCHEMA_MINOR));
    assert.equal(SCHEMA_MINOR, 3);
    assert.equal(meta.getJob(id)?.unresumable, null);
  } finally {
    meta.close();
  }
});
