import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explainError } from '../../renderer/lib/plain-words';

const context = (finished: boolean) => ({
  source: '/src.img',
  destinations: ['/a.img', '/b.img'],
  label: (p: string) => p,
  finished,
});

test('what happened during a copy is told in the present while it runs, in the past once it ended', () => {
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
