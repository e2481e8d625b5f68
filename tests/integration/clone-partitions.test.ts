// Partition-aware cloning, checked by the system's own tools on loop devices: a GPT
// image fitted onto a smaller drive (--fit) or moved onto a bigger one, an MBR image
// fitted too, a drive too small for the partitions refused with the numbers and left
// alone, and new identifiers (--new-ids) that tell the copy from the source.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { runCli, explain, only } from '../helpers/cli';
import { readRange, sha256, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import {
  GIB,
  assertPartitionsCopied,
  assertSgdiskClean,
  gptLayout,
  mbrLayout,
  partitionedImage,
  requireTools,
  rescan,
  run,
  tableOf,
} from '../helpers/partitioned';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

/** A drive of `size` bytes that held something else: random bytes at its start and its end. */
function usedDrive(env: ReturnType<typeof workspace>, name: string, size: number) {
  const file = env.file(name);
  writeRandomFile(file, 4 * MIB, 31);
  fs.truncateSync(file, size);
  const tail = env.file(`${name}-tail`);
  writeRandomFile(tail, MIB, 32);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, fs.readFileSync(tail), 0, MIB, size - MIB);
  fs.closeSync(fd);
  return env.attach(file, { partscan: true });
}

/**
 * PTUUID and PARTUUID of a disk and its partitions as `lsblk -o PTUUID,PARTUUID` shows
 * them — from the udev database; where there is none (a container), lsblk shows nothing
 * and they are read with libblkid (`blkid -p`), where udev itself gets them.
 */
function identifiers(dev: string, t: { diagnostic(m: string): void }): string[] {
  const shown = run('lsblk', ['-n', '-r', '-o', 'PTUUID,PARTUUID', dev])
    .split(/\s+/)
    .filter((s) => s.length > 0);
  if (shown.length > 0) return shown;
  t.diagnostic(`lsblk shows no PTUUID/PARTUUID for ${dev} (no udev database): blkid -p instead`);
  const value = (tag: string, node: string): string =>
    run('blkid', ['-p', '-s', tag, '-o', 'value', node]).trim();
  const parts = fs.readdirSync('/dev').filter((n) => n.startsWith(`${dev.slice(5)}p`));
  return [
    value('PTUUID', dev),
    ...parts.flatMap((p) => [value('PART_ENTRY_UUID', `/dev/${p}`), value('PTUUID', dev)]),
  ];
}

