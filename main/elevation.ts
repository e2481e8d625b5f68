// The elevated engine: when to ask for it, the command that asks the OS for it
// (pkexec, osascript "with administrator privileges", UAC; the same engine/host/host.js run
// as Node-mode Electron, ELECTRON_RUN_AS_NODE=1), and the socket it connects back to —
// a unix socket / named pipe in a user-only folder, where it proves itself with a
// random token. Never a TCP port.
//
// From an AppImage, the app runs from a FUSE mount only its user can read: root can
// neither run that Electron binary nor read host.js there. pkexec runs the AppImage file
// itself instead (as Etcher does), which mounts it again for root and sets APPDIR to
// that mount; host.js is found under it by its path inside the image.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Access } from './api';
import { EngineRequestError } from './engine-links';

/** How long the user may take to answer the administrator prompt. */
const ELEVATION_TIMEOUT_MS = 5 * 60_000;
const AUTH_TIMEOUT_MS = 5_000;

export interface ElevationInput {
  platform: NodeJS.Platform;
  /** The Electron binary (process.execPath in the app), run in Node mode. */
  runtime: string;
  hostScript: string;
  dbPath: string;
  socketPath: string;
  tokenFile: string;
  /** POSIX: files the elevated engine creates are handed back to this user. */
  owner?: { uid: number; gid: number };
  /** Linux, from an AppImage: the image file ($APPIMAGE) and where it is mounted for us ($APPDIR). */
  appImage?: { file: string; dir: string };
}

/** The AppImage this app runs from, if any (its runtime sets both variables). */
export function appImageOf(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): ElevationInput['appImage'] {
  return platform === 'linux' && env.APPIMAGE && env.APPDIR
    ? { file: env.APPIMAGE, dir: env.APPDIR }
    : undefined;
}

/**
 * The AppImage run in Node mode: `-e` code that starts host.js from the mount the image
 * gets in the elevated process ($APPDIR there), at the same place inside the image.
 */
function appImageWords(input: ElevationInput, image: { file: string; dir: string }): string[] {
  const inside = path.posix.relative(image.dir, input.hostScript);
  if (inside.startsWith('..') || path.posix.isAbsolute(inside)) {
    throw new Error(`the engine ${input.hostScript} is not inside the AppImage's ${image.dir}`);
  }
  const code =
    'const d=process.env.APPDIR;' +
    'if(!d)throw new Error("APPDIR is not set: the AppImage runtime did not start this");' +
    `require(require("path").join(d,${JSON.stringify(inside)})).start(process.argv.slice(1))`;
  // `--`: what follows is the script's, not options of the runtime (--db is no Node option).
  return [image.file, '-e', code, '--', ...hostArgs(input)];
}

export interface LaunchCommand {
  command: string;
  args: string[];
  env?: Record<string, string>;
}

function hostArgs(input: ElevationInput): string[] {
  const args = [
    '--db',
    input.dbPath,
    '--socket',
    input.socketPath,
    '--token-file',
    input.tokenFile,
  ];
  if (input.owner) args.push('--owner', `${input.owner.uid}:${input.owner.gid}`);
  return args;
}

/** POSIX shell single quotes. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_/.:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function appleScriptString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function powerShellString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * The command that starts the engine host elevated, through the OS's own prompt.
 * Pure: the same input gives the same command (tests check each OS).
 */
export function elevatedLaunch(input: ElevationInput): LaunchCommand {
  const words = [input.runtime, input.hostScript, ...hostArgs(input)];
  switch (input.platform) {
    case 'win32': {
      // UAC does not carry our environment over: cmd sets ELECTRON_RUN_AS_NODE in the
      // elevated process. Windows paths can't hold `"`; `%` would be expanded by cmd.
      const bad = words.find((w) => w.includes('"') || w.includes('%'));
      if (bad) throw new Error(`can't pass ${bad} through the UAC prompt (it holds " or %)`);
      const line = `set ELECTRON_RUN_AS_NODE=1&& ${words.map((w) => `"${w}"`).join(' ')}`;
      const script =
        `$p = Start-Process -FilePath 'cmd.exe' -ArgumentList ${powerShellString(`/d /s /c "${line}"`)} ` +
        `-Verb RunAs -WindowStyle Hidden -Wait -PassThru; exit $p.ExitCode`;
      return {
        command: 'powershell.exe',
        args: [
          '-NoProfile',
          '-NonInteractive',
          '-WindowStyle',
          'Hidden',
          '-EncodedCommand',
          Buffer.from(script, 'utf16le').toString('base64'),
        ],
      };
    }
    case 'darwin': {
      const line = `ELECTRON_RUN_AS_NODE=1 ${words.map(shellQuote).join(' ')}`;
      return {
        command: '/usr/bin/osascript',
        args: ['-e', `do shell script ${appleScriptString(line)} with administrator privileges`],
      };
    }
    default:
      // pkexec clears the environment: env(1) sets the one variable the runtime needs.
      return {
        command: 'pkexec',
        args: [
          '/usr/bin/env',
          'ELECTRON_RUN_AS_NODE=1',
          ...(input.appImage ? appImageWords(input, input.appImage) : words),
        ],
      };
  }
}

