// The window tells the truth about a job: what it shows is what the engine's events
// say, never something the page worked out. Real bridge, real engine, Chromium, image
// files (and a tiny full tmpfs for a target that fails):
// - the region counts add up to the total in every progress shown, and "Time left" is
//   never 0 s while bytes remain;
// - a copy cancelled with Verify on says it stopped before verifying;
// - the confirmation says what the engine will do (continue job N, update what differs),
//   and "Start over instead" makes a new job;
// - "Ignore read errors" is for one copy only;
// - a target that fails is named with its reason, and the job can finish without it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import type { JobSummary } from '../../preload/api';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import {
  assertNoPageErrors,
  assertPlainWords,
  assertOnlyBridge,
  openApp,
  plannedIntent,
  requireBrowser,
  screenshot,
  setUpCopy,
  shownCounts,
  sleep,
  startBridge,
  until,
  type ShownCounts,
} from './harness';

const MIB = 1024 * 1024;

async function heading(page: Page): Promise<string> {
  return page.locator('#job-heading').innerText();
}

test('the region counts shown add up in every progress; a cancel with Verify on says it stopped before verifying', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-counts-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 192 * MIB, 41);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  // A copy held at 16 MiB/s, so there is something to watch for a few seconds.
  await setUpCopy(page, file('disk.img'), [file('copy.img')], { verify: true, maxRateMiB: 16 });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  const view = page.getByTestId('job-view');
  await view.waitFor();

  // Read what the page shows, every 60 ms, for a few seconds of copying.
  const seen: ShownCounts[] = [];
  const end = Date.now() + 5000;
  while (Date.now() < end) {
    const c = await shownCounts(page);
    if (c && [c.copied, c.written, c.inFlight, c.notYet, c.total].every(Number.isFinite)) {
      seen.push(c);
    } else if (c) {
      // Before the first progress event: no count is shown at all.
      assert.ok([c.copied, c.written, c.inFlight, c.notYet].every(Number.isNaN), JSON.stringify(c));
    }
    await sleep(60);
  }
  const copying = seen.filter((c) => c.phase === 'copying');
  t.diagnostic(
    `${seen.length} readings, ${copying.length} while copying; e.g. ${JSON.stringify(seen[Math.floor(seen.length / 2)])}`,
  );
  assert.ok(copying.length >= 20, `the copy was watched (${copying.length} readings)`);
  for (const c of seen) {
    assert.equal(
      c.copied + c.written + c.inFlight + c.notYet,
      c.total,
      `the counts add up: ${JSON.stringify(c)}`,
    );
    assert.ok(c.notYet >= 0 && c.written >= 0 && c.inFlight >= 0, JSON.stringify(c));
    if (c.phase === 'copying' && c.bytesDone < c.bytesTotal) {
      assert.notEqual(c.timeLeft, '0 s', `no "0 s" with bytes to go: ${JSON.stringify(c)}`);
    }
  }
  assert.ok(
    copying.some((c) => c.written + c.inFlight > 0),
    'regions were seen written or in flight',
  );
  assert.ok(
    copying.some((c) => c.copied > 0 && c.notYet > 0),
    'and copied while some were still to copy',
  );
  await screenshot(page, '05-copying-counts', { at: page.getByTestId('region-map') });

  // Cancel with Verify on: it stopped before verifying (not "Verify was off").
  await view.getByRole('button', { name: 'Cancel', exact: true }).click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 30_000 });
  assert.equal(await done.getAttribute('data-state'), 'interrupted');
  assert.equal(await done.getAttribute('data-verify'), 'stopped');
  assert.match(await page.getByTestId('verify-result').innerText(), /^Stopped before verifying/);
  assert.doesNotMatch(await done.innerText(), /Verify was off|Verified/);
  const target = page.locator(
    `[data-testid="destination-results"] li[data-path="${file('copy.img')}"]`,
  );
  assert.equal(await target.getAttribute('data-state'), 'unfinished');
  assert.match(await target.innerText(), /not finished/);
  await screenshot(page, '09-stopped-before-verifying');

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});

