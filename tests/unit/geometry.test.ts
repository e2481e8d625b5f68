import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_REGION_SIZE,
  MAX_REGION_SIZE,
  MIN_REGION_SIZE,
  makeGeometry,
  regionRange,
  regionSizeProblem,
  regionsOf,
} from '../../engine/geometry';

const K = 1024;
const M = 1024 * K;
const G = 1024 * M;

test('region sizes from 4K to 1G that are powers of two serve 512- and 4096-byte blocks', () => {
  for (let size = 4 * K; size <= G; size *= 2) {
    assert.equal(regionSizeProblem(size, [512, 4096]), null, `${size}`);
  }
  assert.equal(MIN_REGION_SIZE, 4 * K);
  assert.equal(MAX_REGION_SIZE, G);
  assert.equal(regionSizeProblem(DEFAULT_REGION_SIZE, [512]), null);
  assert.equal(regionSizeProblem(64 * K, []), null);
});

test('a region size that is not a power of two is refused', () => {
  for (const size of [3 * 4 * K, 100 * K, 4 * K + 512, 0, -4096, 4096.5, NaN]) {
    assert.match(regionSizeProblem(size, [512]) ?? '', /not a power of two/, `${size}`);
  }
});

test('a power of two below 4K or above 1G is refused', () => {
  for (const size of [512, 2 * K, 2 * G, 4 * G, 2 ** 40]) {
    assert.match(regionSizeProblem(size, [512]) ?? '', /outside 4K–1G/, `${size}`);
  }
});

test('a region size smaller than a device block, or not a multiple of it, is refused', () => {
  // Every power of two from 4K up is a multiple of 512 and 4096, so the rule shows with
  // larger or odd block sizes.
  assert.match(
    regionSizeProblem(4 * K, [512, 8 * K]) ?? '',
    /not a multiple of the 8192-byte blocks/,
  );
  assert.match(regionSizeProblem(64 * K, [520]) ?? '', /not a multiple of the 520-byte blocks/);
  assert.match(regionSizeProblem(64 * K, [512, 4096, 3000]) ?? '', /3000-byte/);
  assert.equal(regionSizeProblem(4 * K, [4096, 512, 4096]), null);
});

test('a size that is a multiple of the region has no short last region', () => {
  const g = makeGeometry(16 * M, M);
  assert.deepEqual(g, { size: 16 * M, regionSize: M, regionCount: 16 });
  assert.deepEqual(regionRange(g, 15), { offset: 15 * M, length: M });
});

test('a size that is not a multiple of the region ends with a short last region', () => {
  const size = 10 * M + 4096 + 512;
  const g = makeGeometry(size, M);
  assert.equal(g.regionCount, 11);
  assert.deepEqual(regionRange(g, 0), { offset: 0, length: M });
  assert.deepEqual(regionRange(g, 9), { offset: 9 * M, length: M });
  assert.deepEqual(regionRange(g, 10), { offset: 10 * M, length: 4096 + 512 });
  // A batch running into the end is cut at the end.
  assert.deepEqual(regionRange(g, 8, 3), { offset: 8 * M, length: 2 * M + 4608 });
  assert.deepEqual(regionRange(g, 0, g.regionCount), { offset: 0, length: size });
});

test('a size smaller than one region makes a single short region', () => {
  const g = makeGeometry(512, 64 * K);
  assert.equal(g.regionCount, 1);
  assert.deepEqual(regionRange(g, 0), { offset: 0, length: 512 });
  assert.equal(makeGeometry(0, 64 * K).regionCount, 0);
});

test('batches of regions cover the size exactly once', () => {
  const g = makeGeometry(7 * M + 12345, 256 * K);
  let total = 0;
  for (let r = 0; r < g.regionCount; r += 3) total += regionRange(g, r, 3).length;
  assert.equal(total, g.size);
});

test('regionsOf finds the regions a byte range touches, at region edges', () => {
  const g = makeGeometry(10 * M + 4096, M);
  assert.deepEqual(regionsOf(g, { offset: 0, length: 1 }), { first: 0, count: 1 });
  assert.deepEqual(regionsOf(g, { offset: 0, length: M }), { first: 0, count: 1 });
  assert.deepEqual(regionsOf(g, { offset: 0, length: M + 1 }), { first: 0, count: 2 });
  assert.deepEqual(regionsOf(g, { offset: M - 1, length: 1 }), { first: 0, count: 1 });
  assert.deepEqual(regionsOf(g, { offset: M - 1, length: 2 }), { first: 0, count: 2 });
  assert.deepEqual(regionsOf(g, { offset: M, length: M }), { first: 1, count: 1 });
  assert.deepEqual(regionsOf(g, { offset: 3 * M + 512, length: 512 }), { first: 3, count: 1 });
  // The short last region.
  assert.deepEqual(regionsOf(g, { offset: 10 * M, length: 4096 }), { first: 10, count: 1 });
  assert.deepEqual(regionsOf(g, { offset: 10 * M + 4095, length: 1 }), { first: 10, count: 1 });
  assert.deepEqual(regionsOf(g, { offset: 0, length: g.size }), { first: 0, count: g.regionCount });
});

test('regionsOf and regionRange agree: a region range maps back to that region', () => {
  const g = makeGeometry(5 * M + 777, 128 * K);
  for (let r = 0; r < g.regionCount; r++) {
    assert.deepEqual(regionsOf(g, regionRange(g, r)), { first: r, count: 1 });
  }
});
