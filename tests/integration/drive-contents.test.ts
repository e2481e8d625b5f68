// What will be erased, read from real bytes: a GPT image with a FAT "BOOT" and an ext4
// "rootfs" partition, an ext4 on the whole image, a blank image, a file with unrecognised
// data, a new file — as the engine finds them (blkid, sfdisk) and as the window words them.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { driveContents } from '../../engine/drives/contents';
import { contentsWords } from '../../renderer/lib/drive-contents';
import { formatBytes } from '../../renderer/lib/format';
import { tempDir, writeRandomFile } from '../helpers/files';

const MIB = 1024 * 1024;

function blankFile(file: string, size: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
}

test('a partitioned image: its table, and each partition’s file system, label and size', async (t) => {
  const tmp = tempDir('drivetwin-contents-');
  t.after(() => tmp.cleanup());
  const image = path.join(tmp.dir, 'sd.img');
  blankFile(image, 64 * MIB);
  execFileSync('sfdisk', ['-q', image], {
    input: 'label: gpt\nsize=16MiB, type=L, name=boot\ntype=L\n',
  });
  const table = JSON.parse(execFileSync('sfdisk', ['--json', image], { encoding: 'utf8' }));
  const [p1, p2] = table.partitiontable.partitions as Array<{ start: number; size: number }>;
  execFileSync('mkfs.vfat', [
    '-n',
    'BOOT',
    '--offset',
    String(p1.start),
    image,
    String(p1.size / 2),
  ]);
  execFileSync('mkfs.ext4', [
    '-q',
    '-F',
    '-L',
    'rootfs',
    '-E',
    `offset=${p2.start * 512}`,
    image,
    `${p2.size / 2}k`,
  ]);

  const c = await driveContents(image, 64 * MIB);
  assert.equal(c.examined, true, c.why ?? '');
  assert.equal(c.partitionTable, 'gpt');
  assert.deepEqual(
    c.partitions.map((p) => [p.number, p.fsType, p.label, p.size, p.name]),
    [
      [1, 'vfat', 'BOOT', 16 * MIB, 'boot'],
      [2, 'ext4', 'rootfs', p2.size * 512, null],
    ],
  );
  assert.equal(c.blank, false);
  assert.deepEqual(contentsWords(c), [
    'GPT partition table, 2 partitions:',
    'Partition 1: vfat “BOOT”, 16.0 MiB (named “boot”)',
    `Partition 2: ext4 “rootfs”, ${formatBytes(p2.size * 512)}`,
  ]);
});

test('a whole-image ext4 by its label; blank only when every byte is zero; data without a signature; a new file', async (t) => {
  const tmp = tempDir('drivetwin-contents-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  blankFile(file('fs.img'), 32 * MIB);
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'uxsource', file('fs.img')]);
  blankFile(file('blank.img'), 32 * MIB);
  blankFile(file('late-data.img'), 32 * MIB);
  // One non-zero byte in the middle: neither its start nor its end shows it, reading it all does.
  const fd = fs.openSync(file('late-data.img'), 'r+');
  fs.writeSync(fd, Buffer.from([7]), 0, 1, 16 * MIB + 3);
  fs.closeSync(fd);
  writeRandomFile(file('random.img'), 4 * MIB, 9);

  const fsImage = await driveContents(file('fs.img'), 32 * MIB);
  assert.deepEqual(fsImage.filesystem, { type: 'ext4', label: 'uxsource' });
  assert.deepEqual(contentsWords(fsImage, 'file'), [
    'A file system on the whole image: ext4 “uxsource”.',
  ]);

  const blank = await driveContents(file('blank.img'), 32 * MIB);
  assert.equal(blank.blank, true);
  assert.deepEqual(contentsWords(blank), ['Blank: every byte is zero.']);

  const late = await driveContents(file('late-data.img'), 32 * MIB);
  assert.equal(late.blank, false, 'one byte is enough not to be blank');
  assert.deepEqual(contentsWords(late), [
    'No partition table or file system recognised, but it holds data.',
  ]);

  const random = await driveContents(file('random.img'), 4 * MIB);
  assert.equal(random.blank, false);
  assert.equal(random.dataSeen, true);

  const fresh = await driveContents(file('new.img'), 0);
  assert.equal(fresh.newFile, true);
  assert.deepEqual(contentsWords(fresh), ['A new file.']);
});

test('blank read through holes: a 1 GiB sparse image and a loop device over it are blank; one byte in a data span is not', async (t) => {
  const tmp = tempDir('drivetwin-contents-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  blankFile(file('big.img'), 1024 * MIB);
  const big = await driveContents(file('big.img'), 1024 * MIB);
  assert.equal(big.blank, true, 'its holes are zeros: nothing needs reading');
  assert.deepEqual(contentsWords(big), ['Blank: every byte is zero.']);

  blankFile(file('one-byte.img'), 1024 * MIB);
  const fd = fs.openSync(file('one-byte.img'), 'r+');
  fs.writeSync(fd, Buffer.from([1]), 0, 1, 600 * MIB + 11);
  fs.closeSync(fd);
  const oneByte = await driveContents(file('one-byte.img'), 1024 * MIB);
  assert.equal(oneByte.blank, false, 'the byte in the middle is found');
  assert.equal(oneByte.dataSeen, true);

  if (process.getuid?.() !== 0 || !fs.existsSync('/dev/loop-control')) {
    if (process.env.CI === 'true') assert.fail('CI requires root and loop devices');
    t.diagnostic('no loop devices here: the loop case is not run');
    return;
  }
  const { attachLoop } = await import('../helpers/loop');
  const loop = attachLoop(file('big.img'));
  t.after(() => loop.detach());
  const onLoop = await driveContents(loop.path, 1024 * MIB);
  assert.equal(onLoop.blank, true, 'a loop device is read through its backing file’s holes');
});

test('looking inside never stalls the process: 256 MiB of written zeros are read between other work', async (t) => {
  const tmp = tempDir('drivetwin-contents-');
  t.after(() => tmp.cleanup());
  const image = path.join(tmp.dir, 'zeros.img');
  const zeros = Buffer.alloc(MIB);
  const fd = fs.openSync(image, 'w');
  for (let i = 0; i < 256; i++) fs.writeSync(fd, zeros);
  fs.closeSync(fd);
  let last = performance.now();
  let longest = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 5);
  const c = await driveContents(image, 256 * MIB);
  await new Promise((r) => setTimeout(r, 20));
  clearInterval(ticker);
  t.diagnostic(`the longest stall of this process's event loop: ${longest.toFixed(0)} ms`);
  assert.equal(c.blank, true);
  assert.ok(longest < 250, `the event loop went on (stalled at most ${longest.toFixed(0)} ms)`);
});
