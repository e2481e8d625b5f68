// The window on a busy machine: two busy-loop processes take both cores while an .xz
// image is copied onto a drive (a loop device) and into an .img.zst backup, with
// verify, through the engine host and the web bridge, in Chromium. The page hears
// progress at least every 500 ms (plus scheduling), never says the connection is lost
// while the bridge is alive, and the finished screen's counts come from how it ended.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { tempDir, writeRandomFile } from '../helpers/files';
import { attachLoop, requireRoot } from '../helpers/loop';
import {
  assertNoPageErrors,
  driveRow,
  openApp,
  plannedIntent,
  requireBrowser,
  setUpCopy,
  shownCounts,
  startBridge,
  until,
} from './harness';

const MIB = 1024 * 1024;

/** Records, in the page, when each bridge message arrives and what it was. */
const RECORDER = `(() => {
  const arrivals = [];
  window.__arrivals = arrivals;
  window.__long = [];
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push([Math.round(e.startTime), Math.round(e.duration)]); }).observe({ entryTypes: ['longtask'] });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        let m = null;
        try { m = JSON.parse(ev.data); } catch { return; }
        arrivals.push({ wall: Date.now(), at: performance.now(), t: m.t, event: m.event ?? null,
          type: m.payload?.type ?? null, phase: m.payload?.phase ?? null });
      });
    }
  };
})();`;

interface Arrival {
  at: number;
  t: string;
  event: string | null;
  phase: string | null;
}

/** A 1 GiB image of a repeating 4 KiB pattern, xz-compressed on two threads (many blocks). */
function makeXz(dir: string): string {
  const img = path.join(dir, 'src.img');
  const pattern = Buffer.alloc(4096);
  for (let i = 0; i < pattern.length; i += 4) pattern.writeUInt32LE((i * 2654435761) >>> 0, i);
  const chunk = Buffer.concat(Array.from({ length: 64 * 256 }, () => pattern));
  const fd = fs.openSync(img, 'w');
  for (let i = 0; i < 16; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  execFileSync('sh', ['-c', `xz -T2 -0 -c ${img} > ${img}.xz`]);
  fs.rmSync(img);
  return `${img}.xz`;
}

test('two busy loops on both cores: .xz → drive + .img.zst in the window — progress every 500 ms, no false "lost", the end counted from done', async (t) => {
  if (!requireBrowser(t) || !requireRoot(t)) return;
  const tmp = tempDir('drivetwin-e2e-load-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  const source = makeXz(tmp.dir);
  fs.writeFileSync(file('drive.img'), '');
  fs.truncateSync(file('drive.img'), 1024 * MIB);
  const loop = attachLoop(file('drive.img'));
  t.after(() => loop.detach());

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge, { init: RECORDER });
  const { page } = app;
  const lost: string[] = [];
  await page.exposeFunction('__sawConnection', (state: string) => lost.push(state));
  await page.evaluate(
    'window.driveTwin.onConnection((s) => { if (s.state !== "connected") window.__sawConnection(s.state + ":" + s.reason); })',
  );

  await page.locator('#source-image-path').fill(source);
  await page.locator('#source-image-path').press('Enter');
  await until('the source to be chosen', () =>
    driveRow(page, 'source', source).locator('input').isChecked(),
  );
  const row = driveRow(page, 'target', loop.path);
  await row.waitFor({ timeout: 20_000 });
  await row.locator('input').check();
  await page.locator('#target-image-path').fill(file('backup.img.zst'));
  await page.locator('#target-image-path').press('Enter');
  await until('the backup to be chosen', () =>
    driveRow(page, 'target', file('backup.img.zst')).locator('input').isChecked(),
  );
  await page.getByTestId('copy-button').click();
  assert.equal(await plannedIntent(page), 'new');

  // The load, named: two processes spinning on the two cores, from now to the end.
  const burners = [0, 1].map(() =>
    spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }),
  );
  t.after(() => burners.forEach((b) => b.kill('SIGKILL')));
  await page.getByTestId('start-button').click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 240_000 });
  burners.forEach((b) => b.kill('SIGKILL'));

  const arrivals = (await page.evaluate('window.__arrivals')) as Arrival[];
  const job = arrivals.filter((a) => a.t === 'event' && a.event !== 'drives-changed');
  const first = job.findIndex((a) => a.event === 'progress' || a.event === 'verify-progress');
  const last = job.findIndex((a) => a.event === 'done');
  assert.ok(first >= 0 && last > first, 'progress, then done, reached the page');
  let worst = 0;
  let at = 0;
  for (let i = first + 1; i <= last; i++) {
    const gap = job[i].at - job[i - 1].at;
    if (gap > worst) [worst, at] = [gap, job[i - 1].at - job[first].at];
  }
  const heard = arrivals.filter((a) => a.t === 'alive' || a.t === 'event');
  let silent = 0;
  for (let i = 1; i < heard.length; i++) silent = Math.max(silent, heard[i].at - heard[i - 1].at);
  t.diagnostic(
    `${last - first + 1} job events in ${Math.round(job[last].at - job[first].at)} ms; the longest gap ` +
      `${Math.round(worst)} ms (at ${Math.round(at)} ms); the longest silence ${Math.round(silent)} ms; ` +
      `connection: ${lost.join(', ') || 'never lost'}`,
  );
  fs.writeFileSync('/tmp/dt-trace-bridge.txt', bridge.output());
  fs.writeFileSync('/tmp/dt-trace-page.json', JSON.stringify(arrivals));
  fs.writeFileSync('/tmp/dt-trace-long.json', JSON.stringify(await page.evaluate('window.__long')));
  assert.deepEqual(lost, [], 'the connection was never said to be lost');
  assert.ok(worst <= 650, `${Math.round(worst)} ms without a job event in the page`);

  // The end: how it ended, counted from it.
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.equal(await done.getAttribute('data-verify'), 'verified');
  const counts = await shownCounts(page);
  assert.ok(counts, 'the counts are shown');
  assert.equal(counts.copied, counts.total, `all copied: ${JSON.stringify(counts)}`);
  assert.equal(counts.written + counts.inFlight + counts.notYet, 0, JSON.stringify(counts));
  assertNoPageErrors(app);
});

test('progress missed (as across a lost connection): the finished screen counts from how the copy ended', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-missed-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 64 * MIB, 71);
  // After the first few, the page hears no progress and no map changes: only the end.
  const DEAF = `(() => {
    const Native = window.WebSocket;
    let heard = 0;
    window.WebSocket = class extends Native {
      set onmessage(f) {
        super.onmessage = (ev) => {
          const m = JSON.parse(ev.data);
          if (m.t === 'event' && (m.event === 'progress' || m.event === 'region-map') && ++heard > 6) return;
          f(ev);
        };
      }
      get onmessage() { return super.onmessage; }
    };
  })();`;
  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge, { init: DEAF });
  const { page } = app;
  await setUpCopy(page, file('disk.img'), [file('copy.img')], { verify: true, maxRateMiB: 32 });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-verify'), 'verified');
  const counts = await shownCounts(page);
  t.diagnostic(`the counts at the end: ${JSON.stringify(counts)}`);
  assert.ok(counts);
  assert.equal(counts.copied, counts.total, 'all copied, as the done event says');
  assert.equal(counts.written + counts.inFlight + counts.notYet, 0);
  assert.equal(counts.total, 64);
  assertNoPageErrors(app);
});
