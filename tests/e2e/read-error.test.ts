// A source that really fails to read (nbdkit's ddrescue filter under a loop device):
// the window says which drive, what failed, where and what to do; the job stays
// resumable. With "Ignore read errors" the copy ends and names the unreadable bytes.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { tempDir, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { faultyDrive } from '../helpers/nbd';
import {
  assertNoPageErrors,
  assertPlainWords,
  assertOnlyBridge,
  driveRow,
  openApp,
  plannedIntent,
  requireBrowser,
  screenshot,
  startBridge,
  until,
  type App,
} from './harness';

const MIB = 1024 * 1024;
const SIZE = 32 * MIB;
const BAD = { offset: 8 * MIB + 4096, length: 4096 };

/** Source → one new image file, with the options given, started through the confirmation. */
async function copyToNewImage(
  app: App,
  source: string,
  image: string,
  opts: { ignoreErrors?: boolean } = {},
): Promise<void> {
  const { page } = app;
  const sourceRow = driveRow(page, 'source', source);
  await sourceRow.waitFor();
  await sourceRow.locator('input').check();
  await page.locator('#target-image-path').fill(image);
  await page.locator('#target-image-path').press('Enter');
  await until('the image to be chosen', () =>
    driveRow(page, 'target', image).locator('input').isChecked(),
  );
  if (opts.ignoreErrors) {
    await page.getByTestId('options').locator('summary').click();
    await page.locator('#opt-ignore').check();
  }
  await page.getByTestId('copy-button').click();
  assert.equal(await plannedIntent(page), 'new');
  await page
    .getByTestId('confirm-dialog')
    .getByRole('button', { name: 'Copy', exact: true })
    .click();
  await page.getByTestId('job-view').waitFor();
}

test('a read error on the source is shown in plain words, and the copy stays resumable', async (t) => {
  if (!requireBrowser(t) || !requireRoot(t)) return;
  const tmp = tempDir('drivetwin-e2e-faulty-');
  t.after(() => tmp.cleanup());
  writeRandomFile(path.join(tmp.dir, 'disk.img'), SIZE, 21);
  const faulty = await faultyDrive(path.join(tmp.dir, 'disk.img'), [BAD]);
  t.after(() => faulty.stop());
  const source = faulty.loop!.path;

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await copyToNewImage(app, source, path.join(tmp.dir, 'stops.img'));
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'failed');
  const error = page.getByTestId('job-error').first();
  const text = await error.innerText();
  assert.ok(text.includes(`Reading the source`) && text.includes(source), text);
  assert.match(text, /Where: at 8\.00 MiB from the start/);
  assert.match(text, /The drive reported an error there \(a damaged area, or a loose cable\)/);
  await assertPlainWords(page, 'the read error');
  assert.match(text, /What you can do: .*resume it from Jobs.*Ignore read errors/s);
  assert.match(await done.innerText(), /can be resumed/);
  assert.match(
    await page.locator('#job-heading').innerText(),
    /Copy stopped by an error/,
    'the heading says it stopped',
  );
  await screenshot(page, '08-error');
  // The engine's own words are one click away, under Details.
  await error.locator('details summary').click();
  assert.match(await error.locator('details').innerText(), /read failed on .* at byte \d+ .*EIO/);

  // The same source with "Ignore read errors": done, with the unreadable bytes named.
  await page.getByRole('button', { name: 'New copy', exact: true }).first().click();
  await copyToNewImage(app, source, path.join(tmp.dir, 'goes-on.img'), { ignoreErrors: true });
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.match(await done.innerText(), /Unreadable\s+4\.00 KiB \(written as zeros\)/);
  assert.match(await page.getByTestId('region-map').innerText(), /unreadable, among copied\s+1\b/);
  assert.match(
    await page.getByTestId('job-error').first().innerText(),
    /Part of the source .* could not be read/,
  );
  await screenshot(page, '09-done-unreadable');

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
