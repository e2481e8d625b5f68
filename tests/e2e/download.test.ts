// A copy from a URL in the window (no root needed): a wrong address explained in the
// source picker, the image's URL and its SHA-256 typed beside the file field, the
// download's rate beside the writing's while it copies (a dropped connection said and
// taken up), and at the end what was downloaded and that its SHA-256 matched. The job
// list shows the URL. Everything is served by a test server on 127.0.0.1.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { sha256, tempDir, writeMixedFile } from '../helpers/files';
import { startServer } from '../helpers/http-server';
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

/** Types `url` and its SHA-256 beside the file field, and waits for it to be the source. */
async function useUrl(page: Page, url: string, hex: string, typed?: () => Promise<void>) {
  await page.locator('#source-url').fill(url);
  await page.locator('#source-sha256').fill(hex);
  await typed?.();
  await page.getByRole('button', { name: 'Use URL' }).click();
  await until('the download to be the source', () =>
    driveRow(page, 'source', url).locator('input').isChecked(),
  );
}

/** A new image file as the only target, and the copy started onto it. */
async function copyOnto(page: Page, target: string, before?: () => void): Promise<void> {
  await page.locator('#target-image-path').fill(target);
  await page.locator('#target-image-path').press('Enter');
  await until('the target chosen', () =>
    driveRow(page, 'target', target).locator('input').isChecked(),
  );
  before?.();
  await page.getByTestId('copy-button').click();
  assert.equal(await plannedIntent(page), 'new');
  await page
    .getByTestId('confirm-dialog')
    .getByRole('button', { name: 'Copy', exact: true })
    .click();
}

test('a download as the source: typed URL and SHA-256, both rates shown, verified', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-download-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeMixedFile(file('disk.img'), 64 * MIB, 51);
  execFileSync('sh', ['-c', 'xz -T2 -0 -c disk.img > raspios-lite.img.xz'], { cwd: tmp.dir });
  const hex = createHash('sha256')
    .update(fs.readFileSync(file('raspios-lite.img.xz')))
    .digest('hex');
  const server = await startServer();
  t.after(() => server.close());
  server.serve('images/raspios-lite.img.xz', file('raspios-lite.img.xz'));
  const url = server.url('images/raspios-lite.img.xz');

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  // A wrong address is explained where it was typed; nothing is chosen.
  await page.locator('#source-url').fill(server.url('images/missing.img.xz'));
  await page.getByRole('button', { name: 'Use URL' }).click();
  await page.getByText(/there is no file at this address \(check the URL\) \(HTTP 404/).waitFor();

  await useUrl(page, url, hex.toUpperCase(), () =>
    screenshot(page, '16-download-field', { at: page.getByTestId('download-field') }),
  );
  const shown = await driveRow(page, 'source', url).innerText();
  assert.match(shown, /raspios-lite\.img\.xz[\s\S]*64\.0 MiB[\s\S]*download/, shown);
  await page.getByTestId('expected-sha256').getByText(hex).waitFor();
  await screenshot(page, '16-download-source', { at: page.getByTestId('source-picker') });

  // The network sets the pace, and drops once: the window says so and goes on.
  await copyOnto(page, file('sd-card.img'), () =>
    server.misbehave({ rate: 6 * MIB, dropEvery: 12 * MIB, drops: 1 }),
  );

  const rate = page.getByTestId('download-rate');
  await rate.waitFor({ timeout: 30_000 });
  await until(
    'a retry said and the download going on',
    async () => /1 retry/.test(await rate.innerText()),
    60_000,
  );
  await until('both rates shown', async () => /MiB\/s/.test(await rate.innerText()));
  await screenshot(page, '16-download-copying');

  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 120_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.equal(await page.getByTestId('sha256-result').getAttribute('data-outcome'), 'verified');
  assert.equal(await done.getAttribute('data-verify'), 'verified');
  assert.equal(sha256(file('sd-card.img')), sha256(file('disk.img')));
  await screenshot(page, '16-download-done', { at: done });

  // Jobs: the job is the URL.
  await page.getByRole('button', { name: /^Jobs/ }).first().click();
  const row = page.locator('li.job').first();
  await row.waitFor();
  assert.match(await row.innerText(), /raspios-lite\.img\.xz/);
  await screenshot(page, '16-download-jobs');

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app, [/404/]);
});

test('a download whose SHA-256 is not the one typed: failed, said for what it is', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-download-bad-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeMixedFile(file('disk.img'), 16 * MIB, 52);
  const server = await startServer();
  t.after(() => server.close());
  server.serve('disk.img', file('disk.img'));
  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await useUrl(page, server.url('disk.img'), '0'.repeat(64));
  await copyOnto(page, file('copy.img'));
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'failed');
  assert.equal(await page.getByTestId('sha256-result').getAttribute('data-outcome'), 'mismatch');
  await page.getByText(/The download of disk\.img .*is not the file expected/).waitFor();
  // Failed for good: what was written is another file's, so nothing offers a resume.
  await done.getByText(/It can’t be resumed/).waitFor();
  assert.equal(await done.getByRole('button', { name: 'Resume' }).count(), 0);
  // Nothing unfinished either: the Jobs tab has no count, the job list says it.
  await done.getByRole('button', { name: 'Jobs', exact: true }).click();
  await page.getByText('Failed for good').waitFor();
  await page.getByRole('button', { name: 'Jobs', exact: true }).waitFor();
  await page.getByRole('button', { name: 'Last copy', exact: true }).click();
  await screenshot(page, '16-download-sha256-mismatch');
  assertNoPageErrors(app);
});
