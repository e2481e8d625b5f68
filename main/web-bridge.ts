// The web bridge: the built renderer over http on 127.0.0.1, and the same handlers
// as the Electron IPC over a WebSocket at /bridge. How end-to-end tests drive the real
// UI, and how a headless machine's disks are cloned from a browser.
//
// Safety: it listens on 127.0.0.1 only; every request needs the random token (in the
// URL it prints, then an HttpOnly cookie); the Host header must name 127.0.0.1 or
// localhost at our port and a browser's Origin must be ours (no DNS rebinding, no
// other page); pages carry a strict CSP.

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

export interface WebBridgeOptions {
  backend: Backend;
  /** 0 (default): any free port. */
  port?: number;
  /** The built renderer (dist/renderer); a placeholder page is served while it is missing. */
  rendererDir?: string;
  /** Default: 32 random bytes, hex. */
  token?: string;
}

export interface WebBridge {
  port: number;
  token: string;
  /** What to open: http://127.0.0.1:PORT/?token=… */
  url: string;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const MAX_MESSAGE = 1024 * 1024;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
};

const PLACEHOLDER = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DriveTwin</title></head>
<body><h1>DriveTwin</h1>
<p>The bridge is running, but the renderer is not built yet (no dist/renderer/index.html).
Build it, then reload this page.</p></body></html>
`;

function tokenMatches(given: string | null | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(header: string | undefined, name: string): string | null {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

export async function startWebBridge(options: WebBridgeOptions): Promise<WebBridge> {
  const token = options.token ?? randomBytes(32).toString('hex');
  const rendererDir = path.resolve(options.rendererDir ?? path.join(__dirname, '..', 'renderer'));
  let port = 0;
  const origins = (): string[] => [`http://${HOST}:${port}`, `http://localhost:${port}`];
  const hosts = (): string[] => [`${HOST}:${port}`, `localhost:${port}`];
  const cookieName = (): string => `drivetwin_${port}`;

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
  const refusal = (req: http.IncomingMessage, url: URL): [number, string] | null => {
    if (!hosts().includes(req.headers.host ?? '')) return [421, 'wrong Host'];
    const origin = req.headers.origin;
    if (origin !== undefined && !origins().includes(origin)) return [403, 'wrong Origin'];
    const given = url.searchParams.get('token') ?? cookieValue(req.headers.cookie, cookieName());
    if (!tokenMatches(given, token)) return [401, 'a valid token is needed'];
    return null;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    const refused = refusal(req, url);
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
    const headers: Record<string, string> = { ...securityHeaders() };
    if (url.searchParams.has('token')) {
      headers['Set-Cookie'] = `${cookieName()}=${token}; HttpOnly; SameSite=Strict; Path=/`;
    }
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
  const clients = new Set<WebSocket>();

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    const refused =
      url.pathname === BRIDGE_PATH ? refusal(req, url) : ([404, 'no such path'] as const);
    if (refused && refused[0] !== 401) {
      // Not our page, or not our host: no WebSocket at all.
      socket.end(`HTTP/1.1 ${refused[0]} ${refused[1]}\r\nConnection: close\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      // A browser can't read a refused upgrade's status; a close code it can show.
      if (refused) {
        ws.close(BRIDGE_CLOSE_UNAUTHORIZED, 'a valid token is needed');
        return;
      }
      serve(ws);
      send(ws, { t: 'ready' });
    });
  });

  const serve = (ws: WebSocket): void => {
    clients.add(ws);
    ws.on('close', () => clients.delete(ws));
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => {
      void answer(ws, isBinary ? null : data.toString());
    });
  };

  const send = (ws: WebSocket, message: BridgeServerMessage): void => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
  };

  const answer = async (ws: WebSocket, text: string | null): Promise<void> => {
    let message: Partial<BridgeClientMessage>;
    try {
      message = JSON.parse(text ?? '') as Partial<BridgeClientMessage>;
    } catch {
      ws.close(1003, 'JSON text messages only');
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
    for (const ws of clients) if (ws.readyState === ws.OPEN) ws.send(text);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, HOST, () => resolve());
  });
  port = (server.address() as AddressInfo).port;

  return {
    port,
    token,
    url: `http://${HOST}:${port}/?token=${token}`,
    close: async () => {
      unsubscribe();
      for (const ws of clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The file to serve for `pathname`: null for the placeholder, 'forbidden' outside the root. */
function resolveFile(root: string, pathname: string): string | null | 'forbidden' {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return 'forbidden';
  }
  if (decoded.includes('\0')) return 'forbidden';
  const index = path.join(root, 'index.html');
  const wanted = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
  if (wanted !== root && !wanted.startsWith(root + path.sep)) return 'forbidden';
  const isFile = (p: string): boolean => {
    try {
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (isFile(wanted)) return wanted;
  // An app route (no extension) gets the app; a missing asset is missing.
  if (path.extname(decoded) === '' && isFile(index)) return index;
  if (!isFile(index)) return path.extname(decoded) === '' ? null : 'forbidden';
  return 'forbidden';
}
