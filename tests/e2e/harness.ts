// The real thing, end to end: `node dist/main/web.js` (the web bridge over the real
// engine, with its own job database) and Debian's Chromium driven by playwright-core,
// showing the built renderer (dist/renderer). Every request the page makes is
// recorded, so a test can prove the page talked to nothing but the bridge.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { ENGINE_ONLY } from '../helpers/engine-words';

export const CHROMIUM = process.env.DRIVETWIN_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (
      fs.existsSync(path.join(dir, 'package.json')) &&
      fs.existsSync(path.join(dir, 'renderer'))
    ) {
      return dir;
    }
  }
  throw new Error(`the repository root is not above ${__dirname}`);
}

export const ROOT = repoRoot();
export const SCREENSHOTS = path.join(ROOT, 'docs', 'screenshots');
const WEB = path.join(ROOT, 'dist', 'main', 'web.js');
const RENDERER = path.join(ROOT, 'dist', 'renderer', 'index.html');

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Skips (or fails under CI=true) when there is no browser or no built renderer. */
export function requireBrowser(t: TestContext): boolean {
  let why: string | null = null;
  if (!fs.existsSync(CHROMIUM)) why = `no Chromium at ${CHROMIUM}`;
  else if (!fs.existsSync(RENDERER)) why = `the renderer is not built (${RENDERER}): npm run build`;
  else if (!fs.existsSync(WEB)) why = `the web bridge is not built (${WEB}): npm run build`;
  if (why === null) return true;
  if (process.env.CI === 'true') throw new Error(`CI requires the end-to-end set-up: ${why}`);
  t.skip(why);
  return false;
}

export interface Bridge {
  /** What `web.js` printed: http://127.0.0.1:PORT/#token=… */
  url: string;
  origin: string;
  port: number;
  dbPath: string;
  /** Everything web.js wrote (for failure messages). */
  output(): string;
  stop(): Promise<void>;
  /** SIGKILL: gone at once, nothing cleaned up (its engine sees its link close). */
  kill(): Promise<void>;
}

/**
 * Starts `node dist/main/web.js` with its own job database in `dir`; on `port` (it keeps
 * the token it saved in `dir` last time: a page left open reconnects by itself).
 */
export async function startBridge(
  t: TestContext,
  dir: string,
  opts: { port?: number; home?: string } = {},
): Promise<Bridge> {
  const dbPath = path.join(dir, 'jobs.db');
  const child: ChildProcess = spawn(process.execPath, [WEB, '--port', String(opts.port ?? 0)], {
    // HOME: where the browser's file dialog starts.
    env: { ...process.env, DRIVETWIN_DB: dbPath, ...(opts.home ? { HOME: opts.home } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (output += s));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`web.js printed no URL:\n${output}`)), 20_000);
    const look = (): void => {
      const m = /DriveTwin is at (http:\/\/127\.0\.0\.1:\d+\/#token=[0-9a-f]+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout?.on('data', look);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`web.js exited (${code}):\n${output}`));
    });
  });
  const parsed = new URL(url);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(killer);
  };
  const kill = async (): Promise<void> => {
    stopped = true;
    child.kill('SIGKILL');
    await exited;
  };
  t.after(stop);
  return {
    url,
    origin: parsed.origin,
    port: Number(parsed.port),
    dbPath,
    output: () => output,
    stop,
    kill,
  };
}

export interface App {
  page: Page;
  context: BrowserContext;
  /** Every URL the page requested (documents, scripts, styles, the WebSocket…). */
  requests: string[];
  /** URL → why it failed (Chromium says 'csp' when the CSP stopped it), for requests that failed. */
  failures: Map<string, string>;
  /** Uncaught exceptions and console errors in the page. */
  pageErrors: string[];
  close(): Promise<void>;
}

