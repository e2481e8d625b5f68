// When a copy ends: the browser's notification was asked for when the copy started and
// says how it ended; an image a cancelled copy left half-written is marked
// "incomplete (job N)" wherever it is offered.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { tempDir, writeRandomFile } from '../helpers/files';
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

// A stand-in for the Notifications API that records what the page asks (headless
// Chromium shows nothing): the page's code, as a string.
const NOTIFICATION_SPY = `(() => {
  const notes = { asked: 0, permission: 'default', shown: [] };
  window.__notes = notes;
  class SpyNotification {
    constructor(title, options) { notes.shown.push({ title, body: (options && options.body) || '' }); }
    static get permission() { return notes.permission; }
    static requestPermission() { notes.asked++; notes.permission = 'granted'; return Promise.resolve('granted'); }
  }
  window.Notification = SpyNotification;
})()`;

interface Notes {
  asked: number;
  shown: Array<{ title: string; body: string }>;
}
const notes = (page: Page): Promise<Notes> => page.evaluate('window.__notes') as Promise<Notes>;

test('a notification is asked for at the start and shown at the end; a cancelled copy’s image is marked incomplete (job N)', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-ends-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 96 * MIB, 71);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge, { init: NOTIFICATION_SPY });
  const { page } = app;

  // 1. A copy that finishes: asked once on the click that started it, told at the end.
  await setUpCopy(page, file('disk.img'), [file('whole.img')], { verify: true });
  assert.equal(await plannedIntent(page), 'new');
  assert.equal((await notes(page)).asked, 0, 'not asked before the copy is started');
  await page.getByTestId('start-button').click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  await until('the notification', async () => (await notes(page)).shown.length === 1, 5000);
  const first = await notes(page);
  t.diagnostic(JSON.stringify(first));
  assert.equal(first.asked, 1);
  assert.equal(first.shown[0].title, 'DriveTwin: copy finished (job 1)');
  assert.match(first.shown[0].body, /96\.0 MiB written in .*, verified\./);
  assert.match(await page.title(), /Copy finished/);

  // 2. A copy cancelled half-way: its image is incomplete, and the lists say so.
  await setUpCopy(page, file('disk.img'), [file('half.img')], { verify: false, maxRateMiB: 16 });
  await page.getByTestId('start-button').click();
  const view = page.getByTestId('job-view');
  await until('some of it copied', async () => (await bytesDone(page)) >= 16 * MIB, 30_000);
  await view.getByRole('button', { name: 'Cancel', exact: true }).click();
  await until(
    'the copy to stop',
    async () => (await done.count()) > 0 && (await done.getAttribute('data-state')) !== 'done',
    30_000,
  );
  await until('the second notification', async () => (await notes(page)).shown.length === 2);
  const second = (await notes(page)).shown[1];
  assert.equal(second.title, 'DriveTwin: copy stopped (job 2)');
  assert.equal((await notes(page)).asked, 1, 'asked once: the browser said yes');

  // As a target (picked for job 2): marked. The finished copy is not.
  await page.getByRole('button', { name: 'New copy', exact: true }).first().click();
  await driveRow(page, 'source', file('disk.img')).locator('input').check();
  const halfAsTarget = driveRow(page, 'target', file('half.img'));
  await halfAsTarget.waitFor();
  await until('the mark', async () => (await halfAsTarget.getByTestId('incomplete').count()) > 0);
  assert.equal(await halfAsTarget.getByTestId('incomplete').innerText(), 'incomplete (job 2)');
  assert.equal(
    await driveRow(page, 'target', file('whole.img')).getByTestId('incomplete').count(),
    0,
  );
  // The chosen source folds to one line; the source is never offered as a target.
  assert.equal(await page.locator('[data-testid="source-picker"] label.drive').count(), 1);
  assert.equal(await driveRow(page, 'target', file('disk.img')).count(), 0);
  await screenshot(page, '02-targets-incomplete', { at: page.getByTestId('target-list') });

  // As a source (typed): marked too.
  await page.getByTestId('change-source').click();
  await page.locator('#source-image-path').fill(file('half.img'));
  await page.locator('#source-image-path').press('Enter');
  const halfAsSource = driveRow(page, 'source', file('half.img'));
  await until('half.img chosen as the source', () => halfAsSource.locator('input').isChecked());
  assert.equal(await halfAsSource.getByTestId('incomplete').innerText(), 'incomplete (job 2)');

  // Removed from the target list: gone from it, still a source.
  await page.getByTestId('change-source').click();
  await driveRow(page, 'source', file('disk.img')).locator('input').check();
  await halfAsTarget.getByRole('button', { name: /^Remove / }).click();
  await until('half.img off the target list', async () => (await halfAsTarget.count()) === 0);
  await page.getByTestId('change-source').click();
  assert.equal(await driveRow(page, 'source', file('half.img')).count(), 1);

  // A file dropped on the window: a browser gives no path, and the page says what to do.
  await page.evaluate(`(() => {
    const data = new DataTransfer();
    data.items.add(new File(['x'], 'disk.img'));
    window.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  })()`);
  await page
    .getByText(/A browser doesn’t tell DriveTwin where a dropped file is: use Browse…/)
    .waitFor();

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
