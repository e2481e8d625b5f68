// The renderer can reach nothing but window.driveTwin: no Node in the page, a strict
// CSP (meta tag and the bridge's header), and no request to any other origin — not
// even one injected into the page.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { CSP_META_POLICY } from '../../main/csp';
import { METHODS } from '../../preload/api';
import { tempDir } from '../helpers/files';
import {
  assertNoPageErrors,
  assertOnlyBridge,
  openApp,
  requireBrowser,
  startBridge,
} from './harness';

/**
 * Another origin that would answer: a server of the test's own on another loopback
 * address and port. It counts every request and WebSocket upgrade that reaches it.
 */
async function startElsewhere(t: { after(fn: () => unknown): void }): Promise<{
  origin: string;
  reached: string[];
}> {
  const reached: string[] = [];
  const server = http.createServer((req, res) => {
    reached.push(`${req.method} ${req.url}`);
    res.end('reached');
  });
  server.on('upgrade', (req, socket) => {
    reached.push(`upgrade ${req.url}`);
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return { origin: `http://127.0.0.2:${(server.address() as AddressInfo).port}`, reached };
}

interface Attempts {
  fetch: string;
  websocket: string;
  script: string;
  inlineScript: string;
  eval: string;
  image: string;
  violations: string[];
}

// Run in the page: every way out we can think of, and what the CSP said.
const attemptsFrom = (ELSEWHERE: string): string => `(async () => {
  const violations = [];
  document.addEventListener('securitypolicyviolation', (e) =>
    violations.push(e.effectiveDirective + ' ' + (e.blockedURI || 'inline')));
  const out = { violations };
  try { await fetch('${ELSEWHERE}/leak'); out.fetch = 'reached'; }
  catch (e) { out.fetch = 'blocked: ' + e.message; }
  out.websocket = await new Promise((resolve) => {
    try {
      const ws = new WebSocket('${ELSEWHERE.replace('http:', 'ws:')}/leak');
      ws.onopen = () => resolve('open');
      ws.onerror = () => resolve('blocked');
    } catch (e) { resolve('blocked: ' + e.message); }
  });
  out.script = await new Promise((resolve) => {
    const s = document.createElement('script');
    s.src = '${ELSEWHERE}/x.js';
    s.onload = () => resolve('loaded');
    s.onerror = () => resolve('blocked');
    document.head.append(s);
  });
  const inline = document.createElement('script');
  inline.textContent = 'window.__inlineRan = true';
  document.head.append(inline);
  out.inlineScript = window.__inlineRan ? 'ran' : 'blocked';
  try { eval('1 + 1'); out.eval = 'ran'; } catch (e) { out.eval = 'blocked: ' + e.name; }
  out.image = await new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve('loaded');
    img.onerror = () => resolve('blocked');
    img.src = '${ELSEWHERE}/pixel.png';
  });
  await new Promise((r) => setTimeout(r, 200));
  return out;
})()`;

test('the page has no Node, only window.driveTwin, a strict CSP, and talks to nothing but the bridge', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-sandbox-');
  t.after(() => tmp.cleanup());
  const bridge = await startBridge(t, tmp.dir);
  const { origin: ELSEWHERE, reached } = await startElsewhere(t);
  const app = await openApp(t, bridge);
  const { page } = app;

  // No Node.
  for (const name of ['require', 'process', 'module', 'exports', 'Buffer', 'global', '__dirname']) {
    assert.equal(await page.evaluate(`typeof ${name}`), 'undefined', `${name} in the page`);
  }
  // window.driveTwin is the contract: its methods, its local members (`on`,
  // `onConnection`, `pathOfFile`), and the bridge client's own two.
  const keys = (await page.evaluate('Object.keys(window.driveTwin).sort()')) as string[];
  const contract = [...METHODS, 'on', 'onConnection', 'pathOfFile'];
  assert.deepEqual(
    keys.filter((k) => !contract.includes(k)).sort(),
    ['close', 'connected'],
    'nothing but the contract (and the bridge connection)',
  );
  for (const m of contract) assert.ok(keys.includes(m), `window.driveTwin.${m}`);

  // The CSP: in the page (what Electron's file:// load has: main/csp.ts's policy, which
  // the build writes) and in the bridge's header.
  const meta = (await page.evaluate(
    `document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.content ?? ''`,
  )) as string;
  assert.equal(meta, CSP_META_POLICY);
  for (const directive of [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
  ]) {
    assert.ok(meta.includes(directive), `meta CSP has ${directive}: ${meta}`);
  }
  const response = await page.request.get(bridge.url);
  assert.match(response.headers()['content-security-policy'] ?? '', /default-src 'self'/);
  const scripts = (await page.evaluate(
    `[...document.scripts].map((s) => s.src ? 'src' : 'inline')`,
  )) as string[];
  assert.deepEqual([...new Set(scripts)], ['src'], 'no inline scripts');

  // Let the app settle (drives, jobs), then try every way out.
  await page.getByTestId('source-picker').waitFor();
  const before = [...app.requests];
  const attempts = (await page.evaluate(attemptsFrom(ELSEWHERE))) as Attempts;
  t.diagnostic(JSON.stringify(attempts));
  assert.match(attempts.fetch, /^blocked/);
  assert.match(attempts.websocket, /^blocked/);
  assert.equal(attempts.script, 'blocked');
  assert.equal(attempts.inlineScript, 'blocked');
  assert.match(attempts.eval, /^blocked: EvalError/);
  assert.equal(attempts.image, 'blocked');
  const violated = attempts.violations.join('\n');
  for (const directive of ['connect-src', 'script-src-elem', 'img-src']) {
    assert.match(violated, new RegExp(`^${directive} ${ELSEWHERE}`, 'm'), violated);
  }
  assert.match(violated, /^script-src-elem inline$/m, violated);
  assert.match(violated, /^script-src eval$/m, violated);

  // The script and image elements show up as requests, stopped by the CSP in the browser.
  for (const u of app.requests.slice(before.length).filter((r) => r.startsWith(ELSEWHERE))) {
    assert.equal(app.failures.get(u), 'csp', u);
  }
  assertOnlyBridge(app, bridge, { blockedByCsp: true });
  assert.deepEqual(reached, [], 'nothing reached the other origin');
  assertNoPageErrors(app, [
    /Content Security Policy/,
    /Refused to/,
    /127\.0\.0\.2/,
    /was not explicitly set/,
  ]);
});
