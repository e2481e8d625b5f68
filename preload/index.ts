// `window.driveTwin` in the Electron window: exactly the contract of preload/api.ts —
// one function per METHODS entry and `on` for EVENTS — over ipcRenderer, and nothing
// else (no ipcRenderer, no IpcRendererEvent, no Node).
//
// This preload runs sandboxed, where `require` knows only 'electron' (and events,
// timers, url): it can't load ./api at run time, and we don't bundle. So the method
// and event lists are written out below and the compiler holds them to the contract —
// the same names in the same order as METHODS and EVENTS, or the build fails — and the
// channels follow the contract's rule (`drivetwin:call:<method>`,
// `drivetwin:event:<event>`), typed against INVOKE_CHANNELS and EVENT_CHANNELS. We chose
// that over inlining the lists with a build step: nothing generated, nothing to forget
// to run. Only type imports from ./api and ./events below: they vanish from the compiled
// file.

import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from 'electron';
import type {
  ApiFailure,
  ConnectionStatus,
  DriveTwinApi,
  DriveTwinMethod,
  EVENT_CHANNELS,
  EVENTS,
  INVOKE_CHANNELS,
  IPC_PREFIX,
  LocalMember,
  METHODS,
  Reply,
  Unsubscribe,
} from './api';
import type { DriveTwinEventName } from './events';

const methods = [
  'capabilities',
  'listDrives',
  'pickImageToOpen',
  'pickImageToSave',
  'forgetImage',
  'driveContents',
  'listFolder',
  'ejectDrive',
  'planClone',
  'startClone',
  'pause',
  'resume',
  'cancel',
  'setThrottle',
  'listJobs',
  'resumeJob',
  'forgetJob',
  'verify',
  'regionMap',
  'exportMap',
] as const;

const events = [
  'drives-changed',
  'job-started',
  'progress',
  'region-map',
  'error',
  'mode',
  'done',
  'verify-progress',
  'verified',
  'serving',
] as const;

type Same<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const sameMethods: Same<typeof methods, typeof METHODS> = true;
const sameEvents: Same<typeof events, typeof EVENTS> = true;
void sameMethods;
void sameEvents;

const sameChannels: [
  Same<{ readonly [M in DriveTwinMethod]: `drivetwin:call:${M}` }, typeof INVOKE_CHANNELS>,
  Same<{ readonly [E in DriveTwinEventName]: `drivetwin:event:${E}` }, typeof EVENT_CHANNELS>,
  Same<'drivetwin:', typeof IPC_PREFIX>,
] = [true, true, true];
void sameChannels;

function invokeChannel<M extends DriveTwinMethod>(method: M): `drivetwin:call:${M}` {
  return `drivetwin:call:${method}`;
}

function eventChannel<E extends DriveTwinEventName>(event: E): `drivetwin:event:${E}` {
  return `drivetwin:event:${event}`;
}

/**
 * The value of a Reply, or an Error with its message. contextBridge hands the page a
 * copy of an Error that keeps only the message, so `code` and `issues` are set here but
 * don't reach the page; the message says everything the user needs.
 */
function unwrap(reply: Reply): unknown {
  if (reply?.ok === true) return reply.value;
  const failure: ApiFailure =
    reply?.ok === false ? reply.error : { code: 'engine', message: 'DriveTwin did not answer' };
  const error = new Error(failure.message) as Error & Partial<ApiFailure>;
  error.code = failure.code;
  if (failure.issues) error.issues = failure.issues;
  throw error;
}

const api = Object.fromEntries(
  methods.map((method) => [
    method,
    (...args: unknown[]): Promise<unknown> =>
      ipcRenderer.invoke(invokeChannel(method), ...args).then(unwrap),
  ]),
) as unknown as Omit<DriveTwinApi, LocalMember>;

function on(event: DriveTwinEventName, listener: (payload: unknown) => void): Unsubscribe {
  if (!(events as readonly string[]).includes(event)) {
    throw new Error(`there is no event ${JSON.stringify(event)}`);
  }
  if (typeof listener !== 'function') throw new TypeError('the listener must be a function');
  const channel = eventChannel(event);
  // The page gets the payload only: the IpcRendererEvent would hand it ipcRenderer.
  const forward = (_e: IpcRendererEvent, payload: unknown): void => listener(payload);
  ipcRenderer.on(channel, forward);
  return () => {
    ipcRenderer.removeListener(channel, forward);
  };
}

/** IPC to the main process in this same app can't be lost: connected, always. */
function onConnection(listener: (status: ConnectionStatus) => void): Unsubscribe {
  if (typeof listener !== 'function') throw new TypeError('the listener must be a function');
  listener({ state: 'connected', reason: null, lastHeard: Date.now() });
  return () => undefined;
}

/** A dropped file's path (Electron took File.path away; webUtils is its replacement). */
function pathOfFile(file: unknown): string | null {
  try {
    return webUtils.getPathForFile(file as File) || null;
  } catch {
    return null;
  }
}

const driveTwin: DriveTwinApi = {
  ...api,
  on: on as DriveTwinApi['on'],
  onConnection,
  pathOfFile,
};

contextBridge.exposeInMainWorld('driveTwin', driveTwin);
