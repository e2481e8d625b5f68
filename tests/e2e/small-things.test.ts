// The small things people notice, in Chromium through the bridge:
// - the map's "written, being made safe" and "being copied" are two colours;
// - the average rate is shown while it copies, not only at the end;
// - "Copying took" is one figure, the job's whole copying time, on the done screen as
//   in Jobs, after a resume too;
// - images picked in the file dialog are still listed after the backend restarts;
// - in the source list the arrow keys browse and Enter chooses; after "Change source"
//   the focus is on the list;
// - the speed limit slider tells a screen reader the limit in force.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { tempDir, writeRandomFile } from '../helpers/files';
import {
  assertNoPageErrors,
  assertPlainWords,
  bytesDone,
  driveRow,
  openApp,
  plannedIntent,
  requireBrowser,
  setUpCopy,
  startBridge,
  until,
} from './harness';

const MIB = 1024 * 1024;

/** The colour a legend swatch is drawn in. */
function swatch(page: Page, count: string): Promise<string> {
  return page.evaluate(
    `getComputedStyle(document.querySelector('[data-count="${count}"] .swatch')).backgroundColor`,
  ) as Promise<string>;
}

/** The element that has the focus: its tag, type and value. */
function focused(page: Page): Promise<string> {
  return page.evaluate(
    '(() => { const e = document.activeElement; return e ? `${e.tagName} ${e.getAttribute("type") ?? ""} ${e.value ?? ""}`.trim() : ""; })()',
  ) as Promise<string>;
}

test('while it copies: two colours for written and being copied, the average rate, the speed limit in force for a screen reader; "Copying took" after a resume is the whole job', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-small-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 128 * MIB, 81);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await setUpCopy(page, file('disk.img'), [file('copy.img')], { verify: false, maxRateMiB: 30 });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  await until('two seconds of copying', async () => (await bytesDone(page)) >= 64 * MIB, 30_000);

  const written = await swatch(page, 'written');
  const inFlight = await swatch(page, 'in-flight');
  t.diagnostic(`written: ${written}, being copied: ${inFlight}`);
  assert.notEqual(written, inFlight, 'two colours, one meaning each');
  const average = (await page.getByTestId('rate-average').innerText()).trim();
  t.diagnostic(`the average while copying: ${average}`);
  assert.match(average, /^\d[\d.]* MiB\/s$/, 'the average is shown while it copies');
  const slider = page.locator('#speed-limit-slider');
  assert.equal(
    await slider.getAttribute('aria-valuetext'),
    'at most 30.0 MiB/s',
    'what a screen reader hears is the limit in force, not the slider’s nearest step',
  );
  await assertPlainWords(page, 'the copy');

  // Stopped half-way, then resumed to the end.
  await page.getByTestId('job-view').getByRole('button', { name: 'Cancel', exact: true }).click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 30_000 });
  await done.getByRole('button', { name: 'Resume' }).click();
  await until(
    'the second run to end',
    async () => (await done.getAttribute('data-state').catch(() => null)) === 'done',
    60_000,
  );
  const took = page.getByTestId('copying-took');
  await until('the record read after the end', async () => !/…/.test(await took.innerText()));
  const onDone = (await took.innerText()).trim();
  await page.getByRole('button', { name: /^Jobs/ }).first().click();
  const inJobs = (await page.locator('li.job').first().getByTestId('job-times').innerText()).trim();
  t.diagnostic(`done screen: "${onDone}"; Jobs: "${inJobs}"`);
  const whole = /^copying took (.+?) \(/.exec(inJobs)?.[1];
  assert.ok(whole, inJobs);
  assert.ok(onDone.startsWith(whole), `one figure for the whole job: "${onDone}" and "${inJobs}"`);
  assertNoPageErrors(app);
});

test('picked images stay listed across a restart; arrow keys browse the sources, Enter chooses; "Change source" puts the focus on the list', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-keys-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('one.img'), 4 * MIB, 82);
  writeRandomFile(file('two.img'), 4 * MIB, 83);

  let bridge = await startBridge(t, tmp.dir);
  let app = await openApp(t, bridge);
  let { page } = app;
  await page.locator('#source-image-path').fill(file('one.img'));
  await page.locator('#source-image-path').press('Enter');
  await until('one.img chosen', () =>
    driveRow(page, 'source', file('one.img')).locator('input').isChecked(),
  );

  // "Change source": the list unfolds with the focus on it, on the chosen one.
  await page.getByTestId('change-source').click();
  assert.equal(await focused(page), `INPUT radio ${file('one.img')}`);
  await page.locator('#source-image-path').fill(file('two.img'));
  await page.locator('#source-image-path').press('Enter');
  await until('two.img chosen', () =>
    driveRow(page, 'source', file('two.img')).locator('input').isChecked(),
  );

  // The backend restarts (same job database): both images are still on the list.
  await app.close();
  await bridge.stop();
  bridge = await startBridge(t, tmp.dir);
  app = await openApp(t, bridge);
  page = app.page;
  for (const name of ['one.img', 'two.img']) {
    await driveRow(page, 'source', file(name)).waitFor({ timeout: 10_000 });
  }

  // The keyboard: Tab to the list, arrows move the focus and choose nothing; Enter chooses.
  // (Other drives may come and go on this machine: the picked images are the last two.)
  const radios = page.locator('[data-testid="source-picker"] input[type="radio"]:not([disabled])');
  await driveRow(page, 'source', file('one.img')).locator('input').focus();
  await page.keyboard.press('ArrowDown');
  assert.equal(await focused(page), `INPUT radio ${file('two.img')}`, 'the focus moved down');
  assert.equal(
    await page.locator('[data-testid="source-picker"] input[type="radio"]:checked').count(),
    0,
    'nothing chosen by browsing',
  );
  assert.equal(await page.getByTestId('change-source').count(), 0, 'the list did not fold');
  await page.keyboard.press('Home');
  assert.equal(await focused(page), `INPUT radio ${await radios.first().getAttribute('value')}`);
  await page.keyboard.press('End');
  const last = await radios.last().getAttribute('value');
  assert.equal(await focused(page), `INPUT radio ${last}`);
  await page.keyboard.press('Enter');
  await until(
    'the last one chosen',
    async () =>
      (await page
        .locator('[data-testid="source-picker"] input[type="radio"]:checked')
        .getAttribute('value')) === last,
  );
  assert.equal(await page.getByTestId('change-source').count(), 1, 'chosen: the list folds');
  assertNoPageErrors(app);
});