/** Chromium with a fresh profile, on the bridge's URL, once the renderer is up. */
export async function openApp(
  t: TestContext,
  bridge: Bridge,
  opts: {
    colorScheme?: 'light' | 'dark';
    width?: number;
    height?: number;
    /** Script run in the page before its own (a spy on a browser API). */
    init?: string;
  } = {},
): Promise<App> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: opts.width ?? 1100, height: opts.height ?? 900 },
    colorScheme: opts.colorScheme ?? 'light',
    reducedMotion: 'reduce',
    acceptDownloads: true,
    locale: 'en-US',
  });
  const requests: string[] = [];
  const failures = new Map<string, string>();
  const pageErrors: string[] = [];
  context.on('request', (r) => requests.push(r.url()));
  context.on('requestfailed', (r) => failures.set(r.url(), r.failure()?.errorText ?? 'failed'));
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('websocket', (ws) => requests.push(ws.url()));
  page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
  });
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    // What the page looked like at the end, for when a test failed.
    await page
      .screenshot({ path: path.join(os.tmpdir(), 'drivetwin-e2e-last.png'), fullPage: true })
      .catch(() => undefined);
    await context.close().catch(() => undefined);
    fs.rmSync(profile, { recursive: true, force: true });
  };
  t.after(close);
  if (opts.init) await context.addInitScript(opts.init);
  await page.goto(bridge.url);
  await page.getByRole('button', { name: 'New copy' }).waitFor({ timeout: 20_000 });
  return { page, context, requests, failures, pageErrors, close };
}

/**
 * docs/screenshots/NAME.png: the window as the user sees it, scrolled to `at` (else to
 * the top), or the whole page.
 */
export async function screenshot(
  page: Page,
  name: string,
  opts: { at?: Locator; fullPage?: boolean } = {},
): Promise<void> {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  if (opts.at) await opts.at.evaluate((el) => el.scrollIntoView({ block: 'start' }));
  else if (!opts.fullPage) await page.evaluate('window.scrollTo(0, 0)');
  // Let canvases finish their frame.
  await page.evaluate('new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))');
  await page.screenshot({
    path: path.join(SCREENSHOTS, `${name}.png`),
    fullPage: opts.fullPage ?? false,
  });
}

/**
 * Every request the page made went to the bridge (http and ws on its host and port).
 * `blockedByCsp`: requests elsewhere are allowed when the browser's CSP stopped them
 * before they left (the test injected them on purpose).
 */
export function assertOnlyBridge(
  app: App,
  bridge: Bridge,
  opts: { blockedByCsp?: boolean } = {},
): void {
  assert.ok(app.requests.length > 0, 'requests were recorded');
  const allowed = [bridge.origin, `ws://127.0.0.1:${bridge.port}`];
  const foreign = app.requests.filter(
    (u) =>
      !allowed.some((a) => u === a || u.startsWith(`${a}/`)) &&
      !(opts.blockedByCsp && app.failures.get(u) === 'csp'),
  );
  assert.deepEqual(foreign, [], 'the page requested nothing but the bridge');
}

/** No uncaught errors in the page (404s and refused calls the test caused are its business). */
export function assertNoPageErrors(app: App, allowed: RegExp[] = []): void {
  const unexpected = app.pageErrors.filter((e) => !allowed.some((a) => a.test(e)));
  assert.deepEqual(unexpected, [], 'no errors in the page');
}

/** The drive row (source or target list) for `devicePath`. */
export function driveRow(page: Page, list: 'source' | 'target', devicePath: string) {
  const within =
    list === 'source' ? '[data-testid="source-picker"]' : '[data-testid="target-list"]';
  return page.locator(`${within} label.drive[data-path="${devicePath}"]`);
}

/** Bytes done as the progress view shows them. */
export async function bytesDone(page: Page): Promise<number> {
  const v = await page.getByTestId('progress').getAttribute('data-bytes-done');
  return Number(v ?? 0);
}

/** The measured rate (bytes/s) from what the page shows over `ms`. */
export async function measuredRate(page: Page, ms: number): Promise<number> {
  const a = await bytesDone(page);
  const t0 = performance.now();
  await sleep(ms);
  const b = await bytesDone(page);
  return (b - a) / ((performance.now() - t0) / 1000);
}

/** Polls `fn` until it returns true. */
export async function until(
  what: string,
  fn: () => Promise<boolean>,
  timeoutMs = 30_000,
  everyMs = 100,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * The confirmation dialog once the engine's plan is in (its title and button say what
 * will happen): the planned intent, or `refused: <why>` when the engine refused the plan.
 */
export async function plannedIntent(page: Page): Promise<string> {
  const dialog = page.getByTestId('confirm-dialog');
  const content = dialog.locator('[data-intent]');
  await until(
    'the plan in the confirmation',
    async () =>
      (await content.getAttribute('data-intent')) !== '' ||
      (await dialog.getByTestId('plan-error').count()) > 0,
  );
  const intent = (await content.getAttribute('data-intent')) ?? '';
  return intent !== '' ? intent : `refused: ${await dialog.getByTestId('plan-error').innerText()}`;
}

