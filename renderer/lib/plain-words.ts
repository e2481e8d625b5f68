// Every word the engine and the backend say, in the user's terms before it is shown:
// what happened and what to do, places as sizes (never byte offsets), the window's own
// names for its options (never a command-line flag), the system's error codes as what
// they mean. The engine's own words stay behind a Details disclosure
// (components/EngineWords.svelte). One module, so that every screen says a thing the
// same way.
import type { JobError, ModeChange } from '../../preload/events';
import { formatBytes } from './format';

export interface Explained {
  /** One line: which drive, what happened. */
  title: string;
  /** Where on the drive, as sizes; null when not known. */
  where: string | null;
  /** The cause in words. */
  cause: string;
  /** The engine's own words (shown under Details). */
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

type Kind = 'full' | 'io' | 'gone' | 'read-only' | 'denied' | 'missing' | 'busy' | 'memory';

/** The system's error codes (and their usual texts), by what they mean for a drive. */
const CAUSES: Array<{ kind: Kind; pattern: RegExp; words: string }> = [
  {
    kind: 'full',
    pattern: /\bENOSPC\b|\bEDQUOT\b|\bEFBIG\b|no space left/i,
    words: 'It is full, with no room left to write.',
  },
  {
    kind: 'gone',
    pattern:
      /\bENODEV\b|\bENXIO\b|\bENOTCONN\b|\bESHUTDOWN\b|\bETIMEDOUT\b|\bEPIPE\b|\bECONNRESET\b|no such device|not connected|disconnected/i,
    words: 'The drive stopped answering (unplugged, switched off, or its connection cut).',
  },
  {
    kind: 'io',
    pattern: /\bEIO\b|input\/output error/i,
    words: 'The drive reported an error there (a damaged area, or a loose cable).',
  },
  { kind: 'read-only', pattern: /\bEROFS\b|read-only/i, words: 'It is read-only.' },
  {
    kind: 'denied',
    pattern: /\bEACCES\b|\bEPERM\b|permission denied|not permitted/i,
    words: 'DriveTwin was not allowed to use it.',
  },
  {
    kind: 'missing',
    pattern: /\bENOENT\b|does not exist|no such file/i,
    words: 'It is not there (any more).',
  },
  { kind: 'busy', pattern: /\bEBUSY\b|\bin use\b|busy/i, words: 'Something else is using it.' },
  {
    kind: 'memory',
    pattern: /\bENOMEM\b|out of memory/i,
    words: 'The computer ran out of memory.',
  },
];

function causeKind(message: string): { kind: Kind; words: string } | null {
  for (const c of CAUSES) if (c.pattern.test(message)) return c;
  return null;
}

/** A system error in words, or null when it is not one of the usual ones. */
export function knownCause(message: string): string | null {
  return causeKind(message)?.words ?? null;
}

/** The window's names for the command line's flags, as engine messages use them. */
const FLAG_NAMES: Array<[RegExp, string]> = [
  [/--used-only\b/g, '“Copy only used space”'],
  [/--zero-free\b/g, 'zeroing free space'],
  [/--sparse \/ --no-sparse\b/g, '“Leave zeros unwritten”'],
  [/--no-sparse\b/g, '“Leave zeros unwritten: no”'],
  [/--sparse\b/g, '“Leave zeros unwritten”'],
  [/--new-ids\b/g, 'new disk identifiers'],
  [/--region-size\b/g, 'the piece size'],
  [/--from-map\b/g, 'a rescue map'],
  [/--ignore-errors\b/g, '“Ignore read errors”'],
  [/--sequential\b/g, '“Sequential writes”'],
  [/--verify\b/g, '“Verify”'],
  [/--allow-mounted\b/g, '“Allow writing mounted drives”'],
  [/--allow-system\b/g, '“Allow writing the system drive”'],
  [/--max-rate\b/g, 'the speed limit'],
  [/--throttle\b/g, 'the disk time allowed'],
  [/--threshold\b/g, 'how many pieces are copied at once'],
  [/--batch\b/g, 'how many pieces are read together'],
  [/--eject\b/g, 'ejecting'],
  [/--yes\b/g, 'your confirmation'],
];

/** Whole phrases of the engine that have a plain equivalent (before flags are renamed). */
const PHRASES: Array<[RegExp, string | ((...m: string[]) => string)]> = [
  [
    /^(read|write|flush|open) failed on (\S+)/,
    (_m, op: string, p: string) =>
      `${{ read: 'Reading', write: 'Writing to', flush: 'Making the writes safe on', open: 'Opening' }[op]} ${p} failed`,
  ],
  [/\bspawn (\S+) ENOENT\b/g, (_m, program: string) => `${program} is not installed`],
  [/\bspawn (\S+) E[A-Z]+\b/g, (_m, program: string) => `${program} could not be started`],
  [/;? ?run the clone with --fresh to start over/g, '; choose “Start over instead” to start over'],
  [/\. Copy only them with --fit/g, ': only they can be copied'],
  [/;? ?(?:add|with) --fit\b/g, ' (only its partitions can be copied)'],
  [/--fit\b/g, 'copying only the partitions'],
  [/--fresh\b/g, '“Start over instead”'],
  [/--drop (\S+?):/g, (_m, p: string) => `finishing without ${p}:`],
  [/--drop\b/g, '“Finish without it”'],
  [
    /,? and its GPT's backup needs (\d[\d.]* \w+) after it/g,
    (_m, size: string) => `, plus ${size} after it for the spare copy of the partition table`,
  ],
  [/\bGPT's backup\b/g, 'the spare copy of the partition table'],
  [/\bGUIDs?\b/g, 'identifiers'],
  // Words only, never inside a path.
  [/(?<![/\w.-])hydrat(?:ed|ing|ion)\b(?![/\w]|\.\w)/g, 'copied'],
  [/(?<![/\w.-])destinations\b(?![/\w]|\.\w)/g, 'targets'],
  [/(?<![/\w.-])destination\b(?![/\w]|\.\w)/g, 'target'],
  [/(?<![/\w.-])regions\b(?![/\w]|\.\w)/g, 'pieces'],
  [/(?<![/\w.-])region\b(?![/\w]|\.\w)/g, 'piece'],
];

const size = (n: string): string => formatBytes(Number(n));

/** Byte offsets as sizes: "at byte 315621376 (+2097152)" → "at 301 MiB (2.00 MiB)". */
function placesAsSizes(text: string): string {
  return text
    .replace(
      /\bat bytes? (\d+) ?\(\+(\d+)\)/g,
      (_m, at: string, n: string) => `at ${size(at)} (${size(n)})`,
    )
    .replace(
      /\bat bytes (\d+)\+(\d+)/g,
      (_m, at: string, n: string) => `at ${size(at)} (${size(n)})`,
    )
    .replace(/\bbytes? (\d+)\b/g, (_m, at: string) => size(at))
    .replace(
      /\((\d{4,}) > (\d{4,}) bytes\)/g,
      (_m, a: string, b: string) => `(${size(a)} > ${size(b)})`,
    )
    .replace(/\b(\d{5,}) bytes\b/g, (_m, n: string) => size(n));
}

/**
 * The system's error codes in words: "ENOSPC: no space left on device, write" → "it is
 * full: there is no room left to write"; a code no one knows here → "the system refused".
 */
function codesInWords(text: string): string {
  return text.replace(
    /\b(E[A-Z]{2,})\b(?::[^,;.]*(?:, \w+(?: '[^']*')?)?)?/g,
    (whole, code: string) => {
      const c = causeKind(code) ?? causeKind(whole);
      const words = c ? c.words.replace(/\.$/, '') : 'the system refused it';
      return words.charAt(0).toLowerCase() + words.slice(1);
    },
  );
}

/**
 * The same as a phrase to follow other words ("Can’t be used: …"): neither capitalised nor
 * ended with a full stop.
 */
export function plainPhrase(message: string): string {
  return lowerFirst(plainText(message).replace(/\.$/, ''));
}

/** A sentence's first word in lower case, to follow other words; "GPT…" stays as it is. */
export function lowerFirst(text: string): string {
  return /^[A-Z][a-z]/.test(text) ? text.charAt(0).toLowerCase() + text.slice(1) : text;
}

/** An engine or backend message in plain words: no flags, no error codes, no byte offsets. */
export function plainText(message: string): string {
  let text = message.trim();
  for (const [pattern, words] of PHRASES) {
    text = text.replace(pattern, words as (substring: string, ...args: string[]) => string);
  }
  for (const [pattern, name] of FLAG_NAMES) text = text.replace(pattern, name);
  // Any other flag: its name without the dashes, so nobody is sent to a command line.
  text = text.replace(/(^|\s)--([a-z][a-z-]*)/g, (_m, space: string, flag: string) => {
    return `${space}“${flag.replace(/-/g, ' ')}”`;
  });
  text = codesInWords(placesAsSizes(text));
  text = text.replace(/\s+/g, ' ').replace(/ ([;:,.])/g, '$1');
  if (text === '') return text;
  text = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?…]$/.test(text) ? text : `${text}.`;
}

/** Why "Copy only used space" was refused, in plain words; null for another refusal. */
export function usedOnlyReason(message: string): string | null {
  const usedOnly = /^--used-only:\s*(.*)$/s.exec(message.trim());
  return usedOnly ? plainText(usedOnly[1]) : null;
}

/** Why a refusal happened, for the option it is about: what the user can do next. */
export function refusalWords(message: string): string {
  const usedOnly = usedOnlyReason(message);
  if (usedOnly) {
    return (
      `“Copy only used space” can’t be used for this copy: ${usedOnly} ` +
      'Untick it in Options to copy everything.'
    );
  }
  return plainText(message);
}

/**
 * Why a target failed, for its one line: the cause in words ("It is full: there is no
 * room left to write."); else the message in plain words.
 */
export function failureWords(message: string): string {
  return knownCause(message) ?? plainText(message);
}

/** Where on the drive, as sizes: "at 8.00 MiB from the start (4.00 KiB)". */
function whereOf(e: JobError): string | null {
  if (e.offset === undefined) return null;
  const at = `at ${formatBytes(e.offset)} from the start`;
  return e.length ? `${at} (${formatBytes(e.length)})` : at;
}

export function explainError(e: JobError, ctx: Context): Explained {
  const where = whereOf(e);
  const detail = e.message;
  const known = causeKind(e.message);
  const cause = known?.words ?? plainText(e.message);
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
      title:
        known?.kind === 'gone'
          ? `The source ${name} stopped answering`
          : `Reading the source ${name} failed`,
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
    const title =
      known?.kind === 'full'
        ? `The target ${name} is full${e.offset !== undefined ? ` after ${formatBytes(e.offset)}` : ''}`
        : known?.kind === 'gone'
          ? `The target ${name} stopped answering`
          : `Writing to ${name} failed`;
    const fix =
      known?.kind === 'full' ? 'Make room on it (or choose a bigger one)' : 'Fix the target';
    return {
      title,
      where: known?.kind === 'full' ? null : where,
      cause,
      detail,
      todo: e.fatal
        ? `The copy stopped; what was written and recorded is kept. ${fix}, then resume the ` +
          'copy from Jobs.'
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
        'what was copied since was not recorded and will be copied again.',
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
