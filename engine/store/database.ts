// The job database as a file: where it lives, how it is told apart from another
// program's SQLite file (the application id), its schema, the migrations (1.0 → 1.1 →
// 1.2 → 1.3) and the version rule, the errors met opening it, and the build of its driver
// that this runtime can load. The Metadata class holds the statements over it.

import fs from 'node:fs';
import path from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';

export const SCHEMA_MAJOR = 1;
export const SCHEMA_MINOR = 3;
/** PRAGMA application_id: "DTwn", so another program's SQLite file is told apart. */
const APPLICATION_ID = 0x4454776e;

export class MetadataError extends Error {}

const SCHEMA_1_0 = `
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

/** 1.1: verify results and times; a failed destination keeps the bitmap it held when it failed. */
const MIGRATE_1_1 = `
ALTER TABLE jobs ADD COLUMN verified INTEGER;
ALTER TABLE jobs ADD COLUMN copy_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN verify_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE destinations ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
CREATE TABLE destination_bitmap (
  job INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  chunk INTEGER NOT NULL,
  bits BLOB NOT NULL,
  PRIMARY KEY (job, idx, chunk),
  FOREIGN KEY (job, idx) REFERENCES destinations(job, idx) ON DELETE CASCADE
);
`;

/**
 * 1.2: the regions a client wrote through the served destination (drivetwin … --serve),
 * recorded before the write: a verify leaves them out. An older DriveTwin ignores it.
 */
const MIGRATE_1_2 = `
CREATE TABLE written (
  job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  chunk INTEGER NOT NULL,
  bits BLOB NOT NULL,
  PRIMARY KEY (job, chunk)
);
`;

/** 1.3: why a job can't be resumed (its source is damaged, its image is bigger than a drive). */
const MIGRATE_1_3 = `
ALTER TABLE jobs ADD COLUMN unresumable TEXT;
`;

/** Each minor version's migration, applied in order to a database of an older minor. */
const MIGRATIONS: Array<[minor: number, sql: string]> = [
  [1, MIGRATE_1_1],
  [2, MIGRATE_1_2],
  [3, MIGRATE_1_3],
];

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

/** The one rule for which database to use: a --db flag, else $DRIVETWIN_DB, else the default. */
export function databasePath(flag?: string, env = process.env): string {
  return flag ?? env.DRIVETWIN_DB ?? defaultDatabasePath(env);
}

// ---------------------------------------------------------------------------
// The driver's binding, per runtime
//
// better-sqlite3 is the one native module not built on Node-API: its binding loads only
// in the runtime it was compiled for (NODE_MODULE_VERSION 115 for Node 20, 150 for
// Electron 45). `npm install` builds it for Node, which the command line, `npm run web`
// and the tests run on. The app's engine runs on Electron (its utility process, or the
// binary in Node mode when elevated): in a checkout it loads the build that
// `npm run rebuild:electron` made beside node_modules, never in place of Node's; in a
// package, electron-builder rebuilt the package's own copy (scripts/dist.js).

/** Where `npm run rebuild:electron` puts better-sqlite3 built for this checkout's Electron. */
export const ELECTRON_SQLITE_BUILD = path.join('electron-native', 'better_sqlite3.node');

/** The folder holding dist/ and package.json: a checkout, or app.asar in a package. */
const APP_ROOT = path.join(__dirname, '..', '..', '..');

/** better-sqlite3's own build, where npm (or electron-builder, in a package) compiled it. */
function ownSqliteBuild(): string {
  const pkg = require.resolve('better-sqlite3/package.json');
  return path.join(path.dirname(pkg), 'build', 'Release', 'better_sqlite3.node');
}

/** The one rule for which better-sqlite3 binding this runtime loads. */
export function sqliteBindingPath(
  versions: NodeJS.ProcessVersions = process.versions,
  root = APP_ROOT,
): string {
  if (versions.electron) {
    const electronBuild = path.join(root, ELECTRON_SQLITE_BUILD);
    if (fs.existsSync(electronBuild)) return electronBuild;
  }
  return ownSqliteBuild();
}

/** What to say when a binding doesn't load: which runtime wanted what, and the command that fixes it. */
export function bindingProblem(
  file: string,
  error: Error,
  versions: NodeJS.ProcessVersions = process.versions,
): string {
  const runtime = versions.electron ? `Electron ${versions.electron}` : `Node ${versions.node}`;
  const fix = versions.electron ? 'run npm run rebuild:electron' : 'run npm rebuild better-sqlite3';
  const abi = /NODE_MODULE_VERSION (\d+)\.[^]*?requires\s+NODE_MODULE_VERSION (\d+)/.exec(
    error.message,
  );
  if (abi) {
    return (
      `the job database's driver (better-sqlite3, ${file}) was built for another runtime ` +
      `(NODE_MODULE_VERSION ${abi[1]}; ${runtime} needs ${abi[2]}): ${fix}`
    );
  }
  if (!fs.existsSync(file)) {
    return `the job database's driver is not built (${file} is missing): ${fix}`;
  }
  const first = error.message.split('\n')[0];
  return `can't load the job database's driver (better-sqlite3, ${file}): ${first}: ${fix}`;
}

