// What the engine and the backend say, as the window shows it (renderer/lib/plain-words.ts):
// in the user's terms, with places as sizes, the window's names for its options, and
// the system's error codes as what they mean — never a command-line flag, an error code
// or a byte offset (those stay behind Details).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  explainError,
  failureWords,
  plainText,
  refusalWords,
  usedOnlyReason,
} from '../../renderer/lib/plain-words';
import { ENGINE_ONLY } from '../helpers/engine-words';

const context = (finished: boolean) => ({
  source: '/src.img',
  destinations: ['/a.img', '/b.img'],
  label: (p: string) => p,
  finished,
});

/** Engine and backend messages the window can show, as they are worded today. */
const SAID = [
  'write failed on /dev/loop8 at byte 315621376 (+2097152): ENOSPC',
  'ENOSPC: no space left on device, write',
  'read failed on /dev/loop3 at byte 8392704 (+4096): EIO',
  'EIO: i/o error, read',
  'ENOTCONN: socket is not connected, close',
  '--used-only: /dev/loop1 holds no partition table and no ext2/3/4, FAT, NTFS or exFAT file system',
  '--used-only: partition 2 of /dev/sdb: ntfs filesystem refused for a used-space copy: the volume is marked dirty: Windows was not shut down cleanly, or chkdsk is due (run chkdsk /f in Windows)',
  "--used-only: partition 3 of /dev/sdb: exfat filesystem refused for a used-space copy: the allocation bitmap at cluster 16872 lies outside the volume's 15872 clusters",
  '--used-only: /dev/sdb is mounted; unmount it first',
  '--fit: /a.img is not a partitioned disk: it holds no MBR or GPT partition table',
  "--new-ids: /a.img.zst is a compressed backup: it keeps the source's image as it is",
  '--new-ids: the size of /a.img.xz is not known before it is read; add --fit',
  "--region-size can't change for job 3 (it copies 1.00 MiB regions); run the clone with --fresh to start over",
  '--from-map seeds a new job, and job 2 already copies this source to these destinations; run the clone with --fresh to start over',
  '--drop /b.img: job 4 does not write there',
  "the last partition ends at 1.50 GiB and its GPT's backup needs 16.5 KiB after it; this drive holds 1.40 GiB",
  "/dev/sdc (1.40 GiB) is smaller than the source (2.00 GiB), but its partitions fit: the last partition ends at 1.50 GiB and its GPT's backup needs 16.5 KiB after it; this drive holds 1.60 GiB. Copy only them with --fit",
  'a job that changes --sparse / --no-sparse is refused: the job keeps what it started with',
  'destination /b.img is in use: job 2 (process 4711) writes it',
  'the xz index at byte 1048576 is corrupt: bad record count',
  "EACCES: permission denied, open '/dev/sdb'",
  "EBUSY: resource busy or locked, open '/dev/sdb'",
  'EPERM: operation not permitted, open',
  "ENOENT: no such file or directory, open '/x/y.img'",
  'EROFS: read-only file system, open',
  'ENOMEM: not enough memory',
  'EWEIRD: something the engine has never seen',
  'the partitions of /s.img end past its end (1610612736 > 1073741824 bytes): the image is cut short',
  'zeroing free space only makes sense with --used-only',
  'unknown flag --frobnicate',
  "can't ask for administrator rights: spawn pkexec ENOENT",
];

describe('plain words for what the engine says', () => {
  test('never an error code, a byte offset or a command-line flag', () => {
    for (const said of SAID) {
      const shown = [plainText(said), refusalWords(said), failureWords(said)];
      for (const text of shown) {
        for (const [what, pattern] of ENGINE_ONLY) {
          assert.doesNotMatch(text, pattern, `${what} in "${text}" (from "${said}")`);
        }
      }
    }
  });

  test('the words the issue met, renamed or explained', () => {
    assert.equal(
      plainText('write failed on /dev/loop8 at byte 315621376 (+2097152): ENOSPC'),
      'Writing to /dev/loop8 failed at 301 MiB (2.00 MiB): it is full, with no room left to write.',
    );
    const usedOnly = refusalWords(
      '--used-only: /dev/loop1 holds no partition table and no ext2/3/4, FAT, NTFS or exFAT file system',
    );
    assert.match(
      usedOnly,
      /^“Copy only used space” can’t be used for this copy: \/dev\/loop1 holds no partition table/,
    );
    assert.equal(
      usedOnlyReason('--used-only: partition 2 of /dev/sdb: ntfs filesystem refused: dirty'),
      'Partition 2 of /dev/sdb: ntfs filesystem refused: dirty.',
    );
    assert.equal(usedOnlyReason('--fit: /a.img is not a partitioned disk'), null);
    assert.match(usedOnly, /Untick it in Options to copy everything\.$/);
    assert.equal(
      plainText(
        "the last partition ends at 1.50 GiB and its GPT's backup needs 16.5 KiB after it; this drive holds 1.40 GiB",
      ),
      'The last partition ends at 1.50 GiB, plus 16.5 KiB after it for the spare copy of the partition table; this drive holds 1.40 GiB.',
    );
    assert.match(
      plainText(
        "--region-size can't change for job 3 (it copies 1.00 MiB regions); run the clone with --fresh to start over",
      ),
      /^The piece size can't change for job 3 \(it copies 1\.00 MiB pieces\); choose “Start over instead” to start over\.$/,
    );
    assert.equal(plainText('EWEIRD: something new'), 'The system refused it.');
    assert.match(plainText('unknown flag --frobnicate'), /“frobnicate”/);
    assert.equal(
      plainText("can't ask for administrator rights: spawn pkexec ENOENT"),
      "Can't ask for administrator rights: pkexec is not installed.",
    );
  });

  test('paths are left as they are', () => {
    assert.equal(
      plainText('/mnt/regions/destination.img can’t be read'),
      '/mnt/regions/destination.img can’t be read.',
    );
  });
});

