// Every refused clone exits 2, writes nothing to its destination and creates no job.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { runCli, type CliResult, explain } from '../helpers/cli';
import { sha256, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

/** A random image file of `size` bytes; its path. */
function randomImage(file: string, size: number, seed: number): string {
  writeRandomFile(file, size, seed);
  return file;
}

function hashOf(p: string): string {
  if (fs.statSync(p).isBlockDevice()) execFileSync('blockdev', ['--flushbufs', p]);
  return sha256(p);
}

/**
 * Runs `drivetwin ARGS --json` and proves the refusal: exit 2, a fatal error event
 * with a message, every `untouched` path hashing as before, no job in `db`.
 */
async function assertRefused(
  env: Workspace,
  args: string[],
  untouched: string[],
  opts: { db?: string; checkJobs?: boolean; message?: RegExp; notMessage?: RegExp } = {},
): Promise<CliResult> {
  const db = opts.db ?? env.db;
  const before = untouched.map(hashOf);
  const r = await runCli([...args, '--json'], { db, timeoutMs: 60_000 });
  assert.equal(r.code, 2, `drivetwin ${args.join(' ')}: ${explain(r)}`);
  const errors = r.events.filter((e) => e.type === 'error');
  assert.equal(errors.length, 1, explain(r));
  assert.equal(errors[0].fatal, true);
  assert.ok(typeof errors[0].message === 'string' && errors[0].message.length > 0);
  assert.ok(
    !r.events.some((e) => e.type === 'start' || e.type === 'progress' || e.type === 'done'),
    `a refused clone never starts: ${explain(r)}`,
  );
  if (opts.message) assert.match(errors[0].message as string, opts.message, explain(r));
  if (opts.notMessage)
    assert.doesNotMatch(errors[0].message as string, opts.notMessage, explain(r));
  untouched.forEach((p, i) =>
    assert.equal(hashOf(p), before[i], `${p} was written to: ${explain(r)}`),
  );
  if (opts.checkJobs ?? true) {
    const jobs = await runCli(['jobs', '--json'], { db });
    assert.equal(jobs.code, 0, explain(jobs));
    assert.deepEqual(jobs.events, [], `no job may be created: ${jobs.stdout}`);
  }
  return r;
}

test('destination is the source: same path, a symlink', async (t) => {
  const env = workspace(t, 'ref-same');
  const src = randomImage(env.file('src.img'), 8 * MIB, 1);
  await assertRefused(env, ['clone', src, src], [src]);
  const link = env.file('link.img');
  fs.symlinkSync(src, link);
  await assertRefused(env, ['clone', src, link], [src]);
  await assertRefused(env, ['clone', link, src], [src]);
  // Among several destinations too: the others are not written either.
  const other = randomImage(env.file('other.img'), 8 * MIB, 2);
  await assertRefused(env, ['clone', src, other, link], [src, other]);
});

test('source missing, source a directory', async (t) => {
  const env = workspace(t, 'ref-source');
  const dst = randomImage(env.file('dst.img'), 4 * MIB, 3);
  await assertRefused(env, ['clone', env.file('missing.img'), dst], [dst]);
  fs.mkdirSync(env.file('folder'));
  await assertRefused(env, ['clone', env.file('folder'), dst], [dst]);
  // A missing destination folder is refused too.
  const src = randomImage(env.file('src.img'), 4 * MIB, 4);
  await assertRefused(env, ['clone', src, env.file('nowhere/dst.img')], [dst]);
  assert.equal(fs.existsSync(env.file('nowhere')), false);
});

test('bad sizes and flags', async (t) => {
  const env = workspace(t, 'ref-flags');
  const src = randomImage(env.file('src.img'), 4 * MIB, 5);
  const dst = randomImage(env.file('dst.img'), 4 * MIB, 6);
  const fresh = env.file('fresh.img');
  for (const flags of [
    ['--region-size', '3000'],
    ['--region-size', '2G'],
    ['--region-size', '2K'],
    ['--region-size', 'lots'],
    ['--threshold', '0'],
    ['--batch', '0'],
    ['--throttle', '0'],
    ['--throttle', '101'],
    ['--throttle', '5.5'],
    ['--max-rate', 'abc'],
    ['--frobnicate'],
    ['--sparse', '--no-sparse'],
  ]) {
    await t.test(flags.join(' '), async () => {
      await assertRefused(env, ['clone', src, dst, ...flags], [dst, src]);
      await assertRefused(env, ['clone', src, fresh, ...flags], [src]);
      assert.equal(fs.existsSync(fresh), false, 'a refused clone creates no image file');
    });
  }
  await t.test('no destination', async () => {
    await assertRefused(env, ['clone', src], [src]);
  });
});

test("--db: not SQLite, another program's SQLite, another major version", async (t) => {
  const env = workspace(t, 'ref-db');
  const src = randomImage(env.file('src.img'), 4 * MIB, 7);
  const dst = randomImage(env.file('dst.img'), 4 * MIB, 8);

  await t.test('a file that is not SQLite', async () => {
    const junk = randomImage(env.file('junk.db'), 64 * 1024, 9);
    await assertRefused(env, ['clone', src, dst, '--db', junk], [dst, junk], {
      message: /database/i,
    });
  });

  await t.test("another program's SQLite database is refused and left as it was", async () => {
    const theirs = env.file('theirs.db');
    const db = new Database(theirs);
    db.exec(
      "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES ('hello');",
    );
    db.close();
    await assertRefused(env, ['clone', src, dst, '--db', theirs], [dst, theirs], {
      message: /database/i,
    });
    const after = new Database(theirs, { readonly: true });
    const tables = after
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
      .all() as Array<{ name: string }>;
    assert.deepEqual(
      tables.map((x) => x.name),
      ['notes'],
    );
    assert.equal(
      after.pragma('journal_mode', { simple: true }),
      'delete',
      'their journal mode is theirs',
    );
    after.close();
    assert.equal(fs.existsSync(`${theirs}-wal`), false);
  });

  await t.test('a DriveTwin database of schema major 2', async () => {
    const ours = env.file('ours.db');
    const first = await runCli(['clone', src, env.file('first.img'), '--db', ours, '--json'], {
      db: env.db,
    });
    assert.equal(first.code, 0, explain(first));
    const db = new Database(ours);
    assert.equal(
      db.prepare("UPDATE meta SET value = '2' WHERE key = 'schema_major'").run().changes,
      1,
    );
    db.close();
    const r = await assertRefused(env, ['clone', src, dst, '--db', ours], [dst], {
      message: /schema|version/i,
    });
    assert.match(r.stderr, /2\./, 'the message names the schema found');
    const jobs = await runCli(['jobs', '--json', '--db', ours], { db: env.db });
    assert.equal(jobs.code, 2, explain(jobs));
    const check = new Database(ours, { readonly: true });
    assert.equal((check.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n, 1);
    check.close();
  });
  // The sane database named by DRIVETWIN_DB got no job from any of this.
  const jobs = await runCli(['jobs', '--json'], { db: env.db });
  assert.deepEqual(jobs.events, []);
});

test('destination smaller than the source (loop device)', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'ref-small');
  const src = randomImage(env.file('src.img'), 16 * MIB, 10);
  const small = env.attach(randomImage(env.file('small.img'), 16 * MIB - 4096, 11));
  await assertRefused(env, ['clone', src, small.path, '--yes'], [small.path], {
    message: /smaller/,
  });
  // With a second, large enough destination: neither is written.
  const big = env.attach(randomImage(env.file('big.img'), 20 * MIB, 12));
  await assertRefused(env, ['clone', src, big.path, small.path, '--yes'], [small.path, big.path]);
});

