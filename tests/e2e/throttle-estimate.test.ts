// The throttle slider says what a position will give before it is let go — its share of
// the full speed the engine measured on this pair — and once let go, the rate shown
// follows within a second. In Chromium, through the web bridge, against the real engine
// copying from a drive limited to 57 MiB/s (nbdkit's rate filter through nbdfuse and a
// loop device), so the copy lasts long enough to watch.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { rateDrive } from '../helpers/nbd';
import {
  assertNoPageErrors,
  assertOnlyBridge,
  bytesDone,
  driveRow,
  openApp,
  requireBrowser,
  screenshot,
  startBridge,
  until,
} from './harness';

const MIB = 1024 * 1024;

/** "… 61.2 MiB/s …" → bytes per second. */
function rateIn(text: string): number {
  const m = /([\d.]+) (KiB|MiB|GiB)\/s/.exec(text);
  assert.ok(m, `no rate in "${text}"`);
  return Number(m[1]) * 1024 ** (['KiB', 'MiB', 'GiB'].indexOf(m[2]) + 1);
}

test('dragging the throttle says what the position will give; let go, the rate shown follows within a second', async (t) => {
  if (!requireBrowser(t) || !requireRoot(t)) return;
  const tmp = tempDir('drivetwin-e2e-throttle-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('source.img'), 1024 * MIB, 41);
  const drive = await rateDrive(file('source.img'), { bitsPerSecond: '480M', burstiness: 0.2 });
  t.after(() => drive.stop());

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await page.getByRole('button', { name: 'New copy', exact: true }).first().click();
  const sourceRow = driveRow(page, 'source', drive.loop.path);
  await sourceRow.waitFor();
  await sourceRow.locator('input').check();
  await page.locator('#target-image-path').fill(file('copy.img'));
  await page.locator('#target-image-path').press('Enter');
  await until('the target to be chosen', () =>
    driveRow(page, 'target', file('copy.img')).locator('input').isChecked(),
  );
  const options = page.getByTestId('options');
  if ((await options.getAttribute('open')) === null) await options.locator('summary').click();
  await page.locator('#opt-verify').setChecked(false);
  await page.getByTestId('copy-button').click();
  await page.getByTestId('start-button').click();

  // At 100 % the engine measures the pair's full speed and says it.
  const throttle = page.getByTestId('throttle');
  const gives = page.getByTestId('throttle-gives');
  await until('the full speed measured', async () =>
    /In force: 100 % of the full speed, [\d.]+ MiB\/s/.test(await throttle.innerText()),
  );
  const full = rateIn(await throttle.locator('#throttle-help').innerText());
  t.diagnostic(`the engine measured ${(full / MIB).toFixed(1)} MiB/s at full speed`);
  assert.ok(Math.abs(full - 60e6) <= 0.15 * 60e6, `full speed ${full} B/s on a 60 MB/s drive`);

  // Dragging, not let go: the position's share of the full speed, before anything applies.
  const slider = page.locator('#throttle-slider');
  const box = (await slider.boundingBox())!;
  const y = box.y + box.height / 2;
  await page.mouse.move(box.x + box.width - 2, y);
  await page.mouse.down();
  for (const f of [0.8, 0.6, 0.4, 0.25]) await page.mouse.move(box.x + box.width * f, y);
  const value = Number(await slider.inputValue());
  const said = await gives.innerText();
  t.diagnostic(`dragged to ${value} %, the slider says "${said}"`);
  assert.match(said, /^≈ [\d.]+ MiB\/s$/);
  const estimate = rateIn(said);
  assert.ok(
    Math.abs(estimate - (value / 100) * full) <= 0.01 * full,
    `${said} at ${value} % of ${full} B/s`,
  );
  assert.match(
    await throttle.locator('#throttle-help').innerText(),
    /In force: 100 %/,
    'nothing applies before it is let go',
  );
  await screenshot(page, '16-throttle-dragging', { at: page.getByTestId('rate-cap') });

  // Let go: the rate shown follows within a second.
  const before = await bytesDone(page);
  const letGo = performance.now();
  await page.mouse.up();
  let followedAfter = Infinity;
  const shown: string[] = [];
  for (let waited = 0; waited < 5000; waited = performance.now() - letGo) {
    const rate = Number(await page.getByTestId('progress').getAttribute('data-rate'));
    shown.push(`${Math.round(waited)} ms: ${(rate / MIB).toFixed(1)}`);
    if (followedAfter === Infinity && Math.abs(rate - estimate) <= 0.15 * estimate) {
      followedAfter = waited;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  t.diagnostic(`after letting go (MiB/s shown): ${shown.filter((_, i) => i % 4 === 0).join(', ')}`);
  t.diagnostic(
    `the rate shown was within 15 % of ${(estimate / MIB).toFixed(1)} MiB/s after ${followedAfter.toFixed(0)} ms`,
  );
  assert.ok(followedAfter <= 1000, `the rate shown followed after ${followedAfter} ms`);
  assert.match(await gives.innerText(), /^gives [\d.]+ MiB\/s now$/);
  const last = Number(await page.getByTestId('progress').getAttribute('data-rate'));
  assert.ok(Math.abs(last - estimate) <= 0.15 * estimate, `${last} B/s, ${said} was said`);
  assert.ok((await bytesDone(page)) > before, 'the copy goes on');
  await screenshot(page, '16-throttle-applied', { at: page.getByTestId('rate-cap') });

  await page.getByTestId('job-view').getByRole('button', { name: 'Cancel', exact: true }).click();
  await page.getByTestId('done').waitFor({ timeout: 30_000 });
  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