test('a 2 GiB GPT image whose partitions end at 1.5 GiB', async (t) => {
  if (!requireRoot(t) || !requireTools(t)) return;
  const env = workspace(t, 'parts-gpt');
  const src = partitionedImage(env, 'src.img', 2 * GIB, gptLayout(1.5 * GIB));
  const before = sha256(src.file);

  await t.test(
    'onto 1.6 GiB with --fit: sgdisk -v clean, fsck clean, files identical',
    async () => {
      const card = usedDrive(env, 'card.img', 1638 * MIB);
      const r = await runCli(
        ['clone', src.file, card.path, '--fit', '--verify', '--yes', '--json'],
        {
          db: env.db,
        },
      );
      assert.equal(r.code, 0, explain(r));
      const start = only(r, 'start');
      assert.equal(start.bytesTotal, 1.5 * GIB, 'only the partitions are copied');
      assert.equal((start.options as { fit: boolean }).fit, true);
      assert.equal(only(r, 'done').verified, true, explain(r));
      assertSgdiskClean(card.path);
      assertPartitionsCopied(src.file, card.path, src.files);
    },
  );

  await t.test(
    'verify checks the rewritten table apart; the same clone again repairs it',
    async () => {
      const card = usedDrive(env, 'card3.img', 1638 * MIB);
      const args = ['clone', src.file, card.path, '--fit', '--yes', '--json'];
      const first = await runCli(args, { db: env.db });
      assert.equal(first.code, 0, explain(first));
      const job = String(only(first, 'start').job);
      // Without the job: `verify` compares up to the partitions' end, and checks the table.
      const plain = await runCli(['verify', src.file, card.path, '--json'], { db: env.db });
      assert.equal(plain.code, 0, explain(plain));
      assert.equal(only(plain, 'verify').bytesCompared, 1.5 * GIB);
      // A damaged backup GPT: its bytes are no region of the copy, only the table check sees it.
      const lastSector = 1638 * MIB - 512;
      const fd = fs.openSync(card.path, 'r+');
      fs.writeSync(fd, Buffer.alloc(512, 0xee), 0, 512, lastSector);
      fs.closeSync(fd);
      const checked = await runCli(['resume', job, '--verify', '--yes', '--json'], { db: env.db });
      assert.equal(checked.code, 4, explain(checked));
      const verify = only(checked, 'verify') as unknown as {
        destinations: Array<{ mismatches: unknown[]; tableProblem?: string }>;
      };
      assert.deepEqual(verify.destinations[0].mismatches, [], 'the copied bytes are equal');
      assert.match(
        verify.destinations[0].tableProblem ?? '',
        /backup GPT header is missing or damaged/,
      );
      const alone = await runCli(['verify', src.file, card.path, '--json'], { db: env.db });
      assert.equal(alone.code, 4, explain(alone));
      assert.match(
        JSON.stringify(only(alone, 'verify').tableProblems),
        /backup GPT header is missing or damaged/,
      );
      const update = await runCli([...args, '--verify'], { db: env.db });
      assert.equal(update.code, 0, explain(update));
      assert.equal(only(update, 'start').intent, 'update');
      assertSgdiskClean(card.path);
    },
  );

  await t.test('onto 1.4 GiB: refused with the numbers, nothing written', async () => {
    const small = usedDrive(env, 'small.img', 1434 * MIB);
    const was = sha256(small.path);
    for (const args of [['--fit'], []]) {
      const r = await runCli(['clone', src.file, small.path, ...args, '--yes', '--json'], {
        db: env.db,
      });
      assert.equal(r.code, 2, explain(r));
      assert.match(
        r.stderr,
        /the last partition ends at 1\.50 GiB and its GPT's backup needs 16\.5 KiB after it; this drive holds 1\.40 GiB/,
      );
      assert.ok(!r.events.some((e) => e.type === 'start'), explain(r));
    }
    assert.equal(sha256(small.path), was, 'the target is unchanged');
  });

  await t.test('onto 1.6 GiB without --fit: refused, and told about --fit', async () => {
    const card = usedDrive(env, 'card2.img', 1638 * MIB);
    const was = sha256(card.path);
    const r = await runCli(['clone', src.file, card.path, '--yes'], { db: env.db });
    assert.equal(r.code, 2, explain(r));
    assert.match(r.stderr, /but its partitions fit: .* Copy only them with --fit/);
    assert.equal(sha256(card.path), was);
  });

  await t.test('onto 3 GiB: the backup GPT at the end, sgdisk -v clean', async () => {
    const big = usedDrive(env, 'big.img', 3 * GIB);
    // What was there: another GPT, whose backup lies in the disk's last sectors.
    run('sgdisk', ['-o', '-n', '1:2048:+100M', big.path]);
    const r = await runCli(['clone', src.file, big.path, '--verify', '--yes', '--json'], {
      db: env.db,
    });
    assert.equal(r.code, 0, explain(r));
    assert.equal(only(r, 'done').verified, true);
    assertSgdiskClean(big.path);
    const lastLba = (3 * GIB) / 512 - 1;
    const backup = readRange(big.path, lastLba * 512, 512);
    assert.equal(backup.toString('latin1', 0, 8), 'EFI PART', 'a backup header in the last sector');
    assert.equal(Number(backup.readBigUInt64LE(24)), lastLba);
    assert.match(
      run('sgdisk', ['-p', big.path]),
      new RegExp(`last usable sector is ${lastLba - 33}\\b`),
    );
    // The source's backup is not left behind where the source ended.
    assert.ok(readRange(big.path, 2 * GIB - 512, 512).every((b) => b === 0));
    assertPartitionsCopied(src.file, big.path, src.files);
  });

  await t.test('--new-ids: GUIDs differ, and both disks attached are told apart', async (st) => {
    const twin = usedDrive(env, 'twin.img', 2 * GIB);
    const r = await runCli(['clone', src.file, twin.path, '--new-ids', '--verify', '--yes'], {
      db: env.db,
    });
    assert.equal(r.code, 0, explain(r));
    assertSgdiskClean(twin.path);
    const plain = await runCli(['verify', src.file, twin.path], { db: env.db });
    assert.equal(plain.code, 0, explain(plain));
    const original = env.attach(src.file, { partscan: true, readOnly: true });
    rescan(original.path);
    rescan(twin.path);
    const disk = (dev: string): string =>
      /Disk identifier \(GUID\): (\S+)/.exec(run('sgdisk', ['-p', dev]))![1];
    assert.notEqual(disk(twin.path), disk(original.path));
    const ptuuid = (dev: string): string =>
      run('blkid', ['-p', '-s', 'PTUUID', '-o', 'value', dev]).trim();
    assert.notEqual(ptuuid(twin.path), ptuuid(original.path));
    const mine = new Set(identifiers(twin.path, st));
    const theirs = identifiers(original.path, st);
    assert.equal(theirs.length, 1 + 3 + 3, `${theirs.join(' ')}`);
    assert.ok(
      theirs.every((id) => !mine.has(id)),
      `lsblk tells them apart: ${[...mine].join(' ')} / ${theirs.join(' ')}`,
    );
    assertPartitionsCopied(src.file, twin.path, src.files);
  });

  assert.equal(sha256(src.file), before, 'the source is never written');
});