/** Whether opening `p` fails for lack of privilege. */
function openDenied(p: string, write: boolean): boolean {
  try {
    fs.closeSync(fs.openSync(p, write ? 'r+' : 'r'));
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'EACCES' || code === 'EPERM';
  }
}

/**
 * True when opening one of these paths as needed fails for lack of privilege. The
 * engine opens a drive otherwise (engine/drives: /dev/rdiskN, O_EXLOCK, volumes
 * locked) but with the same privilege: root or administrator.
 */
export function needsElevation(access: Access): boolean {
  const denied = (p: string, write: boolean): boolean => {
    // A Windows drive (\\.\PhysicalDriveN) is nothing stat describes: opening it says,
    // and reading it already needs an administrator.
    if (/^\\\\[.?]\\/.test(p)) return openDenied(p, false);
    let st: fs.Stats | null = null;
    try {
      st = fs.statSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') return true;
      if (!write || code !== 'ENOENT') return false;
    }
    if (!st) {
      try {
        fs.accessSync(path.dirname(path.resolve(p)), fs.constants.W_OK);
        return false;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        return code === 'EACCES' || code === 'EPERM';
      }
    }
    // Never open a FIFO or a folder here: only what a job could open.
    if (!st.isBlockDevice() && !st.isCharacterDevice() && !st.isFile()) return false;
    return openDenied(p, write);
  };
  return access.read.some((p) => denied(p, false)) || access.write.some((p) => denied(p, true));
}

export interface EngineListener {
  socketPath: string;
  tokenFile: string;
  /** The authenticated connection and what arrived after the token line. */
  accepted: Promise<{ socket: net.Socket; leftover: string }>;
  /** Connections refused so far (wrong or missing token). */
  readonly refused: number;
  /** Gives up waiting (the launcher exited, or the user said no). */
  abort(reason: string): void;
  close(): void;
}

/**
 * A unix socket (or named pipe) in a fresh user-only folder, plus a token file beside
 * it. The first connection that sends `{"kind":"auth","token":…}` with the right token
 * is accepted; any other is closed and the listener waits on.
 */
export async function listenForEngine(
  opts: { platform?: NodeJS.Platform; timeoutMs?: number } = {},
): Promise<EngineListener> {
  const platform = opts.platform ?? process.platform;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-')); // mode 0700
  const token = randomBytes(32).toString('hex');
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, token + '\n', { mode: 0o600, flag: 'wx' });
  const socketPath =
    platform === 'win32'
      ? `\\\\.\\pipe\\drivetwin-${randomBytes(16).toString('hex')}`
      : path.join(dir, 'engine.sock');
  const server = net.createServer();
  let refused = 0;
  let settle: {
    resolve: (v: { socket: net.Socket; leftover: string }) => void;
    reject: (e: Error) => void;
  };
  const accepted = new Promise<{ socket: net.Socket; leftover: string }>((resolve, reject) => {
    settle = { resolve, reject };
  });
  accepted.catch(() => undefined);
  const cleanup = (): void => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const timer = setTimeout(
    () => abort('the elevated engine did not connect in time'),
    opts.timeoutMs ?? ELEVATION_TIMEOUT_MS,
  );
  let done = false;
  function abort(reason: string): void {
    if (done) return;
    done = true;
    clearTimeout(timer);
    cleanup();
    settle.reject(new EngineRequestError('unavailable', reason));
  }
  const expected = Buffer.from(token);
  server.on('connection', (socket) => {
    let buffered = '';
    const refuse = (): void => {
      refused += 1;
      socket.destroy();
    };
    const authTimer = setTimeout(refuse, AUTH_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    const onData = (chunk: string): void => {
      buffered += chunk;
      const end = buffered.indexOf('\n');
      if (end < 0) {
        if (buffered.length > 1024) refuse();
        return;
      }
      socket.off('data', onData);
      clearTimeout(authTimer);
      let given: Buffer = Buffer.alloc(0);
      try {
        const auth = JSON.parse(buffered.slice(0, end)) as { kind?: unknown; token?: unknown };
        if (auth.kind === 'auth' && typeof auth.token === 'string') given = Buffer.from(auth.token);
      } catch {
        // not JSON: refused below
      }
      if (done || given.length !== expected.length || !timingSafeEqual(given, expected)) {
        refuse();
        return;
      }
      done = true;
      clearTimeout(timer);
      cleanup(); // one engine per listener: stop listening, remove the token
      socket.pause();
      settle.resolve({ socket, leftover: buffered.slice(end + 1) });
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  if (platform !== 'win32') fs.chmodSync(socketPath, 0o600);
  return {
    socketPath,
    tokenFile,
    accepted,
    get refused() {
      return refused;
    },
    abort,
    close: () => abort('closed'),
  };
}