test('destination is the source through a loop device', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'ref-loop');
  const img = randomImage(env.file('src.img'), 16 * MIB, 13);
  const loop = env.attach(img);
  await t.test('a loop device whose backing file is the source image', async () => {
    await assertRefused(env, ['clone', img, loop.path, '--yes'], [img]);
  });
  await t.test('the backing file of the source loop device', async () => {
    await assertRefused(env, ['clone', loop.path, img, '--yes'], [img]);
  });
  await t.test('the same loop device', async () => {
    await assertRefused(env, ['clone', loop.path, loop.path, '--yes'], [img]);
  });
  await t.test('a symlink to the image seen through the loop device', async () => {
    const link = env.file('link.img');
    fs.symlinkSync(img, link);
    await assertRefused(env, ['clone', link, loop.path, '--yes'], [img]);
  });
});

/** One primary Linux partition from 1 MiB to the end: sfdisk when installed, else a hand-written MBR. */
function partition(file: string, size: number): void {
  const hasSfdisk = spawnSync('sfdisk', ['--version'], { stdio: 'ignore' }).status === 0;
  if (hasSfdisk) {
    execFileSync('sfdisk', ['--quiet', file], { input: 'label: dos\nstart=2048, type=83\n' });
    return;
  }
  const mbr = Buffer.alloc(512);
  const entry = 446;
  mbr[entry] = 0x00; // not bootable
  mbr.set([0xfe, 0xff, 0xff], entry + 1); // CHS: use LBA
  mbr[entry + 4] = 0x83;
  mbr.set([0xfe, 0xff, 0xff], entry + 5);
  mbr.writeUInt32LE(2048, entry + 8);
  mbr.writeUInt32LE(size / 512 - 2048, entry + 12);
  mbr.writeUInt32LE(0x5eed1234, 440); // disk signature
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, mbr, 0, 512, 0);
  fs.closeSync(fd);
}

