// The web bridge: pages and the WebSocket only with the token, only for our Host and
// Origin, pages with a strict CSP; and the browser client (renderer/bridge-client.ts)
// drives the real backend through it.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import WebSocket from 'ws';
import { startWebBridge, type WebBridge } from '../../main/web-bridge';
import { BRIDGE_CLOSE_UNAUTHORIZED } from '../../preload/api';
import {
  BridgeError,
  bridgeUrl,
  createBridgeClient,
  type SocketConstructor,
  tokenFromHash,
} from '../../renderer/bridge-client';
import { startBackend } from '../helpers/backend';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';

const MIB = 1024 * 1024;

async function setUp(t: TestContext, withRenderer: boolean) {
  const tmp = tempDir('drivetwin-backend-web-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  const rendererDir = file('renderer');
  if (withRenderer) {
    fs.mkdirSync(rendererDir);
    fs.writeFileSync(path.join(rendererDir, 'index.html'), '<!doctype html><title>app</title>');
    fs.writeFileSync(path.join(rendererDir, 'app.js'), 'console.log(1)');
  }
  fs.writeFileSync(file('secret.txt'), 'secret');
  const h = startBackend(t, { dbPath: file('jobs.db'), progressMs: 100 });
  const bridge = await startWebBridge({ backend: h.backend, rendererDir });
  t.after(() => bridge.close());
  return { ...h, bridge, file };
}

function get(
  bridge: WebBridge,
  pathAndQuery: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port: bridge.port, path: pathAndQuery, headers },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
  });
}

test('pages are served to our Host and Origin only, with a strict CSP, and never set a cookie', async (t) => {
  const { bridge } = await setUp(t, true);
  // The token is in the fragment: the browser never sends it, not even to this bridge.
  assert.match(
    bridge.url,
    new RegExp(`^http://127\\.0\\.0\\.1:${bridge.port}/#token=[0-9a-f]{64}$`),
  );

  const page = await get(bridge, '/');
  assert.equal(page.status, 200);
  assert.match(page.body, /<title>app<\/title>/);
  assert.equal(page.headers['set-cookie'], undefined, 'no cookie: cookies ignore ports');
  const csp = String(page.headers['content-security-policy']);
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, new RegExp(`connect-src 'self' ws://127\\.0\\.0\\.1:${bridge.port}`));
  assert.equal(page.headers['referrer-policy'], 'no-referrer');
  // An old-style ?token= sets nothing either.
  assert.equal((await get(bridge, `/?token=${bridge.token}`)).headers['set-cookie'], undefined);

  const asset = await get(bridge, '/app.js');
  assert.equal(asset.status, 200);
  assert.match(String(asset.headers['content-type']), /javascript/);
  assert.equal((await get(bridge, '/settings')).body, page.body);
  assert.equal((await get(bridge, '/%2e%2e/secret.txt')).status, 404);
  assert.equal((await get(bridge, '/..%2fsecret.txt')).status, 404);

  // DNS rebinding: our pages under another name are refused; so is another page's Origin.
  const rebound = await get(bridge, '/', { Host: `evil.example:${bridge.port}` });
  assert.equal(rebound.status, 421);
  const framed = await get(bridge, '/', { Origin: 'http://evil.example' });
  assert.equal(framed.status, 403);
});

test('the renderer is replaced by a placeholder page until it is built', async (t) => {
  const { bridge } = await setUp(t, false);
  const page = await get(bridge, '/');
  assert.equal(page.status, 200);
  assert.match(page.body, /renderer is not built yet/);
  assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
});

/** How a WebSocket ends when it sends `first` (or nothing) on opening. */
function wsFirst(
  url: string,
  first: string | null,
  origin?: string,
): Promise<{ close?: number; status?: number; heard: string[] }> {
  return new Promise((resolve) => {
    const heard: string[] = [];
    const ws = new WebSocket(url, origin ? { origin } : {});
    ws.on('open', () => first !== null && ws.send(first));
    ws.on('message', (m) => heard.push(String(m)));
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode, heard });
      ws.terminate();
    });
    ws.on('error', () => undefined);
    ws.on('close', (code) => resolve({ close: code, heard }));
  });
}