test('an MBR image onto a smaller drive (--fit), and onto a bigger one that held a GPT', async (t) => {
  if (!requireRoot(t) || !requireTools(t)) return;
  const env = workspace(t, 'parts-mbr');
  const src = partitionedImage(env, 'src.img', 2 * GIB, mbrLayout(1.5 * GIB));

  await t.test('fitted onto 1.55 GiB: the same table, fsck clean, files identical', async () => {
    const card = usedDrive(env, 'card.img', 1587 * MIB);
    const r = await runCli(['clone', src.file, card.path, '--fit', '--verify', '--yes', '--json'], {
      db: env.db,
    });
    assert.equal(r.code, 0, explain(r));
    assert.equal(only(r, 'done').verified, true);
    assert.deepEqual(tableOf(card.path), tableOf(src.file), '`sfdisk -d` says the same');
    assertPartitionsCopied(src.file, card.path, src.files);
    const plain = await runCli(['verify', src.file, card.path], { db: env.db });
    assert.equal(plain.code, 0, explain(plain));
    // The boot code is the source's, compared like any byte.
    const fd = fs.openSync(card.path, 'r+');
    fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, 100);
    fs.closeSync(fd);
    const changed = await runCli(['verify', src.file, card.path], { db: env.db });
    assert.equal(changed.code, 4, explain(changed));
  });

  await t.test('onto 3 GiB that held a GPT: no GPT signature is left at its end', async () => {
    const big = usedDrive(env, 'big.img', 3 * GIB);
    run('sgdisk', ['-o', '-n', '1:2048:+100M', big.path]);
    const r = await runCli(['clone', src.file, big.path, '--new-ids', '--yes'], { db: env.db });
    assert.equal(r.code, 0, explain(r));
    assert.equal(run('blkid', ['-p', '-s', 'PTTYPE', '-o', 'value', big.path]).trim(), 'dos');
    assert.ok(
      readRange(big.path, 3 * GIB - MIB, MIB).every((b) => b === 0),
      'its last MiB is cleared',
    );
    const sig = (dev: string): string =>
      run('blkid', ['-p', '-s', 'PTUUID', '-o', 'value', dev]).trim();
    assert.notEqual(sig(big.path), sig(src.file), 'a new MBR disk signature');
    assertPartitionsCopied(src.file, big.path, src.files);
  });
});
