// "Use it now" (Linux): the switch in Options serves the target as a disk while it
// copies; the copying screen says where and how to attach it, and Debian's nbdinfo and
// nbdcopy, pointed at what the page shows, read the target as it will be — the source.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';
import {
  assertNoPageErrors,
  openApp,
  requireBrowser,
  screenshot,
  setUpCopy,
  startBridge,
} from './harness';

const MIB = 1024 * 1024;

test('Use it now: the target is served while it copies, and the page says how to attach it', async (t) => {
  if (!requireBrowser(t)) return;
  const tmp = tempDir('drivetwin-e2e-use-now-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('disk.img'), 64 * MIB, 41);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;
  await setUpCopy(page, file('disk.img'), [file('copy.img')], { maxRateMiB: 8, useNow: true });
  // Escape closes the confirmation: the options as chosen, then the copy.
  await page.keyboard.press('Escape');
  const options = page.getByTestId('options');
  assert.match(await options.locator('summary').first().innerText(), /use it now/);
  await screenshot(page, '16-use-it-now-option', { at: options });
  await page.getByTestId('copy-button').click();
  await page
    .getByTestId('confirm-dialog')
    .getByRole('button', { name: 'Copy', exact: true })
    .click();
  const note = page.getByTestId('serve-note');
  await note.waitFor({ timeout: 30_000 });
  const uri = (await note.locator('p code').first().innerText()).trim();
  assert.match(uri, /^nbd\+unix:\/\/\/\?socket=\/.*\/disk\.sock$/);
  // The commands are behind "How to attach it" (commands and flags stay out of plain words).
  await note.getByText('How to attach it').click();
  assert.match(
    await note.innerText(),
    /nbdfuse ~\/disk 'nbd\+unix:[^']+' &[\s\S]*losetup -f --show ~\/disk/,
  );
  await screenshot(page, '16-use-it-now');

  const info = JSON.parse(execFileSync('nbdinfo', ['--json', uri], { encoding: 'utf8' }));
  assert.equal(info.exports[0]['export-size'], 64 * MIB);
  execFileSync('nbdcopy', [uri, file('read.img')]);
  assert.equal(sha256(file('read.img')), sha256(file('disk.img')), 'the served disk is the source');

  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.equal(await note.count(), 0, 'no longer served once the copy ended');
  assert.equal(sha256(file('copy.img')), sha256(file('disk.img')));
  assertNoPageErrors(app);
});
