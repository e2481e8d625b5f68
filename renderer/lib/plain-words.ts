// Engine errors and metadata mode changes, said so the user knows what happened,
// where, and what to do about it.
import type { JobError, ModeChange } from '../../preload/events';
import { formatBytes } from './format';

export interface Explained {
  /** One line: which drive, what failed. */
  title: string;
  /** Where on the drive, when known. */
  where: string | null;
  /** The cause in words, then the engine's own text. */
  cause: string;
  detail: string;
  /** What the user can do. */
  todo: string;
}

interface Context {
  source: string | null;
  destinations: string[];
  /** A name to show for a path (drive name, or the path itself). */
  label(path: string): string;
  /** The job has ended: what went on then is told in the past. */
  finished?: boolean;
}

const CAUSES: Array<[RegExp, string]> = [
  [
    /\bEIO\b|input\/output error/i,
    'The drive reported an input/output error: a damaged area, or a loose cable.',
  ],
  [/\bENOSPC\b|no space left/i, 'There is no space left where it is being written.'],
  [/\bEROFS\b|read-only/i, 'It is read-only.'],
  [/\bEACCES\b|\bEPERM\b|permission denied|not permitted/i, 'DriveTwin was not allowed to use it.'],
  [
    /\bENOENT\b|\bENODEV\b|\bENXIO\b|no such device|does not exist|disconnected/i,
    'It is gone: unplugged or switched off?',
  ],
  [/\bEBUSY\b|busy/i, 'Something else is using it.'],
  [/\bENOMEM\b|out of memory/i, 'The computer ran out of memory.'],
];

function causeOf(message: string): string {
  return knownCause(message) ?? 'The engine stopped with this error.';
}

/** A system error in words, or null when it is not one of the usual ones. */
export function knownCause(message: string): string | null {
  for (const [pattern, words] of CAUSES) if (pattern.test(message)) return words;
  return null;
}

/**
 * Why a target failed, for its one line: the cause in words and the system's code
 * ("There is no space left where it is being written (ENOSPC)."); else the message.
 */
export function failureWords(message: string): string {
  const cause = knownCause(message);
  const code = /\bE[A-Z]{2,}\b/.exec(message)?.[0];
  return cause ? (code ? `${cause.replace(/\.$/, '')} (${code}).` : cause) : message;
}

function whereOf(e: JobError): string | null {
  if (e.offset === undefined) return null;
  const at = `at ${formatBytes(e.offset)} from the start (byte ${e.offset.toLocaleString('en-US')})`;
  return e.length ? `${at}, ${formatBytes(e.length)}` : at;
}

export function explainError(e: JobError, ctx: Context): Explained {
  const where = whereOf(e);
  const detail = e.message;
  const cause = causeOf(e.message);
  const isSource = e.device !== undefined && e.device === ctx.source;
  const isTarget = e.device !== undefined && ctx.destinations.includes(e.device);
  const name = e.device ? ctx.label(e.device) : null;

  if (isSource && !e.fatal) {
    return {
      title: `Part of the source ${name} could not be read`,
      where,
      cause: 'Those blocks are unreadable; they were written as zeros on every target.',
      detail,
      todo: ctx.finished
        ? 'The copy went on past them. Export the map to see every unreadable area.'
        : 'The copy goes on. Export the map when it is done to see every unreadable area.',
    };
  }
  if (isSource) {
    return {
      title: `Reading the source ${name} failed`,
      where,
      cause,
      detail,
      todo:
        'The copy stopped; everything copied so far is kept. Check the cable and resume it from ' +
        'Jobs to try again. If that area stays unreadable, start the copy again with “Ignore ' +
        'read errors” in Options: unreadable blocks become zeros and are listed.',
    };
  }
  if (isTarget) {
    return {
      title: `Writing to ${name} failed`,
      where,
      cause,
      detail,
      todo: e.fatal
        ? 'The copy stopped; what was written and recorded is kept. Fix the target, then resume ' +
          'the copy from Jobs.'
        : `This target left the copy and its copy is incomplete; the other targets ${ctx.finished ? 'went' : 'go'} on. ` +
          'Once it is fixed, Resume brings it back where it stopped, or finish the job without it.',
    };
  }
  if (e.job === null) {
    return {
      title: 'DriveTwin’s engine could not do what was asked',
      where,
      cause,
      detail,
      todo: 'Nothing was written. Try again; if it keeps failing, restart DriveTwin.',
    };
  }
  return {
    title: name ? `The copy stopped at ${name}` : 'The copy ran into a problem',
    where,
    cause,
    detail,
    todo: e.fatal
      ? 'The copy stopped; everything recorded so far is kept. Resume it from Jobs.'
      : ctx.finished
        ? 'The copy went on past it.'
        : 'The copy goes on.',
  };
}

export function explainMode(m: ModeChange): Explained | null {
  if (m.mode === 'rw') return null;
  if (m.mode === 'ro') {
    return {
      title: 'DriveTwin could not save its progress, so it stopped copying',
      where: null,
      cause:
        'Its job record became read-only. Everything recorded before is really on the targets; ' +
        'regions copied since were not recorded and will be copied again.',
      detail: m.reason,
      todo:
        'Check the disk that holds DriveTwin’s data (free space, errors), then resume the copy ' +
        'from Jobs.',
    };
  }
  return {
    title: 'DriveTwin can no longer trust this job’s record',
    where: null,
    cause:
      'Reading its record back failed too, so this job will not write anything more. The ' +
      'targets hold a partial copy.',
    detail: m.reason,
    todo: 'Start a new copy of the same source onto the same targets.',
  };
}