export interface ShownCounts {
  copied: number;
  written: number;
  inFlight: number;
  notYet: number;
  total: number;
  /**
   * Bytes done and total, and the time left, as the progress view shows them at the same
   * instant (NaN and '' once the job ended: the done summary replaces it).
   */
  bytesDone: number;
  bytesTotal: number;
  timeLeft: string;
  phase: string;
}

/**
 * The region counts as the page shows them (the text of the map's legend), read at one
 * instant; NaN where none is shown (no progress yet).
 */
export async function shownCounts(page: Page): Promise<ShownCounts | null> {
  // A string: the page's code, not this file's (no DOM types here).
  return (await page.evaluate(`(() => {
    const legend = document.querySelector('[data-testid="region-map"]');
    const progress = document.querySelector('[data-testid="progress"]');
    const view = document.querySelector('[data-testid="job-view"]');
    if (!legend || !view) return null;
    const n = (name) => {
      const text = (legend.querySelector('[data-count="' + name + '"] strong')?.textContent ?? '').trim();
      return text === '' || text === '—' ? NaN : Number(text.replace(/,/g, ''));
    };
    return {
      copied: n('copied'),
      written: n('written'),
      inFlight: n('in-flight'),
      notYet: n('not-yet'),
      total: n('total'),
      bytesDone: progress ? Number(progress.getAttribute('data-bytes-done')) : NaN,
      bytesTotal: progress ? Number(progress.getAttribute('data-bytes-total')) : NaN,
      timeLeft: (progress?.querySelector('[data-testid="time-left"]')?.textContent ?? '').trim(),
      phase: view.getAttribute('data-phase') ?? '',
    };
  })()`)) as ShownCounts | null;
}

/** Chooses `source` and `targets` (image files, typed), sets the options, opens the confirmation. */
export async function setUpCopy(
  page: Page,
  source: string,
  targets: string[],
  opts: {
    verify?: boolean;
    maxRateMiB?: number;
    ignoreErrors?: boolean;
    usedOnly?: boolean;
    useNow?: boolean;
  } = {},
): Promise<void> {
  await page.getByRole('button', { name: 'New copy', exact: true }).first().click();
  // A source already chosen is folded to one line: unfold the list to type another.
  const change = page.getByTestId('change-source');
  if ((await change.count()) > 0) await change.click();
  await page.locator('#source-image-path').fill(source);
  await page.locator('#source-image-path').press('Enter');
  await until('the source to be chosen', () =>
    driveRow(page, 'source', source).locator('input').isChecked(),
  );
  for (const target of targets) {
    await page.locator('#target-image-path').fill(target);
    await page.locator('#target-image-path').press('Enter');
    await until(`${target} to be chosen`, () =>
      driveRow(page, 'target', target).locator('input').isChecked(),
    );
  }
  const options = page.getByTestId('options');
  if ((await options.getAttribute('open')) === null) await options.locator('summary').click();
  if (opts.verify !== undefined) await page.locator('#opt-verify').setChecked(opts.verify);
  if (opts.ignoreErrors !== undefined) {
    await page.locator('#opt-ignore').setChecked(opts.ignoreErrors);
  }
  if (opts.maxRateMiB !== undefined) await page.locator('#opt-rate').fill(`${opts.maxRateMiB}`);
  if (opts.usedOnly !== undefined) await page.locator('#opt-used-only').setChecked(opts.usedOnly);
  if (opts.useNow !== undefined) await page.locator('#opt-use-now').setChecked(opts.useNow);
  await page.getByTestId('copy-button').click();
}

/**
 * The page's words, as a user reads them (everything on screen but what is folded under
 * a Details disclosure), hold no error code, byte offset or command-line flag.
 */
export async function assertPlainWords(page: Page, what = 'the page'): Promise<void> {
  // A string: the page's code, not this file's (no DOM types here).
  const shown = (await page.evaluate(`(() => {
    const copy = document.body.cloneNode(true);
    for (const d of copy.querySelectorAll('details')) {
      for (const child of [...d.childNodes]) if (child.nodeName !== 'SUMMARY') child.remove();
    }
    for (const s of copy.querySelectorAll('script, style, [hidden]')) s.remove();
    return copy.textContent ?? '';
  })()`)) as string;
  for (const [name, pattern] of ENGINE_ONLY) {
    const m = pattern.exec(shown);
    assert.equal(
      m,
      null,
      `${name} on ${what}: …${m ? shown.slice(Math.max(0, m.index - 80), m.index + 80) : ''}…`,
    );
  }
}
