// The confirmation says only what is so, per target:
// - a new image file (a .zst backup, a plain new .img) gets no talk of fitting partitions,
//   and new disk identifiers are offered only where the engine would write them (never
//   with a backup, which keeps the source's tables);
// - "On it now" is what the target reads now, even when the engine plans an update from
//   an older job that later copies have overwritten;
// - the button that erases waits until every target has been looked at.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { tempDir, writeRandomFile } from '../helpers/files';
import {
  assertNoPageErrors,
  assertPlainWords,
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

function sparse(file: string, size: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
}

/** A GPT disk image with one ext4 partition labelled `label`. */
function partitioned(file: string, label: string): void {
  sparse(file, 48 * MIB);
  execFileSync('sfdisk', ['-q', file], { input: 'label: gpt\ntype=L\n' });
  const table = JSON.parse(execFileSync('sfdisk', ['--json', file], { encoding: 'utf8' }));
  const p = table.partitiontable.partitions[0] as { start: number; size: number };
  execFileSync('mkfs.ext4', [
    '-q',
    '-F',
    '-L',
    label,
    '-E',
    `offset=${p.start * 512}`,
    file,
    `${p.size / 2}k`,
  ]);
}

/** An image holding one ext4 file system labelled `label`, on the whole image. */
function ext4Image(file: string, label: string): void {
  sparse(file, 24 * MIB);
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', label, file]);
}

async function copyToEnd(page: Page, source: string, target: string): Promise<void> {
  await setUpCopy(page, source, [target], { verify: false });
  await plannedIntent(page);
  await until('the targets looked at', async () => page.getByTestId('start-button').isEnabled());
  await page.getByTestId('start-button').click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
}

test('new image files as targets: no partition talk, and new disk identifiers only where they are written', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-words-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  partitioned(file('sd.img'), 'rootfs');

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;
  const dialog = page.getByTestId('confirm-dialog');

  // A backup and a plain new image: both new files, neither fitted.
  await setUpCopy(page, file('sd.img'), [file('backup.img.zst'), file('plain.img')]);
  assert.equal(await plannedIntent(page), 'new');
  await until(
    'the targets looked at',
    async () => (await dialog.getByTestId('contents-pending').count()) === 0,
  );
  const text = await dialog.innerText();
  t.diagnostic(text);
  assert.equal(await dialog.getByTestId('fit-offer').count(), 0, 'no "only the partitions"');
  assert.doesNotMatch(text, /partition table for its own size|holds 0 B|Only the partitions/);
  assert.equal(
    await dialog.getByTestId('new-ids').count(),
    0,
    'a backup keeps the source’s tables: no new identifiers offered',
  );
  assert.match(text, /backup\.img\.zst[\s\S]*A new file\./);
  await screenshot(page, '04-confirmation-new-files');
  await dialog.getByRole('button', { name: 'Cancel', exact: true }).click();

  // The plain image alone: its table is written for it, so new identifiers can be.
  await driveRow(page, 'target', file('backup.img.zst')).locator('input').uncheck();
  await setUpCopy(page, file('sd.img'), [file('plain.img')]);
  assert.equal(await plannedIntent(page), 'new');
  await dialog.getByTestId('new-ids').waitFor();
  assert.equal(await dialog.getByTestId('fit-offer').count(), 0);
  assert.doesNotMatch(await dialog.innerText(), /GUID|GPT/);
  await dialog.getByRole('button', { name: 'Cancel', exact: true }).click();
  assertNoPageErrors(app);
});

test('"On it now" is what the target reads, not the job the engine would update; the button waits for every target', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-onit-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  ext4Image(file('alpha.img'), 'alpha');
  ext4Image(file('beta.img'), 'beta');

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;
  const dialog = page.getByTestId('confirm-dialog');

  // Job 1 copies alpha onto copy.img; a later copy puts beta there.
  await copyToEnd(page, file('alpha.img'), file('copy.img'));
  await copyToEnd(page, file('beta.img'), file('copy.img'));

  // alpha onto copy.img again: the engine plans an update from job 1, but the target holds beta.
  // Looking inside is slowed down here, to see the button wait for it.
  await page.evaluate(`(() => {
    const api = window.driveTwin;
    const look = api.driveContents.bind(api);
    api.driveContents = (p) => new Promise((r) => setTimeout(r, 2500)).then(() => look(p));
  })()`);
  await setUpCopy(page, file('alpha.img'), [file('copy.img')], { verify: false });
  assert.equal(await plannedIntent(page), 'update');
  const onIt = dialog.locator(`li[data-path="${file('copy.img')}"] [data-testid="on-it"]`);
  assert.match(await onIt.innerText(), /Looking at what it holds/);
  assert.equal(
    await dialog.getByTestId('start-button').isEnabled(),
    false,
    'nothing can start before every target was looked at',
  );
  await until('the target looked at', async () => !/Looking/.test(await onIt.innerText()), 10_000);
  const now = await onIt.innerText();
  t.diagnostic(`On it now: ${now}`);
  assert.match(now, /ext4 “beta”/, 'what the target holds now');
  assert.doesNotMatch(now, /Job \d+|alpha/, 'not what job 1 left there');
  assert.equal(await dialog.getByTestId('start-button').isEnabled(), true);
  await screenshot(page, '04-confirmation-update-reads-target');
  await dialog.getByRole('button', { name: 'Cancel', exact: true }).click();
  assertNoPageErrors(app);
});

test('"Copy only used space" the engine refuses: said in the window’s words, never with a command-line flag', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-usedonly-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('noise.img'), 8 * MIB, 91);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;
  await setUpCopy(page, file('noise.img'), [file('copy.img')], { usedOnly: true });
  const refused = await plannedIntent(page);
  t.diagnostic(refused);
  assert.match(refused, /^refused: /);
  const error = page.getByTestId('confirm-dialog').getByTestId('plan-error');
  const shown = await error.locator('.plain').innerText();
  assert.match(
    shown,
    /^“Copy only used space” can’t be used for this copy: .*noise\.img holds no ext2\/3\/4 or FAT32 file system/,
  );
  assert.match(shown, /Untick it in Options to copy everything\.$/);
  await assertPlainWords(page, 'the refusal');
  await error.locator('summary').click();
  assert.match(
    await error.locator('details').innerText(),
    /--used-only:/,
    'the engine’s words, under Details',
  );
  await screenshot(page, '04-confirmation-refused');
  assertNoPageErrors(app);
});
