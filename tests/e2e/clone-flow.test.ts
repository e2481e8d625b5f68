// The whole flow in the real renderer, in Chromium, through the web bridge, against the
// real engine on loop devices: pick a source and targets (a refused one can't be
// picked), confirm, watch progress rise, slow it down live and see the measured rate
// fall, pause and resume, cancel, then resume from the job history to a
// byte-identical end. Screenshots of each state go to docs/screenshots/.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { attachLoop, requireRoot } from '../helpers/loop';
import {
  assertNoPageErrors,
  assertOnlyBridge,
  bytesDone,
  driveRow,
  measuredRate,
  openApp,
  plannedIntent,
  requireBrowser,
  screenshot,
  sleep,
  startBridge,
  until,
} from './harness';

const MIB = 1024 * 1024;
// 3 GiB: a throttled copy first measures the pair's full speed flat out (under a second),
// and on loop devices in RAM that copied all of 1.25 GiB before the page could watch it.
const SIZE = 3 * 1024 * MIB;

test('a clone from the window: pick, confirm, progress, throttle, pause, cancel, resume to a byte-identical end', async (t) => {
  if (!requireBrowser(t) || !requireRoot(t)) return;
  const tmp = tempDir('drivetwin-e2e-flow-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);

  writeRandomFile(file('source.img'), SIZE, 4);
  writeRandomFile(file('target.img'), SIZE, 5); // old contents, to be overwritten
  writeRandomFile(file('small.img'), 16 * MIB, 6);
  const source = attachLoop(file('source.img'));
  t.after(() => source.detach());
  const target = attachLoop(file('target.img'));
  t.after(() => target.detach());
  const small = attachLoop(file('small.img'));
  t.after(() => small.detach());

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  // 1. Source: the drive list, picked with the keyboard.
  const sourceRow = driveRow(page, 'source', source.path);
  await sourceRow.waitFor();
  assert.match(await sourceRow.innerText(), /3\.00 GiB/);
  assert.match(await sourceRow.innerText(), /loop/);
  await screenshot(page, '01-source-picker');
  await sourceRow.locator('input').focus();
  await page.keyboard.press('Space');
  assert.ok(await sourceRow.locator('input').isChecked(), 'the source is chosen with the keyboard');

  // 2. Targets: nothing preselected; refused drives disabled with the reason.
  const targetRow = driveRow(page, 'target', target.path);
  const smallRow = driveRow(page, 'target', small.path);
  const sourceAsTarget = driveRow(page, 'target', source.path);
  await targetRow.waitFor();
  await until('the target verdicts for the chosen source', async () =>
    /smaller than the source/.test(await smallRow.innerText()),
  );
  assert.equal(
    await page.locator('[data-testid="target-list"] input[type="checkbox"]:checked').count(),
    0,
    'nothing is preselected',
  );
  assert.ok(await smallRow.locator('input').isDisabled(), 'a too small drive is refused');
  assert.equal(await smallRow.getAttribute('data-level'), 'refused');
  assert.match(await smallRow.innerText(), /Can’t be used: .*smaller than the source/);
  assert.equal(await sourceAsTarget.count(), 0, 'the source is not offered as a target');
  await smallRow.locator('input').click({ force: true });
  assert.equal(
    await smallRow.locator('input').isChecked(),
    false,
    'a refused drive stays unchosen',
  );
  assert.ok(await page.getByTestId('copy-button').isDisabled(), 'nothing to copy to yet');

  assert.equal(await targetRow.getAttribute('data-level'), 'confirm');
  assert.match(await targetRow.innerText(), /Needs your confirmation: everything on/);
  await targetRow.locator('input').check();
  await screenshot(page, '02-targets-refused', { at: page.getByTestId('target-list') });

  // 3. Options, folded away: verify, and 1 % disk time so the copy lasts long enough to
  // watch (on loop devices in RAM, about 30 MiB/s).
  const options = page.getByTestId('options');
  assert.equal(await options.getAttribute('open'), null, 'options start folded');
  await options.locator('summary').click();
  await page.locator('#opt-verify').check();
  await page.locator('#opt-throttle').fill('1');
  await screenshot(page, '03-options', { at: options });

  // 4. Confirmation names every target; Escape closes it.
  // It says what the engine planned: a new job, erasing the target.
  await page.getByTestId('copy-button').click();
  const dialog = page.getByTestId('confirm-dialog');
  assert.equal(await plannedIntent(page), 'new');
  const confirmText = await dialog.innerText();
  assert.match(confirmText, /Erase this target and copy\?/);
  assert.equal(await dialog.getByTestId('start-button').innerText(), 'Erase and copy');
  assert.ok(confirmText.includes(target.path), confirmText);
  assert.match(confirmText, /3\.00 GiB/);
  await screenshot(page, '04-confirmation');
  await page.keyboard.press('Escape');
  await dialog.getByRole('heading').waitFor({ state: 'detached' });
  assert.equal(await page.locator('[data-testid="job-view"]').count(), 0, 'Escape started nothing');
  await page.getByTestId('copy-button').click();
  assert.equal(await plannedIntent(page), 'new');
  await dialog.getByRole('button', { name: 'Erase and copy', exact: true }).click();

  // 5. Copying: progress rises.
  const view = page.getByTestId('job-view');
  await view.waitFor();
  await until('progress', async () => (await bytesDone(page)) > 0);
  const before = await bytesDone(page);
  await until('progress to rise', async () => (await bytesDone(page)) > before, 15_000);
  assert.match(await page.title(), /\d+ % copied — DriveTwin/);

  await until(
    'the region map to show hydrated regions',
    async () => Number(await page.getByTestId('region-map').getAttribute('data-hydrated')) > 0,
  );

  // The throttle, moved with the keyboard, applies live: up to 3 %, then back down to
  // 1 %, and the measured rate falls.
  const slider = page.locator('#throttle-slider');
  const throttle = page.getByTestId('throttle');
  assert.equal(await slider.inputValue(), '1');
  await slider.focus();
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  assert.equal(await slider.inputValue(), '3');
  await until('3 % in force', async () => /In force: 3 %/.test(await throttle.innerText()));
  await sleep(500);
  const atThree = await measuredRate(page, 2000);
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await slider.inputValue(), '1');
  await until('1 % in force', async () => /In force: 1 %/.test(await throttle.innerText()));
  await sleep(3000); // the throttle's history of I/O time decays over a few seconds
  const atOne = await measuredRate(page, 3000);
  t.diagnostic(
    `measured: ${(atThree / MIB).toFixed(1)} MiB/s at 3 % disk time, ${(atOne / MIB).toFixed(1)} at 1 %`,
  );
  assert.ok(
    atOne < atThree * 0.75,
    `the throttle slows the copy (${atThree / MIB} → ${atOne / MIB} MiB/s)`,
  );
  assert.ok(atOne > 0, 'and it goes on');

  // The copy under way, in light and dark.
  await screenshot(page, '05-copying');
  await page.emulateMedia({ colorScheme: 'dark' });
  await sleep(400);
  await screenshot(page, '05-copying-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  // The speed limit, live: the measured rate falls again.
  const unlimited = await measuredRate(page, 2000);
  await page.locator('#rate-cap-field').fill('4');
  await page.locator('#rate-cap-field').press('Enter');
  await until('the engine to report the new limit', async () =>
    /In force: at most 4\.00 MiB\/s/.test(await page.getByTestId('rate-cap').innerText()),
  );
  await sleep(1500);
  const capped = await measuredRate(page, 3000);
  t.diagnostic(
    `measured: ${(unlimited / MIB).toFixed(1)} MiB/s, then ${(capped / MIB).toFixed(1)} at a 4 MiB/s limit`,
  );
  assert.ok(capped < 8 * MIB, `the speed limit holds (${capped / MIB} MiB/s)`);
  assert.ok(capped < unlimited / 2, `the rate falls (${unlimited / MIB} → ${capped / MIB} MiB/s)`);
  await screenshot(page, '06-throttled');

  // Pause: nothing moves (after what was in flight), the title says so; resume: it moves again.
  await view.getByRole('button', { name: 'Pause', exact: true }).click();
  await until('paused', async () => (await view.getAttribute('data-phase')) === 'paused');
  await until(
    'what was in flight to land',
    async () => (await page.getByTestId('progress').getAttribute('data-hydrating')) === '0',
    30_000,
  );
  await sleep(500);
  const pausedAt = await bytesDone(page);
  await sleep(1500);
  assert.equal(await bytesDone(page), pausedAt, 'nothing is copied while paused');
  assert.match(await page.title(), /^Paused at \d+ %/);
  await screenshot(page, '07-paused');
  await view.getByRole('button', { name: 'Resume', exact: true }).click();
  await until('copying again', async () => (await bytesDone(page)) > pausedAt, 15_000);

  // Cancel: the job stops and stays resumable; with Verify on, it says it was not verified.
  await view.getByRole('button', { name: 'Cancel', exact: true }).click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 30_000 });
  assert.equal(await done.getAttribute('data-state'), 'interrupted');
  assert.match(await done.innerText(), /can be resumed/);
  assert.match(await page.getByTestId('verify-result').innerText(), /^Stopped before verifying/);
  const map = page.getByTestId('region-map');
  const hydrated = Number(await map.getAttribute('data-hydrated'));
  t.diagnostic(`cancelled at ${hydrated} of ${await map.getAttribute('data-total')} regions`);
  assert.ok(
    hydrated > 0 && hydrated < Number(await map.getAttribute('data-total')),
    'cancelled midway',
  );
  const jobId = Number(await view.getAttribute('data-job'));
  assert.ok(jobId > 0);

  // A new window (a restart): the unfinished copy is offered at start-up.
  await page.reload();
  const offer = page.getByTestId('resume-offer');
  await offer.waitFor();
  assert.match(await offer.innerText(), new RegExp(`Job ${jobId}: .*${source.path}`));
  await screenshot(page, '11-resume-offer');

  // The history: the job with Resume; resuming a drive target asks first.
  await page.getByRole('button', { name: /^Jobs/ }).click();
  const row = page.locator(`li.job[data-job="${jobId}"]`);
  await row.waitFor();
  assert.equal(await row.getAttribute('data-state'), 'interrupted');
  await screenshot(page, '10-job-history');
  await row.getByRole('button', { name: 'Resume' }).click();
  const resumeDialog = page.getByTestId('resume-dialog');
  await resumeDialog.getByRole('heading', { name: `Resume job ${jobId}?` }).waitFor();
  assert.ok((await resumeDialog.innerText()).includes(target.path));
  await resumeDialog.getByRole('button', { name: 'Resume writing' }).click();
  await view.waitFor();
  await until('the resumed job on screen', async () =>
    new RegExp(`Copying \\(continuing job ${jobId}\\)`).test(
      await view.locator('#job-heading').innerText(),
    ),
  );
  // Full speed for the rest: the limits changed live were kept with the job.
  await page.getByRole('button', { name: 'No limit' }).click();
  await slider.focus();
  await page.keyboard.press('End');
  // Verifying, shown as such (3 GiB read twice: a few seconds).
  await until(
    'the verify',
    async () =>
      (await view.getAttribute('data-phase')) === 'verifying' && (await done.count()) === 0,
    120_000,
    50,
  );
  assert.match(await view.locator('#job-heading').innerText(), /^Verifying/);
  assert.match(await page.getByTestId('verify-progress').innerText(), /^Verifying: /);
  assert.match(await page.title(), /^Verifying \d+ % — DriveTwin/);
  await screenshot(page, '07-verifying');
  await done.waitFor({ timeout: 120_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.equal(await done.getAttribute('data-verify'), 'verified');
  assert.match(await done.innerText(), /Verified: every target was compared with the source/);
  assert.equal(
    await page
      .locator(`[data-testid="destination-results"] li[data-path="${target.path}"]`)
      .getAttribute('data-verified'),
    'true',
  );
  assert.match(await page.title(), /Copy finished — DriveTwin/);
  await screenshot(page, '09-done');

  assert.equal(sha256(target.path, SIZE), sha256(source.path), 'the drive target is identical');

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
