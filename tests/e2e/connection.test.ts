// The page and the bridge, when things go wrong: the bridge killed in the middle of a
// copy (said within 2 s, reconnected by itself, the copy resumed to a byte-identical
// end), and the token kept from every other server on 127.0.0.1 the same browser
// visits (it travels in the URL's #fragment and on the bridge's own WebSocket only).

import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { test } from 'node:test';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import {
  assertNoPageErrors,
  bytesDone,
  openApp,
  plannedIntent,
  requireBrowser,
  screenshot,
  setUpCopy,
  sleep,
  startBridge,
  until,
} from './harness';

const MIB = 1024 * 1024;

test('the bridge killed mid-copy: the page says so within 2 s, reconnects when it is back, and the copy resumes to a byte-identical end', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-lost-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 128 * MIB, 51);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await setUpCopy(page, file('disk.img'), [file('copy.img')], { verify: false, maxRateMiB: 16 });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  await until('some of the copy done', async () => (await bytesDone(page)) >= 24 * MIB, 30_000);
  const before = await bytesDone(page);

  // Killed: no goodbye on the socket, the engine sees its link close.
  const killedAt = Date.now();
  await bridge.kill();
  const banner = page.getByTestId('connection-lost');
  await banner.waitFor({ timeout: 5000 });
  const saidAfter = Date.now() - killedAt;
  t.diagnostic(`the banner after ${saidAfter} ms: ${await banner.innerText()}`);
  assert.ok(saidAfter <= 2000, `the loss is said within 2 s (${saidAfter} ms)`);
  assert.match(await banner.innerText(), /Lost the connection to DriveTwin/);
  assert.match(await page.title(), /^Connection lost/);
  // The last known state stays, marked as such; no rate or time left is made up.
  assert.equal(await page.getByTestId('progress').getAttribute('data-stale'), 'true');
  assert.ok((await bytesDone(page)) >= before, 'the last known progress is kept');
  assert.equal((await page.getByTestId('rate-now').innerText()).trim(), '—');
  await screenshot(page, '15-connection-lost');

  // Back on the same address (same port, the token it saved): the page reconnects alone.
  await sleep(1000);
  await startBridge(t, tmp.dir, { port: bridge.port });
  await until('the page to reconnect', async () => (await banner.count()) === 0, 20_000);
  assert.doesNotMatch(await page.title(), /Connection lost/);

  // The copy stopped with the bridge; what it copied is kept, and Resume finishes it.
  const unheard = page.getByTestId('unheard-end');
  await unheard.waitFor({ timeout: 20_000 });
  t.diagnostic(`after reconnecting: ${await unheard.innerText()}`);
  // copy.img is an image file the page still lists after the restart (picked images are
  // kept): resuming it asks nothing.
  await unheard.getByRole('button', { name: 'Resume' }).click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.equal(sha256(file('copy.img')), sha256(file('disk.img')), 'byte-identical');
  assertNoPageErrors(app, [/WebSocket/, /ERR_CONNECTION_REFUSED/]);
});

test('the page stalled for 3 s (its own work, the bridge alive): no "lost", and no event is missed', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-stall-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 192 * MIB, 52);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;
  const states: string[] = [];
  await page.exposeFunction('__sawConnection', (s: string) => states.push(s));
  await page.evaluate('window.driveTwin.onConnection((s) => window.__sawConnection(s.state))');

  await setUpCopy(page, file('disk.img'), [file('copy.img')], { verify: false, maxRateMiB: 16 });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  await until('some of the copy done', async () => (await bytesDone(page)) >= 8 * MIB, 30_000);
  const before = await bytesDone(page);
  // The page's own thread busy for 3 s: messages queue up behind it, timers are late.
  await page.evaluate(
    '(() => { const end = performance.now() + 3000; while (performance.now() < end); })()',
  );
  await sleep(500);
  const after = await bytesDone(page);
  t.diagnostic(
    `connection states after the start: ${states.slice(1).join(', ') || 'none'}; ${before} → ${after} bytes`,
  );
  assert.deepEqual(states.slice(1), [], 'never said lost: the bridge was there all along');
  assert.ok(after >= before + 40 * MIB, 'the progress heard during the stall is shown');
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.equal(sha256(file('copy.img')), sha256(file('disk.img')));
  assertNoPageErrors(app);
});

test('another server on 127.0.0.1 visited by the same browser gets no token; a page without it is told what to do', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-token-');
  t.after(() => tmp.cleanup());

  // Any other local web server: it records everything the browser sends it.
  const seen: string[] = [];
  const other = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}\n${JSON.stringify(req.headers)}`);
    res.setHeader('content-type', 'text/html');
    res.end('<!doctype html><title>other</title><p>another local server</p>');
  });
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', () => resolve()));
  t.after(() => {
    other.closeAllConnections(); // the browser keeps its connections open
    return new Promise<void>((resolve) => other.close(() => resolve()));
  });
  const otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}/`;

  const bridge = await startBridge(t, tmp.dir);
  const token = new URL(bridge.url).hash.replace('#token=', '');
  assert.match(token, /^[0-9a-f]{64}$/);
  const app = await openApp(t, bridge);

  // The bridge's page is working (connected), then the same browser visits the other server,
  // in a new tab and from the bridge's own tab.
  const tab = await app.context.newPage();
  await tab.goto(otherUrl);
  await tab.goto(`${otherUrl}again`);
  await app.page.goto(`${otherUrl}from-the-app`);
  assert.ok(seen.length >= 3, `the other server was visited (${seen.length})`);
  for (const request of seen) assert.ok(!request.includes(token), `no token in:\n${request}`);
  const cookies = await app.context.cookies();
  t.diagnostic(`cookies in the browser: ${JSON.stringify(cookies)}`);
  assert.ok(!JSON.stringify(cookies).includes(token), 'no token in any cookie');

  // The bridge's address without the token: refused, and told exactly what to do.
  await tab.goto(`${bridge.origin}/`);
  const refused = tab.getByTestId('no-connection');
  await refused.waitFor({ timeout: 10_000 });
  assert.equal(await refused.getAttribute('data-reason'), 'no-token');
  assert.match(await refused.innerText(), /npm run web[\s\S]*#token=/);
  // A wrong token: refused too.
  await tab.goto(`${bridge.origin}/#token=${'0'.repeat(64)}`);
  await tab.reload();
  await until(
    'the wrong token refused',
    async () => (await refused.getAttribute('data-reason').catch(() => null)) === 'bad-token',
    10_000,
  );
});
