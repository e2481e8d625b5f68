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
