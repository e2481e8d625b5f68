// `window.driveTwin` in a plain browser: the contract (preload/api.ts) over the web
// bridge's WebSocket (main/web-bridge.ts). No dependencies, no Node: the renderer
// calls installBridge() when there is no Electron preload, and nothing else changes.
//
// The token comes from the page's URL fragment (#token=…), which the browser never
// sends anywhere; it travels only as the first message on the bridge's own WebSocket.
// The connection is watched, apart from any progress: the bridge speaks every half
// second, and a page that hears nothing for `pingMs` asks it (ping; the bridge answers
// pong at once). Closed, it is lost — said at once through onConnection — and tried
// again every `retryMs` until the bridge answers again. Silent for `silentMs` despite
// the ping, it is said lost too, but the socket is kept: the first word from the bridge
// makes it connected again, nothing missed. Silence counts only while the page itself
// runs: a page that was stalled (its own work, a busy machine) has not been ignored,
// and what queued up for it meanwhile is read before anything is concluded.

import {
  BRIDGE_CLOSE_UNAUTHORIZED,
  BRIDGE_PATH,
  METHODS,
  type ApiErrorCode,
  type BridgeClientMessage,
  type BridgeServerMessage,
  type ConnectionStatus,
  type DriveTwinApi,
  type DriveTwinMethod,
  type LocalMember,
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
  /** ws://host:port/bridge; default: from the page's own location. */
  url?: string;
  /** The bridge's token; null or absent: refused at once (reason no-token). */
  token?: string | null;
  WebSocket?: SocketConstructor;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  /** Lost when nothing was heard for this long, ms of the page running (default 1500). */
  silentMs?: number;
  /** Ask the bridge (ping) when nothing was heard for this long, ms (default silentMs / 2). */
  pingMs?: number;
  /** Silent this long: the socket is given up and a new one opened, ms (default 10 × silentMs). */
  dropMs?: number;
  /** Wait between attempts to reconnect, ms (default 500). */
  retryMs?: number;
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
  hash: string;
}

