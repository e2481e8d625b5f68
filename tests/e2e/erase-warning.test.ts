// The confirmation says what each target holds now — what the copy erases: a loop device
// holding an ext4 labelled "uxsource" is named by its label and file system, a blank one
// is called blank (every byte read back as zero), and nothing is written when it is
// cancelled.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import { attachLoop, requireRoot } from '../helpers/loop';
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

test('the confirmation names what is on each target: an ext4 by its label and file system, a blank drive as blank', async (t) => {
  if (!requireBrowser(t) || !requireRoot(t)) return;
  const tmp = tempDir('drivetwin-e2e-erase-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 32 * MIB, 61);
  fs.writeFileSync(file('labelled.img'), Buffer.alloc(0));
  fs.truncateSync(file('labelled.img'), 64 * MIB);
  fs.writeFileSync(file('blank.img'), Buffer.alloc(0));
  fs.truncateSync(file('blank.img'), 48 * MIB);
  const labelled = attachLoop(file('labelled.img'));
  t.after(() => labelled.detach());
  const blank = attachLoop(file('blank.img'));
  t.after(() => blank.detach());
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'uxsource', labelled.path]);
  const before = sha256(file('labelled.img'));

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await page.locator('#source-image-path').fill(file('disk.img'));
  await page.locator('#source-image-path').press('Enter');
  await until('the source to be chosen', () =>
    driveRow(page, 'source', file('disk.img')).locator('input').isChecked(),
  );
  for (const dev of [labelled.path, blank.path]) {
    const row = driveRow(page, 'target', dev);
    await row.waitFor();
    await row.locator('input').check();
  }
  await page.getByTestId('copy-button').click();
  assert.equal(await plannedIntent(page), 'new');
  const dialog = page.getByTestId('confirm-dialog');
  const onIt = (dev: string) => dialog.locator(`li[data-path="${dev}"] [data-testid="contents"]`);
  await until('what the targets hold', async () => {
    const texts = await Promise.all([labelled.path, blank.path].map((d) => onIt(d).innerText()));
    return texts.every((s) => !/Looking/.test(s));
  });
  const labelledText = await onIt(labelled.path).innerText();
  const blankText = await onIt(blank.path).innerText();
  t.diagnostic(`${labelled.path}: ${labelledText} | ${blank.path}: ${blankText}`);
  assert.match(labelledText, /ext4 “uxsource”/);
  assert.doesNotMatch(labelledText, /Blank/);
  assert.match(blankText, /^Blank: every byte is zero\.$/);
  // The drive itself is named with its size (the loop device by its backing file).
  assert.match(
    await dialog.locator(`li[data-path="${labelled.path}"]`).innerText(),
    /labelled\.img[\s\S]*64\.0 MiB/,
  );
  await screenshot(page, '04-confirmation-what-is-erased');

  await dialog.getByRole('button', { name: 'Cancel', exact: true }).click();
  assert.equal(sha256(file('labelled.img')), before, 'nothing written');
  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