describe('errors during a copy', () => {
  test('a full target: "The target … is full after 301 MiB", the engine’s words kept for Details', () => {
    const e = {
      job: 1,
      message: 'write failed on /b.img at byte 315621376 (+2097152): ENOSPC',
      device: '/b.img',
      offset: 315621376,
      length: 2097152,
      fatal: false,
    };
    const x = explainError(e, context(false));
    assert.equal(x.title, 'The target /b.img is full after 301 MiB');
    assert.equal(x.cause, 'It is full, with no room left to write.');
    assert.equal(x.detail, e.message);
    for (const text of [x.title, x.cause, x.todo, x.where ?? '']) {
      for (const [what, pattern] of ENGINE_ONLY) assert.doesNotMatch(text, pattern, what);
    }
  });

  test('a drive that stops answering says so; places are sizes', () => {
    const gone = {
      job: 1,
      message: 'ENOTCONN: socket is not connected, close',
      device: '/a.img',
      fatal: true,
    };
    assert.equal(explainError(gone, context(false)).title, 'The target /a.img stopped answering');
    const unreadable = {
      job: 1,
      message: 'read failed on /src.img at byte 8392704 (+4096): EIO',
      device: '/src.img',
      offset: 8392704,
      length: 4096,
      fatal: true,
    };
    const x = explainError(unreadable, context(false));
    assert.equal(x.title, 'Reading the source /src.img failed');
    assert.equal(x.where, 'at 8.00 MiB from the start (4.00 KiB)');
    assert.match(x.cause, /reported an error there \(a damaged area, or a loose cable\)/);
  });

  test('what happened is told in the present while it runs, in the past once it ended', () => {
    const unreadable = {
      job: 1,
      message: 'EIO',
      device: '/src.img',
      offset: 0,
      length: 4096,
      fatal: false,
    };
    assert.match(explainError(unreadable, context(false)).todo, /^The copy goes on\./);
    assert.match(explainError(unreadable, context(true)).todo, /^The copy went on past them\./);
    const targetLeft = { job: 1, message: 'ENOSPC', device: '/b.img', fatal: false };
    assert.match(explainError(targetLeft, context(false)).todo, /the other targets go on\./);
    assert.match(explainError(targetLeft, context(true)).todo, /the other targets went on\./);
    const other = { job: 1, message: 'something', fatal: false };
    assert.equal(explainError(other, context(false)).todo, 'The copy goes on.');
    assert.equal(explainError(other, context(true)).todo, 'The copy went on past it.');
  });
});

test('a download: a retry is no unreadable block, and what stopped it is said for what it is', () => {
  const url = 'https://example.invalid/disk.img.xz';
  const ctx = { source: url, destinations: ['/a.img'], label: (p: string) => p, finished: false };
  const retry = {
    job: 1,
    device: url,
    offset: 12 * 1024 * 1024,
    fatal: false,
    message: 'download: the connection was cut (ECONNRESET) …',
    retry: { attempt: 2, attempts: 9, delayMs: 1000 },
  };
  const told = explainError(retry, ctx);
  assert.match(told.title, /^The download of .* was interrupted$/);
  assert.match(told.cause, /tries again in 1 s \(attempt 2 of 9\).*nothing is lost/);
  assert.doesNotMatch(JSON.stringify(told), /zeros|unreadable/);
  const mismatch = {
    job: 1,
    device: url,
    fatal: true,
    message: `${url}: the downloaded file's SHA-256 is ${'a'.repeat(64)}, not ${'b'.repeat(64)} (given)`,
  };
  assert.match(explainError(mismatch, ctx).title, /is not the file expected/);
  const changed = {
    job: 1,
    device: url,
    fatal: true,
    message: `${url}: the file changed on the server since…`,
  };
  assert.match(explainError(changed, ctx).todo, /Start over/);
  const gone = {
    job: 1,
    device: url,
    fatal: true,
    message: `${url}: nothing answers at example.invalid`,
  };
  assert.match(explainError(gone, { ...ctx, finished: true }).todo, /resume the copy from Jobs/);
});