test('a partition of the source drive, and the drive holding the source partition', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'ref-part');
  const size = 64 * MIB;
  const img = randomImage(env.file('disk.img'), size, 14);
  partition(img, size);
  const disk = env.attach(img, { partscan: true });
  const part = `${disk.path}p1`;
  for (let i = 0; i < 10 && !fs.existsSync(part); i++) await new Promise((r) => setTimeout(r, 100));
  if (!fs.existsSync(part)) {
    // A kernel built without partition table parsers (CONFIG_MSDOS_PARTITION unset)
    // scans nothing: partx reads the table itself and adds the partition (BLKPG).
    execFileSync('partx', ['--add', disk.path]);
    for (let i = 0; i < 20 && !fs.existsSync(part); i++)
      await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(fs.existsSync(part), `${part} did not appear`);
  if (spawnSync('sfdisk', ['--version'], { stdio: 'ignore' }).status !== 0) {
    t.diagnostic('sfdisk is not installed (Debian package fdisk): the MBR was written by hand');
  }

  await t.test('drive → its own partition', async () => {
    // The partition is also smaller than the drive: the refusal must be for what it is.
    await assertRefused(env, ['clone', disk.path, part, '--yes'], [part, disk.path], {
      notMessage: /smaller/,
    });
  });
  await t.test('partition → the drive that holds it', async () => {
    await assertRefused(env, ['clone', part, disk.path, '--yes'], [part, disk.path]);
  });
  await t.test('image file → a partition of the loop device over it', async () => {
    await assertRefused(env, ['clone', img, part, '--yes'], [img], { notMessage: /smaller/ });
  });
});

test('a mounted destination', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'ref-mount');
  const src = randomImage(env.file('src.img'), 16 * MIB, 15);
  const fsFile = env.file('fs.img');
  fs.writeFileSync(fsFile, '');
  fs.truncateSync(fsFile, 32 * MIB);
  const dst = env.attach(fsFile);
  // Inode tables and journal written at mkfs, not by ext4lazyinit after the mount: that
  // thread writes to the device on its own seconds later, which read as the refused
  // clone having written (a CI run failed so).
  const eagerInit = ['-E', 'lazy_itable_init=0,lazy_journal_init=0'];
  execFileSync('mkfs.ext4', ['-q', '-F', ...eagerInit, dst.path], { stdio: 'ignore' });
  const mnt = env.file('mnt');
  fs.mkdirSync(mnt);
  execFileSync('mount', [dst.path, mnt]);
  try {
    fs.writeFileSync(path.join(mnt, 'precious.txt'), 'keep me');
    execFileSync('sync');
    const r = await assertRefused(env, ['clone', src, dst.path, '--yes'], [dst.path], {
      message: /mount/i,
    });
    assert.match(
      r.stderr,
      new RegExp(mnt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')),
      'names the mount point',
    );
    assert.equal(fs.readFileSync(path.join(mnt, 'precious.txt'), 'utf8'), 'keep me');
  } finally {
    execFileSync('umount', [mnt]);
  }
});

test('a drive destination without --yes and without a terminal', async (t) => {
  if (!requireRoot(t)) return;
  const env = workspace(t, 'ref-yes');
  const src = randomImage(env.file('src.img'), 8 * MIB, 16);
  const dst = env.attach(randomImage(env.file('dst.img'), 8 * MIB, 17));
  const r = await assertRefused(env, ['clone', src, dst.path], [dst.path], {
    message: /confirm|--yes/,
  });
  assert.match(r.stderr, /--yes/);
  // Typing on a pipe is no terminal either.
  const before = hashOf(dst.path);
  const piped = await runCli(['clone', src, dst.path], { db: env.db, input: 'yes\n' });
  assert.equal(piped.code, 2, explain(piped));
  assert.equal(hashOf(dst.path), before);
});
