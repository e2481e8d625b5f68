// Image files only (no root needed): a source picked by typing its path (the bridge has
// no file dialog), refused targets shown with their reason and impossible to start, a
// copy to two new image files, byte-identical, and the map exported as a download. And the
// system drive can only be chosen by typing its name.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import {
  assertNoPageErrors,
  assertOnlyBridge,
  driveRow,
  openApp,
  plannedIntent,
  requireBrowser,
  screenshot,
  startBridge,
  until,
} from './harness';

const MIB = 1024 * 1024;

test('image to image: typed paths, refused targets, a byte-identical copy and its map', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-images-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 48 * MIB, 31);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  // No dialogs on the bridge: a text field. A wrong path is explained, not thrown.
  await page.locator('#source-image-path').fill(file('missing.img'));
  await page.locator('#source-image-path').press('Enter');
  await page.getByText(`${file('missing.img')} does not exist`).waitFor();
  await page.locator('#source-image-path').fill(file('disk.img'));
  await page.getByRole('button', { name: 'Open image' }).click();
  const sourceRow = driveRow(page, 'source', file('disk.img'));
  await until('the typed image to be the source', () => sourceRow.locator('input').isChecked());
  assert.match(await sourceRow.innerText(), /48\.0 MiB/);

  // The source is not offered as a target; a file in a folder that does not exist is refused.
  await page.locator('#target-image-path').waitFor();
  assert.equal(await driveRow(page, 'target', file('disk.img')).count(), 0);
  await page.locator('#target-image-path').fill(file('nowhere/copy.img'));
  await page.locator('#target-image-path').press('Enter');
  await page.getByText(/[Ff]older .*nowhere does not exist/).waitFor();
  assert.ok(await page.getByTestId('copy-button').isDisabled(), 'nothing to start');

  // Two new image files at once.
  for (const name of ['copy.img', 'second.img']) {
    await page.locator('#target-image-path').fill(file(name));
    await page.locator('#target-image-path').press('Enter');
    await until(`${name} chosen`, () =>
      driveRow(page, 'target', file(name)).locator('input').isChecked(),
    );
  }
  await page.getByTestId('copy-button').click();
  const dialog = page.getByTestId('confirm-dialog');
  assert.equal(await plannedIntent(page), 'new');
  const confirmText = await dialog.innerText();
  assert.match(confirmText, /Copy onto these 2 new files\?/);
  assert.equal(await dialog.locator('ul.targets > li').count(), 2, confirmText);
  assert.match(confirmText, /copy\.img[\s\S]*A new file\.[\s\S]*second\.img[\s\S]*A new file\./);
  await dialog.getByRole('button', { name: 'Copy', exact: true }).click();

  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.equal(sha256(file('copy.img')), sha256(file('disk.img')));
  assert.equal(sha256(file('second.img')), sha256(file('disk.img')));

  // The map, exported through the browser's own download (no request leaves the page).
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Export map (ddrescue)' }).click(),
  ]);
  assert.match(download.suggestedFilename(), /^drivetwin-job-\d+\.map$/);
  const saved = file('exported.map');
  await download.saveAs(saved);
  const mapfile = fs.readFileSync(saved, 'utf8');
  assert.match(mapfile, /^0x0+\s+0x0*3000000\s+\+$/m, mapfile);

  // Jobs: the finished job is listed, without Resume.
  await page.getByRole('button', { name: /^Jobs/ }).first().click();
  const row = page.locator('li.job').first();
  await row.waitFor();
  assert.equal(await row.getAttribute('data-state'), 'done');
  assert.equal(await row.getByRole('button', { name: 'Resume' }).count(), 0);

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});

test('the system drive is a target only after it is allowed and its name is typed', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-system-');
  t.after(() => tmp.cleanup());
  writeRandomFile(path.join(tmp.dir, 'small.img'), 4 * MIB, 32);
  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await page.locator('#source-image-path').fill(path.join(tmp.dir, 'small.img'));
  await page.locator('#source-image-path').press('Enter');
  const systemRow = page.locator('[data-testid="target-list"] label.drive:has(.badge.system)');
  await page.getByTestId('target-list').locator('label.drive').first().waitFor();
  if ((await systemRow.count()) === 0) {
    t.skip('no system drive listed on this machine');
    return;
  }
  const system = systemRow.first();
  assert.ok(await system.locator('input').isDisabled(), 'refused by default');
  assert.match(await system.innerText(), /holds the running system/);

  const inUse = page.locator('details.in-use');
  await inUse.locator('summary').click();
  await inUse.getByLabel(/Allow writing mounted drives/).check();
  await inUse.getByLabel(/Allow writing the system drive/).check();
  await until(
    'the system drive to need confirmation',
    async () => (await system.getAttribute('data-level')) === 'confirm',
  );
  await system.locator('input').check();
  const name = (await system.locator('.name').innerText()).trim();

  await page.getByTestId('copy-button').click();
  const dialog = page.getByTestId('confirm-dialog');
  // The engine plans it (reading the drive). Where even root may not open the system
  // drive (a VM's device cgroup), the plan is refused and nothing can start at all.
  const intent = await plannedIntent(page);
  const start = dialog.getByTestId('start-button');
  if (intent === 'new') {
    assert.equal(await start.innerText(), 'Erase and copy');
  } else {
    t.diagnostic(`the plan: ${intent}`);
    assert.match(intent, /^refused: /);
    assert.equal(await start.innerText(), 'Can’t start');
  }
  assert.ok(await start.isDisabled(), 'not before the name is typed');
  const field = dialog.getByRole('textbox');
  await field.fill(`${name.slice(0, -1)}`);
  assert.ok(await start.isDisabled(), 'not with a wrong name');
  await screenshot(page, '04-confirmation-system-drive');
  // Never the real name: this test must not be one keystroke from erasing the machine.
  await page.keyboard.press('Escape');
  await dialog.getByRole('heading').waitFor({ state: 'detached' });
  assert.equal(await page.locator('[data-testid="job-view"]').count(), 0, 'nothing started');

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