const loaded = new Set<string>();

/**
 * The binding for `new Database(file, { nativeBinding })`, loaded here first so that a
 * build for another runtime is a plain MetadataError (better-sqlite3's own require of
 * the same path then finds it in Node's module cache).
 */
export function sqliteBinding(
  file = sqliteBindingPath(),
  versions: NodeJS.ProcessVersions = process.versions,
): string {
  if (loaded.has(file)) return file;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require(file);
  } catch (e) {
    throw new MetadataError(bindingProblem(file, e as Error, versions));
  }
  loaded.add(file);
  return file;
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

/**
 * What is wrong with a job database file, from its first 100 bytes (the SQLite header)
 * and its length: null when it is SQLite's, ours, and as long as its header says.
 */
export function headerProblem(header: Buffer, fileSize: number): string | null {
  if (header.length < 100 || header.toString('latin1', 0, 16) !== 'SQLite format 3\0') {
    return `it is no SQLite database any more (${fileSize} bytes, no SQLite header)`;
  }
  if (header.readUInt32BE(68) !== APPLICATION_ID) return 'it is not a DriveTwin job database';
  const pageSize = header.readUInt16BE(16) === 1 ? 65536 : header.readUInt16BE(16);
  const pages = header.readUInt32BE(28);
  // The page count holds while the change counter matches the one it was written with.
  const counted = header.readUInt32BE(92) === header.readUInt32BE(24);
  if (counted && fileSize < pages * pageSize) {
    return `it was cut short (${fileSize} bytes; its header says ${pages * pageSize})`;
  }
  return null;
}

/** SQLite's "another connection holds the lock" (after busy_timeout). */
export function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

export function lockedMessage(file: string): string {
  return (
    `the job database ${file} is locked by another program; nothing was written ` +
    '(close that program, or use --db to choose another database)'
  );
}

/** A new file gets the schema; an existing one is checked (application id, version rule) and brought up to date. */
export function migrate(db: BetterSqlite3.Database, file: string): void {
  let appId: number;
  try {
    appId = db.pragma('application_id', { simple: true }) as number;
  } catch (e) {
    if (isBusy(e)) throw e;
    throw new MetadataError(`${file} is not a DriveTwin job database: ${(e as Error).message}`);
  }
  const empty = (): boolean =>
    (db.prepare(`SELECT count(*) AS n FROM sqlite_master`).get() as { n: number }).n === 0;
  if (appId === 0 && empty()) {
    // Under the write lock, and checked again there: two processes opening a new
    // database at once must not both create its schema.
    const created = db
      .transaction(() => {
        if (!empty()) return false;
        db.exec(SCHEMA_1_0);
        for (const [, sql] of MIGRATIONS) db.exec(sql);
        db.pragma(`application_id = ${APPLICATION_ID}`);
        const put = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
        put.run('schema_major', String(SCHEMA_MAJOR));
        put.run('schema_minor', String(SCHEMA_MINOR));
        return true;
      })
      .immediate();
    if (created) return;
  }
  // Read again: another process may have created it since it was first read.
  if (appId === 0) appId = db.pragma('application_id', { simple: true }) as number;
  if (appId !== APPLICATION_ID) {
    throw new MetadataError(
      `${file} is not a DriveTwin job database (it belongs to another program)`,
    );
  }
  const get = (key: string): number =>
    Number(
      (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string }).value,
    );
  const major = get('schema_major');
  const minor = get('schema_minor');
  const problem = versionProblem(major, minor);
  if (problem) throw new MetadataError(problem);
  if (minor < SCHEMA_MINOR) {
    db.transaction(() => {
      for (const [to, sql] of MIGRATIONS) if (minor < to) db.exec(sql);
      db.prepare(`UPDATE meta SET value = ? WHERE key = 'schema_minor'`).run(String(SCHEMA_MINOR));
    })();
  }
}
