// When the job database goes wrong under a running job: deleted, the copy stops and the
// database is written out again from the connection that still holds it; damaged
// (truncated, overwritten), the copy stops and the job is written into a new database
// from what the process holds. Either way the user is told how to go on.

import type { ErrorEvent } from '../events';
import type { JobCopy } from '../store/job-copy';
import type { Metadata } from '../store/metadata';

/** The database file was deleted under the job: written out again from this connection. */
export function saveLostDatabase(meta: Metadata, job: number): ErrorEvent {
  try {
    meta.saveAgain();
    return fatal(
      job,
      `the job database was written again to ${meta.file} from what this process held: resume job ${job} to go on`,
    );
  } catch (e) {
    return cantResume(job, e);
  }
}

/** The database file was found damaged: the job goes into a new one; the damaged one is kept aside. */
export function writeJobAgain(meta: Metadata, copy: JobCopy): ErrorEvent {
  const job = copy.record.id;
  try {
    const aside = meta.writeAgain([copy]);
    return fatal(
      job,
      `the job database was written again to ${meta.file} from what this process held (the damaged one is kept as ${aside}): resume job ${job} to go on`,
    );
  } catch (e) {
    return cantResume(job, e);
  }
}

function cantResume(job: number, e: unknown): ErrorEvent {
  return fatal(
    job,
    `the job database could not be written again (${(e as Error).message}): job ${job} can't be resumed; clone again with --fresh`,
  );
}

function fatal(job: number, message: string): ErrorEvent {
  return { type: 'error', job, fatal: true, message };
}
