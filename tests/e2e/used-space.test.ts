// "Copy only used space" on a partitioned disk image, in the real renderer through
// the web bridge: the options say what each partition costs (ext4, NTFS, exFAT and
// FAT32 read through their maps, swap skipped, an unknown one copied whole) before
// anything is chosen; the confirmation says it again as the engine planned it; the
// copy's partitions check clean and hold the file. A disk whose NTFS is marked dirty
// is not offered, and says why, naming the partition. Screenshots: 03-options-used-space,
// 04-confirmation-used-space, 03-options-used-space-refused.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { readRange, sha256, tempDir, writeRandomFile } from '../helpers/files';
import { imageOfParts, markNtfsDirty } from '../helpers/used-space';
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
const TOOLS = ['sfdisk', 'mkfs.ext4', 'mkntfs', 'ntfscp', 'ntfscat', 'mkfs.exfat', 'mkfs.vfat'];

test('“Copy only used space” on a partitioned image: each partition’s cost shown, confirmed, copied', async (t) => {
  if (!requireBrowser(t)) return;
  const missing = TOOLS.filter((c) => spawnSync(c, ['--help'], { stdio: 'ignore' }).error);
  if (missing.length > 0) {
    if (process.env.CI === 'true') throw new Error(`CI requires ${missing.join(', ')}`);
    return t.skip(`${missing.join(', ')} not installed`);
  }
  const tmp = tempDir('drivetwin-e2e-used-parts-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('photos.bin'), 12 * MIB, 95);
  const kinds = ['ext4', 'ntfs', 'exfat', 'fat32', 'swap', 'raw'] as const;
  const parts = imageOfParts(
    file('laptop.img'),
    420 * MIB,
    64 * MIB,
    [...kinds],
    [file('photos.bin')],
  );
  fs.copyFileSync(file('laptop.img'), file('dirty.img'));
  markNtfsDirty(file('dirty.img'), parts.get(2)!.offset);

  const bridge = await startBridge(t, tmp.dir);
  const app = await openApp(t, bridge);
  const { page } = app;
  const choose = async (list: 'source' | 'target', image: string): Promise<void> => {
    await page.locator(`#${list}-image-path`).fill(image);
    await page.locator(`#${list}-image-path`).press('Enter');
    await until(`${image} chosen`, () => driveRow(page, list, image).locator('input').isChecked());
  };
  await page.getByRole('button', { name: 'New copy', exact: true }).first().click();
  await choose('source', file('laptop.img'));
  await choose('target', file('copy.img'));

  // The options: what a used-only copy of this source reads, partition by partition.
  const options = page.getByTestId('options');
  await options.locator('summary').click();
  const areas = page.getByTestId('used-space-areas');
  await areas.waitFor();
  const lines = await areas.innerText();
  t.diagnostic(lines.replace(/\n/g, ' | '));
  assert.match(lines, /Partition 1 \(ext4, 64\.0 MiB\): [\d.]+ MiB used/);
  assert.match(lines, /Partition 2 \(ntfs, 64\.0 MiB\): [\d.]+ MiB used/);
  assert.match(lines, /Partition 3 \(exfat, 64\.0 MiB\): [\d.]+ (MiB|KiB) used/);
  assert.match(lines, /Partition 4 \(fat32, 64\.0 MiB\): [\d.]+ MiB used/);
  assert.match(lines, /Partition 5 \(swap, 64\.0 MiB\): only its header is copied/);
  assert.match(
    lines,
    /Partition 6 \(unknown, 64\.0 MiB\): no file system recognised: copied whole/,
  );
  assert.match(lines, /after the last partition, in none, is left out/);
  const total = await page.getByTestId('used-space-total').innerText();
  assert.match(total, /^[\d.]+ MiB of 420 MiB to copy/);
  await page.locator('#opt-used-only').check();
  await screenshot(page, '03-options-used-space', { at: options });

  // The confirmation says it again, as the engine planned this copy.
  await page.getByTestId('copy-button').click();
  assert.equal(await plannedIntent(page), 'new');
  const planned = page.getByTestId('used-space-plan');
  assert.match(await planned.innerText(), /Only the used space is copied: [\d.]+ MiB of 420 MiB/);
  assert.match(
    await planned.innerText(),
    /Partition 6 \(unknown, 64\.0 MiB\): no file system recognised: copied whole/,
  );
  assert.equal(
    await page.getByTestId('fit-offer').count(),
    0,
    'a new image file is not a smaller drive: nothing is fitted',
  );
  await screenshot(page, '04-confirmation-used-space', { at: page.getByTestId('confirm-dialog') });
  await page.getByTestId('start-button').click();
  const done = page.getByTestId('done');
  await done.waitFor({ timeout: 60_000 });
  assert.equal(await done.getAttribute('data-state'), 'done');

  // The copy: each partition checks clean and holds the file (read without mounting).
  const part = (n: number): string => {
    const out = file(`copy-p${n}.img`);
    const { offset, length } = parts.get(n)!;
    fs.writeFileSync(out, readRange(file('copy.img'), offset, length));
    return out;
  };
  const want = sha256(file('photos.bin'));
  execFileSync('e2fsck', ['-fn', part(1)], { stdio: 'pipe' });
  execFileSync('debugfs', ['-R', `dump /photos.bin ${file('p1.bin')}`, part(1)], { stdio: 'pipe' });
  assert.equal(sha256(file('p1.bin')), want);
  execFileSync('ntfsfix', ['-n', part(2)], { stdio: 'pipe' });
  const ntfsFile = execFileSync('ntfscat', [part(2), 'photos.bin'], { maxBuffer: 64 * MIB });
  fs.writeFileSync(file('p2.bin'), ntfsFile);
  assert.equal(sha256(file('p2.bin')), want);
  execFileSync('fsck.exfat', ['-n', part(3)], { stdio: 'pipe' });
  execFileSync('fsck.vfat', ['-n', part(4)], { stdio: 'pipe' });
  execFileSync('mcopy', ['-n', '-i', part(4), '::/photos.bin', file('p4.bin')]);
  assert.equal(sha256(file('p4.bin')), want);
  assert.ok(fs.statSync(file('copy.img')).blocks * 512 < 200 * MIB, 'free space not written');

  // A disk whose NTFS is marked dirty: not offered, the partition named.
  await page.getByRole('button', { name: 'New copy', exact: true }).first().click();
  const change = page.getByTestId('change-source');
  if ((await change.count()) > 0) await change.click();
  await choose('source', file('dirty.img'));
  if ((await options.getAttribute('open')) === null) await options.locator('summary').click();
  const refused = page.getByTestId('used-space-refused');
  await refused.waitFor();
  assert.match(
    await refused.innerText(),
    /Not for this source: Partition 2 of .*dirty\.img: ntfs filesystem refused .*marked dirty/,
  );
  assert.ok(await page.locator('#opt-used-only').isDisabled());
  assert.doesNotMatch(await page.locator('body').innerText(), /holds no ext2\/3\/4 or FAT32/);
  await screenshot(page, '03-options-used-space-refused', { at: options });

  assertOnlyBridge(app, bridge);
  assertNoPageErrors(app);
});