test('the WebSocket wants the token as its first message (4401 otherwise), our Origin and Host', async (t) => {
  const { bridge } = await setUp(t, false);
  const base = `ws://127.0.0.1:${bridge.port}/bridge`;
  const auth = (token: unknown): string => JSON.stringify({ t: 'auth', token });
  const call = JSON.stringify({ t: 'call', id: 1, method: 'listJobs', args: [] });
  for (const first of [null, call, auth('wrong'), auth(bridge.token.slice(0, -1)), auth(5)]) {
    const outcome = await wsFirst(base, first);
    assert.equal(outcome.close, BRIDGE_CLOSE_UNAUTHORIZED, String(first));
    assert.deepEqual(outcome.heard, [], 'nothing is said before the token');
  }
  // The token in the URL counts for nothing.
  assert.equal(
    (await wsFirst(`${base}?token=${bridge.token}`, call)).close,
    BRIDGE_CLOSE_UNAUTHORIZED,
  );
  assert.deepEqual(await wsFirst(base, auth(bridge.token), 'http://evil.example'), {
    status: 403,
    heard: [],
  });
  assert.equal((await wsFirst(`ws://localhost:${bridge.port}/elsewhere`, null)).status, 404);
  // Not JSON, or not a call, after the token: the connection is closed.
  const junk = await new Promise<number>((resolve) => {
    const ws = new WebSocket(base);
    ws.on('open', () => ws.send(auth(bridge.token)));
    ws.on('message', (m) => JSON.parse(String(m)).t === 'ready' && ws.send('{not json'));
    ws.on('close', (code) => resolve(code));
  });
  assert.equal(junk, 1003);

  const client = createBridgeClient({
    url: base,
    token: 'nope',
    WebSocket: WebSocket as unknown as SocketConstructor,
  });
  await assert.rejects(client.connected, /refused this page/);
  await assert.rejects(client.listJobs(), (e: BridgeError) => e.code === 'unavailable');
  const without = createBridgeClient({
    url: base,
    WebSocket: WebSocket as unknown as SocketConstructor,
  });
  await assert.rejects(without.connected, /without the token/);
});

test('the browser client drives the real backend over the bridge: calls, errors and events', async (t) => {
  const { bridge, file } = await setUp(t, false);
  const client = createBridgeClient({
    url: bridgeUrl({ protocol: 'http:', host: `127.0.0.1:${bridge.port}` }),
    token: tokenFromHash(new URL(bridge.url).hash),
    WebSocket: WebSocket as unknown as SocketConstructor,
  });
  t.after(() => client.close());
  await client.connected;

  const caps = await client.capabilities();
  assert.equal(caps.transport, 'web');
  assert.equal(caps.dialogs, false);
  assert.equal(await client.pickImageToOpen(), null, 'no dialog: the renderer shows a text field');
  writeRandomFile(file('src.img'), 8 * MIB, 41);
  const picked = await client.pickImageToOpen(file('src.img'));
  assert.equal(picked?.path, file('src.img'));
  assert.equal(picked?.verdicts.source.level, 'usable');
  assert.ok((await client.listDrives()).some((d) => d.path === file('src.img')));
  const toSave = await client.pickImageToSave(file('dst.img'));
  assert.equal(toSave?.kind, 'file');

  await assert.rejects(
    client.startClone({ source: file('src.img'), targets: [] }),
    (e: BridgeError) =>
      e instanceof BridgeError && e.code === 'invalid' && /request\.targets/.test(e.message),
  );

  const seen: string[] = [];
  const off = client.on('progress', () => seen.push('progress'));
  const done = new Promise((resolve) => client.on('done', resolve));
  const started = new Promise((resolve) => client.on('job-started', resolve));
  const { job } = await client.startClone({
    source: file('src.img'),
    targets: [{ path: file('dst.img') }],
    options: { maxRate: 16 * MIB },
  });
  assert.equal(((await started) as { job: number }).job, job);
  assert.equal(((await done) as { state: string }).state, 'done');
  assert.ok(seen.length > 0, 'progress events arrived');
  off();
  assert.equal(sha256(file('dst.img')), sha256(file('src.img')));
  const map = await client.exportMap(job, 'json');
  assert.equal(JSON.parse(map.text).regionsHydrated, 8);
});
