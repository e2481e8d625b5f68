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
  const download = isSource && /^https?:\/\//i.test(e.device ?? '');

  if (e.retry) {
    const { attempt, attempts, delayMs } = e.retry;
    return {
      title: `The download of ${name ?? 'the source'} was interrupted`,
      where: e.offset === undefined ? null : `at ${formatBytes(e.offset)} into the file`,
      cause: `DriveTwin tries again in ${Math.max(1, Math.round(delayMs / 1000))} s (attempt ${attempt} of ${attempts}), from where it stopped: nothing is lost.`,
      detail,
      todo: ctx.finished
        ? 'Nothing: the download went on.'
        : 'Nothing, unless it keeps failing: then check the network.',
    };
  }
  if (download) return explainDownload(e, name ?? '', detail, ctx);

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

/** A download that stopped the copy: why, and whether resuming can help. */
function explainDownload(e: JobError, name: string, detail: string, ctx: Context): Explained {
  const title = `Downloading ${name} failed`;
  if (/SHA-256 is [0-9a-f]{64}, not/.test(e.message)) {
    return {
      title: `The download of ${name} is not the file expected`,
      where: null,
      cause:
        'Its SHA-256 does not match the one it was to have: it was damaged, or it was replaced.',
      detail,
      todo:
        'Don’t use what was written. Check the SHA-256 and the address with the image’s ' +
        'publisher, then start the copy again.',
    };
  }
  if (/changed on the server/.test(e.message)) {
    return {
      title: `${name} changed on the server`,
      where: null,
      cause: 'It is another file than the one this copy began with: the two are never mixed.',
      detail,
      todo: 'Start the copy again from the beginning (“Start over” when asked).',
    };
  }
  if (/corrupt|truncated|ends early|ends inside/i.test(e.message)) {
    return {
      title: `The download of ${name} is damaged`,
      where: null,
      cause: 'What the server sent can’t be decompressed: it is corrupt, or cut short.',
      detail,
      todo: 'Check the address; if it is right, the file on the server is damaged.',
    };
  }
  return {
    title,
    where: null,
    cause: 'The server could not be reached, or it stopped answering, after several tries.',
    detail,
    todo: ctx.finished
      ? 'Everything copied so far is kept. Check the network, then resume the copy from Jobs: the download goes on from where it stopped.'
      : 'Check the network.',
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
