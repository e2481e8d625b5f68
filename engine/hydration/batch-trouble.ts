// Why a batch stops the job, from what the copier found, and whether a resume could
// ever finish it: a source that is gone is not a bad sector (reconnect it and resume); a
// compressed source that is damaged, a download that is not the file its SHA-256 says,
// or an image of unknown size that turns out bigger than a drive it is written to, stops
// the job for good — resuming would meet the same, or keep what is wrong.

import type { CopyResult, Target } from './copier';
import type { Range } from '../geometry';
import { type Device, goneCode, isStream } from '../io/device';
import { formatBytes } from '../size';

export interface Trouble {
  message: string;
  device: string | null;
  at?: Range;
  /** A resume can't finish the job: said so, and recorded. */
  final: boolean;
}

/** What stops the job after a batch, or null when it goes on (a failed destination only leaves it). */
export async function batchTrouble(
  source: Device,
  result: CopyResult,
  targets: ReadonlyArray<Target | null>,
  sizeKnown: boolean,
  job: number,
): Promise<Trouble | null> {
  const failed = result.readError || result.unreadable.length > 0;
  const gone = failed && !isStream(source) && (await goneCode(source, result.readError));
  if (gone) {
    const why = `the source ${source.path} is gone (${gone}): reads that worked before fail now`;
    return {
      message: `${why}. Reconnect it, then resume job ${job}`,
      device: source.path,
      final: false,
    };
  }
  const e = result.readError;
  if (e) {
    const damaged = isStream(source) && e.code === 'ECORRUPT';
    // What was written came from another file than the one expected: a resume would keep it.
    const notExpected = isStream(source) && e.code === 'ECHECKSUM';
    return {
      message: damaged
        ? `${e.message}. The compressed image is damaged there: a resume would stop at the same place; ` +
          'get a whole copy of it, then clone again with --fresh'
        : notExpected
          ? `${e.message}; a resume would keep what was written: clone again with --fresh ` +
            'once the right file (or the right SHA-256) is known'
          : e.message,
      device: source.path,
      at: e,
      final: damaged || notExpected,
    };
  }
  // A stream whose size was a guess, written past a drive's end: it is bigger than the drive.
  const beyond = sizeKnown
    ? undefined
    : result.writeErrors.find((w) => {
        const t = targets.find((x) => x?.device.path === w.path);
        return t?.device.kind === 'block' && w.offset + w.length > t.device.size;
      });
  if (beyond) {
    return {
      message:
        `the image is bigger than ${beyond.path} (at least ${formatBytes(beyond.offset + beyond.length)}); ` +
        'this copy can’t finish on it',
      device: beyond.path,
      final: true,
    };
  }
  return null;
}
