// A file server on 127.0.0.1 (Node's own http and https, a certificate made for the test
// with openssl) that misbehaves on demand: it drops connections every N bytes, stalls,
// ignores Range, answers with a chosen status, redirects, and changes a file (a new ETag).
// It counts every byte it sends, so a test can say what a download cost.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

export interface Misbehaviour {
  /** Ignore Range and If-Range: always the whole file, 200. */
  ignoreRange?: boolean;
  /** Cut the connection after this many bytes of a response… */
  dropEvery?: number;
  /** …this many times at most (then behave). */
  drops?: number;
  /** Send nothing more, after this many bytes of a response, for `stallMs` (once). */
  stallAfter?: number;
  stallMs?: number;
  /** No ETag and no Last-Modified. */
  noValidators?: boolean;
  /** No Content-Length (chunked). */
  noLength?: boolean;
  /** Bytes per second at most, per response. */
  rate?: number;
}

export interface Served {
  method: string;
  path: string;
  range: string | null;
  ifRange: string | null;
  status: number;
}

export interface TestServer {
  /** `https://127.0.0.1:PORT/name` (or http://). */
  url(name: string): string;
  /** Serve `file` at /name (replacing a file there makes a new version: a new ETag). */
  serve(name: string, file: string): void;
  /** /name answers as a file again (after fail). */
  heal(name: string): void;
  /** /from answers `status` with Location `to` (a URL or a path). */
  redirect(from: string, to: string, status?: number): void;
  /** /name answers `status`, with no file. */
  fail(name: string, status: number): void;
  misbehave(how: Misbehaviour): void;
  /** Cuts every open connection now. */
  cut(): void;
  /** Body bytes sent, over every response. */
  readonly bytesSent: number;
  readonly requests: Served[];
  /** The certificate to trust (NODE_EXTRA_CA_CERTS), for an https server. */
  readonly certificate: string | null;
  close(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1, made in `dir`. */
export function testCertificate(dir: string): { key: string; cert: string } {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { key, cert };
}

export async function startServer(
  opts: { tls?: { key: string; cert: string } } = {},
): Promise<TestServer> {
  const files = new Map<string, { file: string; version: number }>();
  const redirects = new Map<string, { to: string; status: number }>();
  const failures = new Map<string, number>();
  const requests: Served[] = [];
  const sockets = new Set<net.Socket>();
  let how: Misbehaviour = {};
  let dropped = 0;
  let stalled = false;
  let sent = 0;
  let versions = 0;

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const record = (status: number): void => {
      requests.push({
        method: req.method ?? 'GET',
        path: name,
        range: req.headers.range ?? null,
        ifRange: (req.headers['if-range'] as string | undefined) ?? null,
        status,
      });
    };
    const redirect = redirects.get(name);
    if (redirect) {
      record(redirect.status);
      res.writeHead(redirect.status, { Location: redirect.to, 'Content-Length': 0 }).end();
      return;
    }
    const failure = failures.get(name);
    const served = files.get(name);
    if (failure !== undefined || !served) {
      const status = failure ?? 404;
      record(status);
      res.writeHead(status, { 'Content-Type': 'text/plain' }).end(`status ${status}\n`);
      return;
    }
    const size = fs.statSync(served.file).size;
    const etag = `"v${served.version}-${size}"`;
    const lastModified = new Date(Date.UTC(2026, 0, 1, 0, 0, served.version)).toUTCString();
    const headers: http.OutgoingHttpHeaders = { 'Content-Type': 'application/octet-stream' };
    if (!how.noValidators) Object.assign(headers, { ETag: etag, 'Last-Modified': lastModified });
    let start = 0;
    let end = size;
    let status = 200;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'] as string | undefined;
    const current = ifRange === undefined || ifRange === etag || ifRange === lastModified;
    if (range && !how.ignoreRange && current) {
      start = range[1] === '' ? Math.max(0, size - Number(range[2])) : Number(range[1]);
      end = range[1] !== '' && range[2] !== '' ? Math.min(size, Number(range[2]) + 1) : size;
      if (start >= size) {
        record(416);
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end - 1}/${size}`;
    }
    if (!how.ignoreRange) headers['Accept-Ranges'] = 'bytes';
    if (!how.noLength) headers['Content-Length'] = end - start;
    record(status);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return void res.end();
    void send(res, served.file, start, end);
  };

  async function send(res: http.ServerResponse, file: string, start: number, end: number) {
    const fd = await fs.promises.open(file, 'r');
    const chunk = Buffer.alloc(64 * 1024);
    let inResponse = 0;
    const began = Date.now();
    try {
      for (let at = start; at < end && !res.destroyed;) {
        const n = Math.min(chunk.length, end - at);
        await fd.read(chunk, 0, n, at);
        let piece = chunk.subarray(0, n);
        if (how.dropEvery && dropped < (how.drops ?? Infinity)) {
          const left = how.dropEvery - inResponse;
          if (left <= 0) {
            dropped += 1;
            res.socket?.destroy();
            return;
          }
          piece = piece.subarray(0, Math.min(piece.length, left));
        }
        if (
          how.stallAfter !== undefined &&
          !stalled &&
          inResponse + piece.length > how.stallAfter
        ) {
          stalled = true;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(go, how.stallMs ?? 60_000);
            function go(): void {
              clearTimeout(timer);
              res.off('close', go);
              resolve();
            }
            res.on('close', go);
          });
          if (res.destroyed) return;
        }
        if (how.rate) {
          const due = began + ((inResponse + piece.length) * 1000) / how.rate;
          if (due > Date.now())
            await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
        }
        sent += piece.length;
        inResponse += piece.length;
        at += piece.length;
        if (!res.write(Buffer.from(piece)) && !res.destroyed) {
          await new Promise<void>((resolve) => {
            const go = (): void => {
              res.off('drain', go);
              res.off('close', go);
              resolve();
            };
            res.on('drain', go);
            res.on('close', go);
          });
        }
      }
      res.end();
    } finally {
      await fd.close();
    }
  }

  const server = opts.tls
    ? https.createServer(
        { key: fs.readFileSync(opts.tls.key), cert: fs.readFileSync(opts.tls.cert) },
        handler,
      )
    : http.createServer(handler);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  return {
    url: (name) => `${origin}/${name.replace(/^\//, '')}`,
    serve(name, file) {
      files.set(`/${name.replace(/^\//, '')}`, { file, version: ++versions });
    },
    redirect(from, to, status = 302) {
      redirects.set(`/${from.replace(/^\//, '')}`, { to, status });
    },
    fail(name, status) {
      failures.set(`/${name.replace(/^\//, '')}`, status);
    },
    heal(name) {
      failures.delete(`/${name.replace(/^\//, '')}`);
    },
    misbehave(next) {
      how = next;
      dropped = 0;
      stalled = false;
    },
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    get bytesSent() {
      return sent;
    },
    requests,
    certificate: opts.tls?.cert ?? null,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An http proxy on 127.0.0.1 that tunnels CONNECT requests, noting each one. */
export async function startProxy(): Promise<{
  url: string;
  connects: string[];
  close(): Promise<void>;
}> {
  const connects: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => res.writeHead(405).end());
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket) => {
    connects.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const upstream = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(client);
      client.pipe(upstream);
    });
    const end = (): void => {
      upstream.destroy();
      client.destroy();
    };
    upstream.on('error', end);
    client.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    connects,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
