// The web bridge: the built renderer over http on 127.0.0.1, and the same handlers
// as the Electron IPC over a WebSocket at /bridge. How end-to-end tests drive the real
// UI, and how a headless machine's disks are cloned from a browser.
//
// Safety: it listens on 127.0.0.1 only; the Host header must name 127.0.0.1 or
// localhost at our port and a browser's Origin must be ours (no DNS rebinding, no
// other page); pages carry a strict CSP. The token is in the URL's fragment
// (`/#token=…`), which a browser never sends anywhere: the page keeps it and presents it
// as the first message on this WebSocket, and nothing happens on a connection before.
// Never a cookie: cookies ignore ports, so every other server on 127.0.0.1 would get it.
//
// A client that stops reading is dropped once a few MiB wait for it (it reconnects and
// asks for the whole picture again): the bridge's memory stays bounded. Every
// HEARTBEAT_MS an authenticated client hears at least `{t: 'alive'}`, and a `{t: 'ping'}`
// is answered `{t: 'pong'}` at once, so a page knows within a second or two when the
// backend is gone — whether a copy is reporting progress or not.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  BRIDGE_CLOSE_UNAUTHORIZED,
  BRIDGE_PATH,
  type BridgeClientMessage,
  type BridgeServerMessage,
} from '../preload/api';
import type { Backend } from './api';
import { PLACEHOLDER, resolveFile, TYPES } from './web-files';

export interface WebBridgeOptions {
  backend: Backend;
  /** 0 (default): any free port. */
  port?: number;
  /** The built renderer (dist/renderer); a placeholder page is served while it is missing. */
  rendererDir?: string;
  /** Default: 32 random bytes, hex. */
  token?: string;
  /** Bytes waiting for one client before it is dropped. Default 8 MiB. */
  maxBuffered?: number;
  /** How often an idle client hears from the bridge, ms. Default HEARTBEAT_MS. */
  heartbeatMs?: number;
  /** How long a new connection has to present the token, ms. Default 5000. */
  authTimeoutMs?: number;
}

