// `window.driveTwin` in a plain browser: the contract (preload/api.ts) over the web
// bridge's WebSocket (main/web-bridge.ts). No dependencies, no Node: the renderer
// calls installBridge() when there is no Electron preload, and nothing else changes.

import {
  BRIDGE_CLOSE_UNAUTHORIZED,
  BRIDGE_PATH,
  METHODS,
  type ApiErrorCode,
  type BridgeClientMessage,
  type BridgeServerMessage,
  type DriveTwinApi,
  type DriveTwinMethod,
  type Reply,
} from '../preload/api';
import type { DriveTwinEventName, DriveTwinEvents } from '../preload/events';

/** The few WebSocket members used (the browser's WebSocket, or `ws` in tests). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type SocketConstructor = new (url: string) => SocketLike;

export interface BridgeClientOptions {
  /** ws://host:port/bridge?token=…; default: from the page's own location. */
  url?: string;
  WebSocket?: SocketConstructor;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
}

/** A failed call: message, code and (for invalid arguments) issues, as the backend said. */
export class BridgeError extends Error {
  constructor(
    message: string,
    readonly code: ApiErrorCode,
    readonly issues?: string[],
  ) {
    super(message);
    this.name = 'BridgeError';
  }
}

export type BridgeClient = DriveTwinApi & {
  /** Resolves once the bridge accepted the connection; rejects if it refused the token. */
  readonly connected: Promise<void>;
  close(): void;
};

const OPEN = 1;

interface PageLocation {
  protocol: string;
  host: string;
  search: string;
  hash: string;
}

/** The bridge URL for the page at `location`: same host, token from ?token= or #token=. */
export function bridgeUrl(location: PageLocation): string {
  const fromSearch = new URLSearchParams(location.search).get('token');
  const fromHash = new URLSearchParams(location.hash.replace(/^#/, '')).get('token');
  const token = fromSearch ?? fromHash;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = token ? `?token=${encodeURIComponent(token)}` : ''; // else the cookie says it
  return `${scheme}//${location.host}${BRIDGE_PATH}${query}`;
}

export function createBridgeClient(options: BridgeClientOptions = {}): BridgeClient {
  const g = globalThis as unknown as { WebSocket?: SocketConstructor; location?: PageLocation };
  const Socket = options.WebSocket ?? g.WebSocket;
  if (!Socket) throw new Error('no WebSocket in this environment');
  const url = options.url ?? (g.location ? bridgeUrl(g.location) : null);
  if (!url) throw new Error('no bridge URL: pass options.url');
  const reconnect = options.reconnect ?? true;

  let nextId = 1;
  let socket: SocketLike | null = null;
  let closed = false;
  let refusedWith: BridgeError | null = null;
  let retryMs = 250;
  const queue: string[] = [];
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const listeners = new Map<DriveTwinEventName, Set<(payload: unknown) => void>>();

  let markConnected: () => void = () => undefined;
  let markRefused: (e: Error) => void = () => undefined;
  const connected = new Promise<void>((resolve, reject) => {
    markConnected = resolve;
    markRefused = reject;
  });
  connected.catch(() => undefined);

  const failAll = (error: Error): void => {
    for (const p of pending.values()) p.reject(error);
    pending.clear();
    queue.length = 0;
  };

  const connect = (): void => {
    const s = new Socket(url);
    socket = s;
    s.onopen = () => {
      for (const text of queue.splice(0)) s.send(text);
    };
    s.onmessage = (ev) => receive(ev.data);
    s.onerror = () => undefined; // onclose follows
    s.onclose = (ev) => {
      socket = null;
      if (ev.code === BRIDGE_CLOSE_UNAUTHORIZED) {
        refusedWith = new BridgeError(
          'the bridge refused this page: open the URL with the token that `npm run web` printed',
          'unavailable',
        );
        markRefused(refusedWith);
        failAll(refusedWith);
        return;
      }
      // Calls in flight may or may not have run: say so rather than guess.
      for (const p of pending.values()) {
        p.reject(new BridgeError('the connection to DriveTwin was lost', 'unavailable'));
      }
      pending.clear();
      if (!closed && reconnect) {
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 5000);
      }
    };
  };

  const receive = (data: unknown): void => {
    let message: BridgeServerMessage;
    try {
      message = JSON.parse(String(data)) as BridgeServerMessage;
    } catch {
      return;
    }
    if (message.t === 'ready') {
      retryMs = 250;
      markConnected();
    } else if (message.t === 'reply') {
      const waiting = pending.get(message.id);
      if (!waiting) return;
      pending.delete(message.id);
      const reply: Reply = message.reply;
      if (reply.ok) waiting.resolve(reply.value);
      else
        waiting.reject(new BridgeError(reply.error.message, reply.error.code, reply.error.issues));
    } else if (message.t === 'event') {
      for (const l of listeners.get(message.event) ?? []) {
        try {
          l(message.payload);
        } catch (e) {
          setTimeout(() => {
            throw e;
          });
        }
      }
    }
  };

  const call = (method: DriveTwinMethod, args: unknown[]): Promise<unknown> => {
    if (refusedWith) return Promise.reject(refusedWith);
    if (closed)
      return Promise.reject(new BridgeError('the bridge client is closed', 'unavailable'));
    // Trailing undefined is no argument (JSON would turn it into null).
    const given = [...args];
    while (given.length > 0 && given[given.length - 1] === undefined) given.pop();
    const id = nextId++;
    const message: BridgeClientMessage = { t: 'call', id, method, args: given };
    const text = JSON.stringify(message);
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      if (socket && socket.readyState === OPEN) socket.send(text);
      else queue.push(text);
    });
  };

  const methods = Object.fromEntries(
    METHODS.map((m) => [m, (...args: unknown[]) => call(m, args)]),
  ) as unknown as Omit<DriveTwinApi, 'on'>;

  connect();

  return {
    ...methods,
    connected,
    on<E extends DriveTwinEventName>(event: E, listener: (payload: DriveTwinEvents[E]) => void) {
      const set = listeners.get(event) ?? new Set();
      listeners.set(event, set);
      const l = listener as (payload: unknown) => void;
      set.add(l);
      return () => void set.delete(l);
    },
    close() {
      closed = true;
      failAll(new BridgeError('the bridge client is closed', 'unavailable'));
      socket?.close(1000);
    },
  };
}

/** Sets `window.driveTwin` to a bridge client when no Electron preload did; returns it. */
export function installBridge(options: BridgeClientOptions = {}): DriveTwinApi {
  const g = globalThis as unknown as { driveTwin?: DriveTwinApi };
  g.driveTwin ??= createBridgeClient(options);
  return g.driveTwin;
}
