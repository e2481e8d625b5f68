// The states a user meets that the other end-to-end tests don't stop at, each checked
// and photographed for the README: the browser's file dialog, a compressed source, a
// .img.zst backup, the same copy made again (only what differs), and the window at 800 px.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { sha256, tempDir, writeMixedFile } from '../helpers/files';
import {
  assertNoPageErrors,
  assertOnlyBridge,
  bytesDone,
  driveRow,
  openApp,
  plannedIntent,
  requireBrowser,
  screenshot,
  setUpCopy,
  startBridge,
  until,
} from './harness';

const MIB = 1024 * 1024;

test('the file dialog, a compressed source, a .zst backup, a repeated copy and an 800 px window, as the user sees them', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-screens-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeMixedFile(file('raspios.img'), 64 * MIB, 81);
  execFileSync('xz', ['-0', '-k', '-T2', file('raspios.img')]);

  const bridge = await startBridge(t, tmp.dir, { home: tmp.dir });
  const app = await openApp(t, bridge, { width: 800, height: 900 });
  const { page } = app;

  // 1. The file dialog: the backend's home folder, an image picked with the mouse.
  await page.getByRole('button', { name: 'Browse…' }).first().click();
  const dialog = page.getByTestId('file-dialog');
  await dialog.getByRole('button', { name: tmp.dir }).click();
  await dialog.getByRole('button', { name: /raspios\.img\.xz/ }).waitFor();
  await screenshot(page, '01-file-dialog');
  await dialog.getByRole('button', { name: /raspios\.img\.xz/ }).click();
  const sourceRow = driveRow(page, 'source', file('raspios.img.xz'));
  await until('the picked image to be the source', () => sourceRow.locator('input').isChecked());
  assert.equal(await dialog.isVisible(), false);
  await screenshot(page, '01-narrow-800px-source-chosen');

  // 2. A compressed source, copied at a held pace to be seen.
  await setUpCopy(page, file('raspios.img.xz'), [file('sd.img')], {
    verify: true,
    maxRateMiB: 24,
  });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  await until('the copy under way', async () => (await bytesDone(page)) >= 16 * MIB, 30_000);
  await screenshot(page, '12-compressed-source');
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 90_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.equal(sha256(file('sd.img')), sha256(file('raspios.img')));

  // 3. A copy made again: only what differs is written.
  await setUpCopy(page, file('raspios.img'), [file('copy.img')], { maxRateMiB: 0 });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  await until(
    'the first copy to end',
    async () => (await done.count()) > 0 && (await done.getAttribute('data-state')) === 'done',
    90_000,
  );
  await setUpCopy(page, file('raspios.img'), [file('copy.img')]);
  assert.equal(await plannedIntent(page), 'update');
  await page.getByTestId('start-button').click();
  await until(
    'the update to end',
    async () => (await done.count()) > 0 && (await done.getAttribute('data-state')) === 'done',
    90_000,
  );
  assert.equal(await page.getByTestId('job-view').getAttribute('data-intent'), 'update');
  await screenshot(page, '14-repeated-copy');

  // 4. A .img.zst backup of the image.
  await setUpCopy(page, file('raspios.img'), [file('backup.img.zst')], { verify: true });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  await until(
    'the backup to end',
    async () => (await done.count()) > 0 && (await done.getAttribute('data-state')) === 'done',
    90_000,
  );
  execFileSync('zstd', ['-dq', file('backup.img.zst'), '-o', file('restored.img')]);
  assert.equal(sha256(file('restored.img')), sha256(file('raspios.img')), 'the backup restores');
  await screenshot(page, '13-zst-backup');

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});

test('“Copy only used space” copies an ext4 image’s used blocks: the copy checks clean and holds the file', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-used-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  fs.mkdirSync(file('content'));
  writeMixedFile(file('content/data.bin'), 6 * MIB, 91);
  fs.writeFileSync(file('fs.img'), '');
  fs.truncateSync(file('fs.img'), 128 * MIB);
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'data', '-d', file('content'), file('fs.img')]);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;
  await setUpCopy(page, file('fs.img'), [file('copy.img')], { usedOnly: true, verify: true });
  assert.equal(await plannedIntent(page), 'new');
  await page.getByTestId('start-button').click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  const written = await done.innerText();
  t.diagnostic(written.split('\n').slice(0, 12).join(' | '));
  execFileSync('e2fsck', ['-fn', file('copy.img')], { stdio: 'pipe' });
  const out = execFileSync('debugfs', ['-R', 'cat /data.bin', file('copy.img')], {
    maxBuffer: 16 * MIB,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  assert.ok(out.equals(fs.readFileSync(file('content/data.bin'))), 'the file is in the copy');
  assert.ok(
    fs.statSync(file('copy.img')).blocks * 512 < 64 * MIB,
    'the free space was not written',
  );
  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
