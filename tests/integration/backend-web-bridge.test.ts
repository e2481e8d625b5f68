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

/** How a WebSocket attempt ends: a close code, or the HTTP status that refused the upgrade. */
function wsOutcome(url: string, origin?: string): Promise<{ close?: number; status?: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, origin ? { origin } : {});
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode });
      ws.terminate();
    });
    ws.on('error', () => undefined);
    ws.on('close', (code) => resolve({ close: code }));
  });
}

test('pages need the token, our Host and our Origin, and come with a strict CSP', async (t) => {
  const { bridge } = await setUp(t, true);
  assert.match(
    bridge.url,
    new RegExp(`^http://127\\.0\\.0\\.1:${bridge.port}/\\?token=[0-9a-f]{64}$`),
  );

  assert.equal((await get(bridge, '/')).status, 401);
  assert.equal((await get(bridge, '/?token=nope')).status, 401);
  // One character off (a different one, whatever the token ends with).
  const offByOne = bridge.token.slice(0, -1) + (bridge.token.endsWith('0') ? '1' : '0');
  assert.equal((await get(bridge, `/?token=${offByOne}`)).status, 401);
  assert.equal((await get(bridge, '/app.js')).status, 401);

  const page = await get(bridge, `/?token=${bridge.token}`);
  assert.equal(page.status, 200);
  assert.match(page.body, /<title>app<\/title>/);
  const csp = String(page.headers['content-security-policy']);
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, new RegExp(`connect-src 'self' ws://127\\.0\\.0\\.1:${bridge.port}`));
  assert.equal(page.headers['referrer-policy'], 'no-referrer');
  const cookie = String(page.headers['set-cookie']).split(';')[0];
  assert.match(String(page.headers['set-cookie']), /HttpOnly; SameSite=Strict/);

  // The cookie stands for the token on the page's own requests.
  const asset = await get(bridge, '/app.js', { Cookie: cookie });
  assert.equal(asset.status, 200);
  assert.match(String(asset.headers['content-type']), /javascript/);
  assert.equal((await get(bridge, '/settings', { Cookie: cookie })).body, page.body);
  assert.equal((await get(bridge, '/%2e%2e/secret.txt', { Cookie: cookie })).status, 404);
  assert.equal((await get(bridge, '/..%2fsecret.txt', { Cookie: cookie })).status, 404);

  // DNS rebinding: the right token under another name is still refused.
  const rebound = await get(bridge, `/?token=${bridge.token}`, {
    Host: `evil.example:${bridge.port}`,
  });
  assert.equal(rebound.status, 421);
  const framed = await get(bridge, `/?token=${bridge.token}`, { Origin: 'http://evil.example' });
  assert.equal(framed.status, 403);
});

test('the renderer is replaced by a placeholder page until it is built', async (t) => {
  const { bridge } = await setUp(t, false);
  const page = await get(bridge, `/?token=${bridge.token}`);
  assert.equal(page.status, 200);
  assert.match(page.body, /renderer is not built yet/);
  assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
});

test('the WebSocket refuses a missing or wrong token (4401) and a wrong Origin or Host', async (t) => {
  const { bridge } = await setUp(t, false);
  const base = `ws://127.0.0.1:${bridge.port}/bridge`;
  assert.deepEqual(await wsOutcome(base), { close: BRIDGE_CLOSE_UNAUTHORIZED });
  assert.deepEqual(await wsOutcome(`${base}?token=wrong`), { close: BRIDGE_CLOSE_UNAUTHORIZED });
  assert.deepEqual(await wsOutcome(`${base}?token=${bridge.token}`, 'http://evil.example'), {
    status: 403,
  });
  assert.deepEqual(
    await wsOutcome(`ws://localhost:${bridge.port}/elsewhere?token=${bridge.token}`),
    {
      status: 404,
    },
  );
  // Not JSON, or not a call: the connection is closed.
  const junk = await new Promise<number>((resolve) => {
    const ws = new WebSocket(`${base}?token=${bridge.token}`);
    ws.on('open', () => ws.send('{not json'));
    ws.on('close', (code) => resolve(code));
  });
  assert.equal(junk, 1003);

  const client = createBridgeClient({
    url: `${base}?token=nope`,
    WebSocket: WebSocket as unknown as SocketConstructor,
  });
  await assert.rejects(client.connected, /refused this page/);
  await assert.rejects(client.listJobs(), (e: BridgeError) => e.code === 'unavailable');
});

test('the browser client drives the real backend over the bridge: calls, errors and events', async (t) => {
  const { bridge, file } = await setUp(t, false);
  const client = createBridgeClient({
    url: bridgeUrl({
      protocol: 'http:',
      host: `127.0.0.1:${bridge.port}`,
      search: '',
      hash: `#token=${bridge.token}`,
    }),
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
