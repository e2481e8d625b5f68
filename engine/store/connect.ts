// A connection to the job database: its driver loaded on first use (the build this
// runtime can load), a file in a read-only place said to be one, and the file checked
// and brought up to date (database.ts) before anything is written.

import fs from 'node:fs';
import path from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { MetadataError, isBusy, lockedMessage, migrate, sqliteBinding } from './database';

/** Loaded on first use, not at the top: commands that never touch the database start faster. */
export function sqlite(): typeof BetterSqlite3 {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('better-sqlite3') as typeof BetterSqlite3;
}

/** Why `file` can't be written where it is (a read-only folder or file), or null. */
function readOnlyProblem(file: string): string | null {
  const folder = path.dirname(file);
  for (const p of fs.existsSync(file) ? [folder, file] : [folder]) {
    try {
      fs.accessSync(p, fs.constants.W_OK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const what = p === file ? 'is read-only' : `is in a read-only folder (${folder})`;
      return `the job database ${file} ${what} (${code}): use --db to choose another database`;
    }
  }
  return null;
}

/** A connection to the job database at `file`, checked and brought up to date. */
export function connect(file: string): BetterSqlite3.Database {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const readOnly = readOnlyProblem(file);
  if (readOnly) throw new MetadataError(readOnly);
  let db: BetterSqlite3.Database;
  try {
    db = new (sqlite())(file, { nativeBinding: sqliteBinding() });
    db.pragma('busy_timeout = 5000');
  } catch (e) {
    throw new MetadataError(`${file} is not a DriveTwin job database: ${(e as Error).message}`);
  }
  try {
    // Checked before anything is written, so another program's file is left as it was.
    migrate(db, file);
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
  } catch (e) {
    db.close();
    if (e instanceof MetadataError) throw e;
    if (isBusy(e)) throw new MetadataError(lockedMessage(file));
    throw new MetadataError((e as Error).message);
  }
  return db;
}