/** The bridge's WebSocket URL for the page at `location`: same host, no token in it. */
export function bridgeUrl(location: Pick<PageLocation, 'protocol' | 'host'>): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${BRIDGE_PATH}`;
}

/** The token in a URL fragment (`#token=…`), or null. */
export function tokenFromHash(hash: string): string | null {
  return new URLSearchParams(hash.replace(/^#/, '')).get('token') || null;
}

export function createBridgeClient(options: BridgeClientOptions = {}): BridgeClient {
  const g = globalThis as unknown as { WebSocket?: SocketConstructor; location?: PageLocation };
  const Socket = options.WebSocket ?? g.WebSocket;
  if (!Socket) throw new Error('no WebSocket in this environment');
  const url = options.url ?? (g.location ? bridgeUrl(g.location) : null);
  if (!url) throw new Error('no bridge URL: pass options.url');
  const token = options.token ?? null;
  const reconnect = options.reconnect ?? true;
  const silentMs = options.silentMs ?? 1500;
  const pingMs = options.pingMs ?? silentMs / 2;
  const dropMs = options.dropMs ?? silentMs * 10;
  const retryMs = options.retryMs ?? 500;
  const TICK_MS = 250;

  let nextId = 1;
  let socket: SocketLike | null = null;
  let closed = false;
  let refusedWith: BridgeError | null = null;
  let status: ConnectionStatus = { state: 'connecting', reason: null, lastHeard: 0 };
  let watchdog: ReturnType<typeof setInterval> | null = null;
  /** Ms the page ran (between watchdog ticks) since the bridge was last heard. */
  let quiet = 0;
  let lastTick = 0;
  let pinged = false;
  const queue: string[] = [];
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const listeners = new Map<DriveTwinEventName, Set<(payload: unknown) => void>>();
  const watchers = new Set<(s: ConnectionStatus) => void>();

  let markConnected: () => void = () => undefined;
  let markRefused: (e: Error) => void = () => undefined;
  const connected = new Promise<void>((resolve, reject) => {
    markConnected = resolve;
    markRefused = reject;
  });
  connected.catch(() => undefined);

  const setStatus = (next: Omit<ConnectionStatus, 'lastHeard'>): void => {
    if (next.state === status.state && next.reason === status.reason) return;
    status = { ...next, lastHeard: status.lastHeard };
    for (const w of [...watchers]) w(status);
  };

  const failAll = (error: Error): void => {
    for (const p of pending.values()) p.reject(error);
    pending.clear();
    queue.length = 0;
  };

  const refuse = (reason: 'no-token' | 'bad-token'): void => {
    refusedWith = new BridgeError(
      reason === 'no-token'
        ? 'this page was opened without the token: open the address `npm run web` printed'
        : 'the bridge refused this page: open the URL with the token that `npm run web` printed',
      'unavailable',
    );
    setStatus({ state: 'refused', reason });
    if (watchdog) clearInterval(watchdog);
    markRefused(refusedWith);
    failAll(refusedWith);
  };

  /** The socket is gone (closed, or silent past dropMs): say so, and try again. */
  const lost = (s: SocketLike, reason: 'closed' | 'silent'): void => {
    if (socket !== s) return;
    socket = null;
    s.onopen = s.onmessage = s.onclose = s.onerror = null;
    if (reason === 'silent') s.close();
    // Calls in flight may or may not have run: say so rather than guess.
    for (const p of pending.values()) {
      p.reject(new BridgeError('the connection to DriveTwin was lost', 'unavailable'));
    }
    pending.clear();
    if (closed) return;
    setStatus({ state: 'lost', reason });
    if (reconnect) setTimeout(connect, retryMs);
  };

  const connect = (): void => {
    if (closed || refusedWith) return;
    const s = new Socket(url);
    socket = s;
    s.onopen = () => {
      if (token) s.send(JSON.stringify({ t: 'auth', token } satisfies BridgeClientMessage));
    };
    s.onmessage = (ev) => receive(ev.data);
    s.onerror = () => undefined; // onclose follows
    s.onclose = (ev) => {
      if (ev.code === BRIDGE_CLOSE_UNAUTHORIZED) {
        socket = null;
        refuse('bad-token');
      } else lost(s, 'closed');
    };
  };

  const receive = (data: unknown): void => {
    let message: BridgeServerMessage;
    try {
      message = JSON.parse(String(data)) as BridgeServerMessage;
    } catch {
      return;
    }
    status = { ...status, lastHeard: Date.now() };
    quiet = 0;
    pinged = false;
    // Heard again after a silence: the same socket goes on, nothing was missed.
    if (status.state === 'lost' && status.reason === 'silent' && message.t !== 'ready') {
      setStatus({ state: 'connected', reason: null });
    }
    if (message.t === 'ready') {
      setStatus({ state: 'connected', reason: null });
      markConnected();
      const s = socket;
      if (s) for (const text of queue.splice(0)) s.send(text);
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
    if (status.state === 'lost' && status.reason !== 'silent') {
      return Promise.reject(new BridgeError('the connection to DriveTwin is lost', 'unavailable'));
    }
    // Trailing undefined is no argument (JSON would turn it into null).
    const given = [...args];
    while (given.length > 0 && given[given.length - 1] === undefined) given.pop();
    const id = nextId++;
    const message: BridgeClientMessage = { t: 'call', id, method, args: given };
    const text = JSON.stringify(message);
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      const open = socket && socket.readyState === OPEN;
      if (open && (status.state === 'connected' || status.reason === 'silent')) socket!.send(text);
      else queue.push(text);
    });
  };

  const methods = Object.fromEntries(
    METHODS.map((m) => [m, (...args: unknown[]) => call(m, args)]),
  ) as unknown as Omit<DriveTwinApi, LocalMember>;

  /** Every TICK_MS: how long the bridge has been quiet while this page ran, and what that means. */
  const watch = (): void => {
    const now = performance.now();
    // A tick far later than asked: the page was stalled, not listening; only the time
    // it really ran counts (the messages that queued up meanwhile are read first).
    quiet += Math.min(now - lastTick, 2 * TICK_MS);
    lastTick = now;
    const s = socket;
    if (!s || (status.state !== 'connected' && status.reason !== 'silent')) return;
    if (quiet >= pingMs && !pinged && s.readyState === OPEN) {
      pinged = true;
      s.send(JSON.stringify({ t: 'ping' } satisfies BridgeClientMessage));
    }
    if (quiet >= dropMs) lost(s, 'silent');
    else if (quiet >= silentMs && status.state === 'connected') {
      setStatus({ state: 'lost', reason: 'silent' });
    }
  };

  if (token) {
    connect();
    lastTick = performance.now();
    watchdog = setInterval(watch, TICK_MS);
  } else {
    refuse('no-token');
  }

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
    // A dropped file in a browser has no path the backend could open.
    pathOfFile: () => null,
    onConnection(listener) {
      watchers.add(listener);
      listener(status);
      return () => void watchers.delete(listener);
    },
    close() {
      closed = true;
      if (watchdog) clearInterval(watchdog);
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
