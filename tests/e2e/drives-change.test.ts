// Drives come and go while the window is open: a new one shows up without a reload,
// and a chosen target that disappears is unchosen, with a word to the user — a
// different drive may turn up at the same path.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { tempDir, writeRandomFile } from '../helpers/files';
import { attachLoop, requireRoot } from '../helpers/loop';
import {
  assertNoPageErrors,
  assertOnlyBridge,
  driveRow,
  openApp,
  requireBrowser,
  startBridge,
  until,
} from './harness';

const MIB = 1024 * 1024;

test('a drive plugged in appears, and a chosen target pulled out is unchosen', async (t) => {
  if (!requireBrowser(t) || !requireRoot(t)) return;
  const tmp = tempDir('drivetwin-e2e-drives-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('source.img'), 16 * MIB, 41);
  writeRandomFile(file('target.img'), 16 * MIB, 42);
  const source = attachLoop(file('source.img'));
  t.after(() => source.detach());

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;
  await driveRow(page, 'source', source.path).locator('input').check();

  // Plugged in while the window is open.
  const target = attachLoop(file('target.img'));
  t.after(() => target.detach());
  const row = driveRow(page, 'target', target.path);
  await row.waitFor({ timeout: 15_000 });
  await until('its verdict', async () => (await row.getAttribute('data-level')) === 'confirm');
  await row.locator('input').check();
  assert.ok(await page.getByTestId('copy-button').isEnabled());

  // Pulled out: gone from the list, unchosen, and said.
  target.detach();
  await page.getByText(`${target.path} was disconnected or changed`).waitFor({ timeout: 15_000 });
  await until('the row to go', async () => (await row.count()) === 0);
  assert.ok(await page.getByTestId('copy-button').isDisabled(), 'nothing left to copy to');

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
