// The smaller-target offer in the real renderer, through the web bridge, on loop
// devices: a 2 GiB GPT disk whose partitions end at 1.5 GiB. A 1.6 GiB drive is offered
// a copy of the partitions only, with the numbers, in the target list and in the
// confirmation; a 1.4 GiB one is refused with them. The fitted copy, with new disk
// identifiers asked for in the confirmation, ends with `sgdisk -v` clean and every
// partition identical. Screenshots: docs/screenshots/12-*.png.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { requireRoot } from '../helpers/loop';
import {
  GIB,
  assertPartitionsCopied,
  assertSgdiskClean,
  gptLayout,
  partitionedImage,
  requireTools,
  run,
} from '../helpers/partitioned';
import { workspace } from '../helpers/workspace';
import {
  assertNoPageErrors,
  assertPlainWords,
  driveRow,
  openApp,
  plannedIntent,
  requireBrowser,
  screenshot,
  startBridge,
  until,
} from './harness';

const MIB = 1024 * 1024;

test('a smaller drive that holds the partitions: offered with the numbers, copied fitted', async (t) => {
  if (!requireBrowser(t) || !requireRoot(t) || !requireTools(t)) return;
  const env = workspace(t, 'e2e-fit');
  const src = partitionedImage(env, 'src.img', 2 * GIB, gptLayout(1.5 * GIB));
  const sparse = (name: string, size: number): string => {
    const f = env.file(name);
    fs.writeFileSync(f, '');
    fs.truncateSync(f, size);
    return f;
  };
  const source = env.attach(src.file, { readOnly: true });
  const card = env.attach(sparse('card.img', 1638 * MIB));
  const small = env.attach(sparse('small.img', 1434 * MIB));

  const bridge = await startBridge(t, env.dir);
  const app = await openApp(t, bridge);
  const { page } = app;

  await driveRow(page, 'source', source.path).locator('input').check();
  const cardRow = driveRow(page, 'target', card.path);
  const smallRow = driveRow(page, 'target', small.path);
  await until('the target verdicts for the chosen source', async () =>
    /partitions/.test(await smallRow.innerText()),
  );
  assert.equal(await smallRow.getAttribute('data-level'), 'refused');
  assert.match(
    await smallRow.innerText(),
    /partitions don't fit: the last partition ends at 1\.50 GiB.*this drive holds 1\.40 GiB/,
  );
  assert.equal(await cardRow.getAttribute('data-level'), 'confirm');
  assert.match(
    await cardRow.innerText(),
    /only its partitions are copied, with a partition table for this size \(the last partition ends at 1\.50 GiB.*this drive holds 1\.60 GiB\)/,
  );
  await cardRow.locator('input').check();
  await screenshot(page, '12-targets-fit', { at: page.getByTestId('target-list') });

  await page.getByTestId('copy-button').click();
  const dialog = page.getByTestId('confirm-dialog');
  assert.equal(await plannedIntent(page), 'new');
  const offer = dialog.getByTestId('fit-offer');
  assert.match(
    await offer.innerText(),
    /Only the partitions are copied \(1\.50 GiB\): the last one ends at 1\.50 GiB, plus 16\.5 KiB after it for the spare copy of the partition table; .* holds 1\.60 GiB\. It gets a partition table made for its own size\./,
  );
  await assertPlainWords(page, 'the fitted confirmation');
  await dialog.getByTestId('new-ids').check();
  await screenshot(page, '12-confirmation-fit');
  await dialog.getByTestId('start-button').click();

  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 120_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');
  assertSgdiskClean(card.path);
  const guid = (dev: string): string =>
    /Disk identifier \(GUID\): (\S+)/.exec(run('sgdisk', ['-p', dev]))![1];
  assert.notEqual(guid(card.path), guid(src.file), 'new disk identifiers');
  const scanned = env.attach(card.file, { partscan: true, readOnly: true });
  assertPartitionsCopied(src.file, scanned.path, src.files);
  assertNoPageErrors(app);
});