test('the confirmation says what the engine will do: continue job N, update what differs, or start over as a new job', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-intent-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 96 * MIB, 42);
  writeRandomFile(file('copy.img'), 96 * MIB, 43); // old contents: it holds something to erase

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;
  const view = page.getByTestId('job-view');
  const done = page.getByTestId('done');
  const dialog = page.getByTestId('confirm-dialog');

  // A first copy, stopped midway: job 1 is unfinished.
  await setUpCopy(page, file('disk.img'), [file('copy.img')], { maxRateMiB: 16 });
  assert.equal(await plannedIntent(page), 'new');
  assert.match(await dialog.getByRole('heading').innerText(), /^Erase this target and copy\?$/);
  await dialog.getByRole('button', { name: 'Erase and copy', exact: true }).click();
  await view.waitFor();
  await until('some regions copied', async () => {
    const c = await shownCounts(page);
    return c !== null && c.copied > 4;
  });
  const first = Number(await view.getAttribute('data-job'));
  await view.getByRole('button', { name: 'Cancel', exact: true }).click();
  await done.waitFor({ timeout: 30_000 });
  const copied = (await shownCounts(page))!;

  // The same pair again: the engine would continue job 1, and the dialog says so.
  await setUpCopy(page, file('disk.img'), [file('copy.img')], { maxRateMiB: 0 });
  assert.equal(await plannedIntent(page), 'resume');
  const percent = Math.floor((copied.copied / copied.total) * 100);
  const title = await dialog.getByRole('heading').innerText();
  assert.equal(title, `Continue job ${first} onto this target?`);
  const go = dialog.getByTestId('start-button');
  assert.equal(await go.innerText(), `Continue job ${first} (${percent} % already copied)`);
  assert.ok(await dialog.getByRole('button', { name: /^Start over instead/ }).isVisible());
  await screenshot(page, '04-confirmation-resume');
  await go.click();
  await view.waitFor();
  await until('the job-started event on screen', async () =>
    /Copying \(continuing job \d+\)|Copy finished/.test(await heading(page)),
  );
  assert.equal(Number(await view.getAttribute('data-job')), first, 'the same job goes on');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.equal(await view.getAttribute('data-intent'), 'resume', 'the screen follows job-started');
  assert.equal(sha256(file('copy.img')), sha256(file('disk.img')));

  // Once more: the engine would update (copy only what differs).
  await setUpCopy(page, file('disk.img'), [file('copy.img')]);
  assert.equal(await plannedIntent(page), 'update');
  assert.equal(
    await dialog.getByRole('heading').innerText(),
    `Update this target from job ${first}?`,
  );
  assert.equal(await go.innerText(), 'Update: copy only what differs');
  await screenshot(page, '04-confirmation-update');
  await go.click();
  await done.waitFor({ timeout: 60_000 });
  assert.match(await heading(page), /^Update finished/);
  assert.equal(await view.getAttribute('data-intent'), 'update');
  assert.match(await page.getByTestId('delta').innerText(), /^0 pieces differed from the source\./);
  assert.equal(Number(await view.getAttribute('data-job')), first);

  // And "Start over instead": a new job, erase and copy; the history shows it.
  await setUpCopy(page, file('disk.img'), [file('copy.img')]);
  assert.equal(await plannedIntent(page), 'update');
  await dialog
    .getByRole('button', { name: /^Start over instead \(erase everything and copy\)$/ })
    .click();
  await view.waitFor();
  await until(
    'the new job on screen',
    async () => Number(await view.getAttribute('data-job')) !== first,
  );
  const fresh = Number(await view.getAttribute('data-job'));
  assert.ok(fresh > first, `a new job (${fresh} after ${first})`);
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.match(await heading(page), /^Copy finished/);
  assert.equal(await view.getAttribute('data-intent'), 'new');
  await page.getByRole('button', { name: /^Jobs/ }).first().click();
  await page.locator(`li.job[data-job="${fresh}"]`).waitFor();
  assert.equal(
    await page.locator(`li.job[data-job="${fresh}"]`).getAttribute('data-state'),
    'done',
  );
  assert.equal(sha256(file('copy.img')), sha256(file('disk.img')));

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});

