import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatDuration, parseSize } from '../../engine/size';

test('parseSize reads plain bytes and binary multiples', () => {
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('64K'), 64 * 1024);
  assert.equal(parseSize('4M'), 4 * 1024 ** 2);
  assert.equal(parseSize('1G'), 1024 ** 3);
  assert.equal(parseSize('100M'), 100 * 1024 ** 2);
  assert.equal(parseSize('1GiB'), 1024 ** 3);
  assert.equal(parseSize('2T'), 2 * 1024 ** 4);
});

test('parseSize ignores case, surrounding spaces and a trailing B', () => {
  assert.equal(parseSize('64k'), 64 * 1024);
  assert.equal(parseSize(' 4M '), 4 * 1024 ** 2);
  assert.equal(parseSize('4MB'), 4 * 1024 ** 2);
  assert.equal(parseSize('4 MiB'), 4 * 1024 ** 2);
});

test('parseSize refuses zero, negatives, fractions, unknown units and empty text', () => {
  for (const bad of [
    '0',
    '0K',
    '-1',
    '-4M',
    '1.5M',
    '4X',
    '',
    '   ',
    'M',
    'K4',
    '4 M M',
    '0x1000',
  ]) {
    assert.throws(() => parseSize(bad), RangeError, `"${bad}" should be refused`);
  }
});

test('parseSize refuses sizes too large to count exactly', () => {
  assert.throws(() => parseSize('99999999999999999999'), RangeError);
  assert.throws(() => parseSize('10000T'), RangeError); // 10000 TiB > 2^53
  assert.equal(parseSize('8191T'), 8191 * 1024 ** 4); // just under 2^53
});

test('parseSize errors quote the text and give examples', () => {
  assert.throws(() => parseSize('4X'), /"4X" is not a size \(examples: 4096, 64K, 4M, 1G\)/);
  assert.throws(() => parseSize('0'), /"0" is not a positive size/);
});

test('formatBytes shows bytes below 1 KiB and binary units above', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1024), '1.00 KiB');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(64 * 1024), '64.0 KiB');
  assert.equal(formatBytes(4 * 1024 ** 2), '4.00 MiB');
  assert.equal(formatBytes(1024 ** 3), '1.00 GiB');
  assert.equal(formatBytes(3 * 1024 ** 4), '3.00 TiB');
  assert.equal(formatBytes(2048 * 1024 ** 4), '2048.0 TiB'); // no unit past TiB
});

test('formatDuration shows mm:ss under an hour, h:mm:ss above, and --:-- when unknown', () => {
  assert.equal(formatDuration(0), '00:00');
  assert.equal(formatDuration(59.4), '00:59');
  assert.equal(formatDuration(59.6), '01:00');
  assert.equal(formatDuration(754), '12:34');
  assert.equal(formatDuration(3600), '1:00:00');
  assert.equal(formatDuration(3 * 3600 + 5 * 60 + 7), '3:05:07');
  assert.equal(formatDuration(-5), '00:00');
  assert.equal(formatDuration(Infinity), '--:--');
  assert.equal(formatDuration(NaN), '--:--');
});