export interface WebBridge {
  port: number;
  token: string;
  /** What to open: http://127.0.0.1:PORT/#token=… */
  url: string;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const MAX_MESSAGE = 1024 * 1024;
const MAX_BUFFERED = 8 * 1024 * 1024;
export const HEARTBEAT_MS = 500;

function tokenMatches(given: unknown, token: string): boolean {
  if (typeof given !== 'string' || given === '') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startWebBridge(options: WebBridgeOptions): Promise<WebBridge> {
  const token = options.token ?? randomBytes(32).toString('hex');
  const rendererDir = path.resolve(options.rendererDir ?? path.join(__dirname, '..', 'renderer'));
  const maxBuffered = options.maxBuffered ?? MAX_BUFFERED;
  let port = 0;
  const origins = (): string[] => [`http://${HOST}:${port}`, `http://localhost:${port}`];
  const hosts = (): string[] => [`${HOST}:${port}`, `localhost:${port}`];

  const securityHeaders = (): Record<string, string> => ({
    'Content-Security-Policy':
      `default-src 'self'; connect-src 'self' ws://${HOST}:${port} ws://localhost:${port}; ` +
      `img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; ` +
      `frame-ancestors 'none'`,
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
  });

  /** Why this request may not go on (status and text), or null. */
  const refusal = (req: http.IncomingMessage): [number, string] | null => {
    if (!hosts().includes(req.headers.host ?? '')) return [421, 'wrong Host'];
    const origin = req.headers.origin;
    if (origin !== undefined && !origins().includes(origin)) return [403, 'wrong Origin'];
    return null;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    const refused = refusal(req);
    if (refused) {
      res.writeHead(refused[0], {
        'Content-Type': 'text/plain; charset=utf-8',
        ...securityHeaders(),
      });
      res.end(`${refused[1]}\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', ...securityHeaders() });
      res.end();
      return;
    }
    const headers = securityHeaders();
    const file = resolveFile(rendererDir, url.pathname);
    if (file === 'forbidden') {
      res.writeHead(404, headers);
      res.end();
      return;
    }
    if (file === null) {
      res.writeHead(200, { ...headers, 'Content-Type': TYPES['.html'] });
      res.end(req.method === 'HEAD' ? undefined : PLACEHOLDER);
      return;
    }
    const type = TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
    res.writeHead(200, { ...headers, 'Content-Type': type });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    fs.createReadStream(file)
      .on('error', () => res.destroy())
      .pipe(res);
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE });
  /** Connections that presented the token: they get events. */
  const clients = new Set<WebSocket>();

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    const refused = url.pathname === BRIDGE_PATH ? refusal(req) : ([404, 'no such path'] as const);
    if (refused) {
      // Not our page, or not our host: no WebSocket at all.
      socket.end(`HTTP/1.1 ${refused[0]} ${refused[1]}\r\nConnection: close\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => authenticate(ws));
  });

  /** Nothing but `{t: 'auth', token}` first; a wrong or missing token closes with 4401. */
  const authenticate = (ws: WebSocket): void => {
    // A browser can't read a refused upgrade's status; a close code it can show.
    const refuse = (): void => ws.close(BRIDGE_CLOSE_UNAUTHORIZED, 'a valid token is needed');
    const timer = setTimeout(refuse, options.authTimeoutMs ?? 5000);
    ws.on('error', () => ws.terminate());
    ws.once('close', () => clearTimeout(timer));
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer);
      let message: Partial<BridgeClientMessage> | null = null;
      try {
        message = isBinary ? null : (JSON.parse(data.toString()) as Partial<BridgeClientMessage>);
      } catch {
        message = null;
      }
      if (message?.t !== 'auth' || !tokenMatches(message.token, token)) return refuse();
      serve(ws);
      send(ws, { t: 'ready' });
    });
  };

  const serve = (ws: WebSocket): void => {
    clients.add(ws);
    ws.on('close', () => clients.delete(ws));
    ws.on('message', (data, isBinary) => {
      void answer(ws, isBinary ? null : data.toString());
    });
  };

  /** Sends, or drops a client that has stopped reading (its backlog is what grows). */
  const sendText = (ws: WebSocket, text: string): void => {
    if (ws.readyState !== ws.OPEN) return;
    if (ws.bufferedAmount > maxBuffered) {
      clients.delete(ws);
      ws.terminate();
      return;
    }
    ws.send(text);
  };

  const send = (ws: WebSocket, message: BridgeServerMessage): void =>
    sendText(ws, JSON.stringify(message));

  const answer = async (ws: WebSocket, text: string | null): Promise<void> => {
    let message: Partial<BridgeClientMessage>;
    try {
      message = JSON.parse(text ?? '') as Partial<BridgeClientMessage>;
    } catch {
      ws.close(1003, 'JSON text messages only');
      return;
    }
    if (typeof message === 'object' && message?.t === 'ping') {
      send(ws, { t: 'pong' });
      return;
    }
    if (
      typeof message !== 'object' ||
      message === null ||
      message.t !== 'call' ||
      !Number.isSafeInteger(message.id)
    ) {
      ws.close(1003, 'expected {t: "call", id, method, args}');
      return;
    }
    const id = message.id as number;
    const reply = await options.backend.call(
      String(message.method),
      Array.isArray(message.args) ? message.args : [],
    );
    send(ws, { t: 'reply', id, reply });
  };

  const unsubscribe = options.backend.onEvent((event, payload) => {
    const text = JSON.stringify({ t: 'event', event, payload });
    for (const ws of [...clients]) sendText(ws, text);
  });

  const alive = JSON.stringify({ t: 'alive' } satisfies BridgeServerMessage);
  const heartbeat = setInterval(() => {
    for (const ws of [...clients]) sendText(ws, alive);
  }, options.heartbeatMs ?? HEARTBEAT_MS);
  heartbeat.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, HOST, () => resolve());
  });
  port = (server.address() as AddressInfo).port;

  return {
    port,
    token,
    url: `http://${HOST}:${port}/#token=${token}`,
    close: async () => {
      clearInterval(heartbeat);
      unsubscribe();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