test('“Ignore read errors” is for one copy: the next copy starts with it unticked', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-options-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 8 * MIB, 44);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await setUpCopy(page, file('disk.img'), [file('one.img')], {
    ignoreErrors: true,
    verify: true,
  });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  await page.getByTestId('done').waitFor({ timeout: 60_000 });
  assert.equal(await page.getByTestId('done').getAttribute('data-verify'), 'verified');

  // The next copy: ignore read errors is off again; verify, a preference, stays.
  await page.getByRole('button', { name: 'New copy', exact: true }).first().click();
  const options = page.getByTestId('options');
  await options.locator('summary').click();
  assert.equal(
    await page.locator('#opt-ignore').isChecked(),
    false,
    'ignore read errors was reset',
  );
  assert.equal(await page.locator('#opt-verify').isChecked(), true, 'verify stays');
  assert.doesNotMatch(await options.locator('summary').innerText(), /ignore read errors/);
  // And what is sent follows what is shown: the next job runs without it.
  await setUpCopy(page, file('disk.img'), [file('two.img')]);
  await plannedIntent(page);
  await page.getByTestId('start-button').click();
  await page.getByTestId('done').waitFor({ timeout: 60_000 });
  const jobs = (await page.evaluate('window.driveTwin.listJobs()')) as JobSummary[];
  const byTarget = (name: string) => jobs.find((j) => j.destinations[0]?.path === file(name));
  assert.equal(byTarget('one.img')?.options.ignoreErrors, true);
  assert.equal(byTarget('two.img')?.options.ignoreErrors, false);

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});

test('a target on a full file system is shown failed with its reason, and the job can finish without it', async (t) => {
  if (!requireBrowser(t) || !requireRoot(t)) return;
  const tmp = tempDir('drivetwin-e2e-full-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 16 * MIB, 45);
  // A 1 MiB file system: the second target fills it and fails.
  const full = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-e2e-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1M', 'tmpfs', full]);
  t.after(() => {
    execFileSync('umount', ['-l', full]);
    fs.rmdirSync(full);
  });
  const good = file('good.img');
  const bad = path.join(full, 'full.img');

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await setUpCopy(page, file('disk.img'), [good, bad], { verify: true });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'failed');

  const results = page.getByTestId('destination-results');
  const badRow = results.locator(`li[data-path="${bad}"]`);
  const goodRow = results.locator(`li[data-path="${good}"]`);
  assert.equal(await badRow.getAttribute('data-state'), 'failed');
  assert.match(await badRow.innerText(), /failed: it is full, with no room left to write\./);
  // The engine's own words are one click away, under Details.
  await badRow.locator('details summary').click();
  assert.match(await badRow.locator('details').innerText(), /ENOSPC/);
  await assertPlainWords(page, 'the failed target');
  t.diagnostic(`the good target: ${await goodRow.innerText()}`);
  assert.notEqual(await goodRow.getAttribute('data-state'), 'failed');
  assert.match(
    await page.getByTestId('failed-help').innerText(),
    /Resume brings it back where the copy stopped\. Or finish without it/,
  );
  assert.equal(
    await done.getAttribute('data-verify'),
    'stopped',
    'not verified: it did not finish',
  );
  await screenshot(page, '09-done-failed-target');

  // Finish without it: the job ends done with the other target, and the history says so.
  await badRow.getByRole('button', { name: 'Finish without it' }).click();
  const ask = page.getByTestId('resume-dialog');
  await ask.getByRole('heading', { name: /^Finish job \d+ without / }).waitFor();
  assert.match(await ask.innerText(), /leaves the job for good/);
  await ask.getByRole('button', { name: 'Finish without it' }).click();
  await until(
    'the job to end again',
    async () => (await done.count()) > 0 && (await done.getAttribute('data-state')) === 'done',
    60_000,
  );
  assert.equal(await done.getAttribute('data-verify'), 'verified');
  assert.equal(await goodRow.getAttribute('data-verified'), 'true');
  assert.equal(await page.getByTestId('job-view').getAttribute('data-intent'), 'resume');
  assert.equal(await badRow.count(), 0, 'the dropped target is no longer in the job');
  assert.equal(sha256(good), sha256(file('disk.img')));
  await screenshot(page, '09-done-without-failed-target');
  await page.getByRole('button', { name: /^Jobs/ }).first().click();
  const row = page.locator('li.job').first();
  await row.waitFor();
  assert.equal(await row.getAttribute('data-state'), 'done');
  assert.match(await row.innerText(), /left the job/);

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
