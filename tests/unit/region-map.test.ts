import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHUNK_BYTES, RegionMap } from '../../engine/store/region-map';

const CHUNK_REGIONS = CHUNK_BYTES * 8; // 32768

test('a set region is reported set and counted once', () => {
  const map = new RegionMap(100);
  assert.equal(map.count, 0);
  assert.equal(map.has(7), false);
  map.set(7);
  map.set(7);
  map.set(0);
  map.set(99);
  assert.equal(map.count, 3);
  assert.ok(map.has(0) && map.has(7) && map.has(99));
  assert.equal(map.has(8), false);
  assert.equal(map.has(6), false);
});

test('clearing a region unsets it and uncounts it once', () => {
  const map = new RegionMap(20);
  map.setRange(0, 20);
  assert.equal(map.count, 20);
  map.clear(9);
  map.clear(9);
  assert.equal(map.count, 19);
  assert.equal(map.has(9), false);
  assert.equal(map.has(8), true);
  assert.equal(map.has(10), true);
  map.clear(19);
  assert.equal(map.count, 18);
});

test('setting a region outside the map is refused', () => {
  const map = new RegionMap(10);
  assert.throws(() => map.set(10), RangeError);
  assert.throws(() => map.set(-1), RangeError);
  assert.equal(map.count, 0);
});

test('nextClear skips full bytes and finds the first unset region', () => {
  const map = new RegionMap(100);
  map.setRange(0, 37);
  assert.equal(map.nextClear(0), 37);
  assert.equal(map.nextClear(5), 37);
  assert.equal(map.nextClear(37), 37);
  assert.equal(map.nextClear(38), 38);
  map.setRange(37, 62); // all but 99
  assert.equal(map.nextClear(0), 99);
  assert.equal(map.nextClear(3), 99);
  map.set(99);
  assert.equal(map.nextClear(0), -1);
  assert.equal(map.nextClear(100), -1);
});

test('nextClear returns -1 when the map is full and its size is a multiple of 8', () => {
  const map = new RegionMap(64);
  map.setRange(0, 64);
  assert.equal(map.nextClear(0), -1);
  map.clear(63);
  assert.equal(map.nextClear(0), 63);
  map.clear(8);
  assert.equal(map.nextClear(1), 8);
  assert.equal(map.nextClear(9), 63);
});

test('runs lists every run of set regions, including ones at both ends', () => {
  const map = new RegionMap(50);
  assert.deepEqual(map.runs(), []);
  map.setRange(0, 3);
  map.set(10);
  map.setRange(15, 17); // 15..31 crosses byte boundaries
  map.setRange(45, 5);
  assert.deepEqual(map.runs(), [
    { first: 0, count: 3 },
    { first: 10, count: 1 },
    { first: 15, count: 17 },
    { first: 45, count: 5 },
  ]);
  map.setRange(0, 50);
  assert.deepEqual(map.runs(), [{ first: 0, count: 50 }]);
});

test('takeDirtyChunks returns only the chunks changed since the last call, then nothing', () => {
  const map = new RegionMap(CHUNK_REGIONS * 3 + 5);
  assert.deepEqual(map.takeDirtyChunks(), []);
  map.set(CHUNK_REGIONS * 2 + 1);
  map.set(3);
  map.set(4);
  const first = map.takeDirtyChunks();
  assert.deepEqual(
    first.map((c) => c.index),
    [0, 2],
  );
  assert.equal(first[0].bytes.length, CHUNK_BYTES);
  assert.equal(first[0].bytes[0], 0b00011000);
  assert.equal(first[1].bytes[0], 0b00000010);
  assert.deepEqual(map.takeDirtyChunks(), []);
  // Setting an already-set region changes nothing.
  map.set(3);
  assert.deepEqual(map.takeDirtyChunks(), []);
  // The short last chunk is only as long as the map.
  map.set(CHUNK_REGIONS * 3 + 4);
  const last = map.takeDirtyChunks();
  assert.deepEqual(
    last.map((c) => [c.index, c.bytes.length]),
    [[3, 1]],
  );
  // Clearing dirties too.
  map.clear(4);
  assert.deepEqual(
    map.takeDirtyChunks().map((c) => c.index),
    [0],
  );
  assert.deepEqual(map.takeDirtyChunks(), []);
});

test('taken chunks are copies: later changes do not alter what was taken', () => {
  const map = new RegionMap(16);
  map.set(1);
  const [chunk] = map.takeDirtyChunks();
  map.set(2);
  assert.equal(chunk.bytes[0], 0b10);
});

test('load restores bits and count across several chunks and ignores spare bits past the last region', () => {
  const regionCount = CHUNK_REGIONS * 2 + 1003; // three chunks, not a multiple of 8
  assert.ok(regionCount % 8 !== 0);
  const original = new RegionMap(regionCount);
  const picked = [
    0,
    1,
    8,
    4095,
    CHUNK_REGIONS - 1,
    CHUNK_REGIONS,
    CHUNK_REGIONS + 77,
    2 * CHUNK_REGIONS,
    regionCount - 1,
  ];
  for (const r of picked) original.set(r);
  original.setRange(1000, 2000);
  original.setRange(CHUNK_REGIONS * 2 + 500, 300);
  const saved = original
    .takeDirtyChunks()
    .map((c) => ({ index: c.index, bytes: Buffer.from(c.bytes) }));
  assert.deepEqual(
    saved.map((c) => c.index),
    [0, 1, 2],
  );
  // Set the spare bits of the last byte, as a damaged row might.
  const last = saved[2];
  last.bytes[last.bytes.length - 1] |= (0xff << (regionCount % 8)) & 0xff;

  const restored = new RegionMap(regionCount);
  restored.load(saved);
  assert.equal(restored.count, original.count);
  assert.deepEqual(restored.runs(), original.runs());
  for (let r = 0; r < regionCount; r++) {
    if (restored.has(r) !== original.has(r)) assert.fail(`region ${r} differs`);
  }
  assert.equal(restored.has(regionCount), false);
  assert.equal(restored.nextClear(regionCount - 3), regionCount - 3);
});

test('load ignores chunks past the end of the map and bytes past its last byte', () => {
  const map = new RegionMap(20); // 3 bytes
  map.load([
    { index: 0, bytes: Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff]) },
    { index: 5, bytes: Uint8Array.from([0xff]) },
  ]);
  assert.equal(map.count, 20);
  assert.equal(map.nextClear(0), -1);
  assert.deepEqual(map.runs(), [{ first: 0, count: 20 }]);
});

test('a loaded map hands out no dirty chunks until it changes', () => {
  const source = new RegionMap(CHUNK_REGIONS + 10);
  source.set(5);
  const restored = new RegionMap(CHUNK_REGIONS + 10);
  restored.load(source.takeDirtyChunks());
  assert.deepEqual(restored.takeDirtyChunks(), []);
  restored.set(CHUNK_REGIONS + 1);
  assert.deepEqual(
    restored.takeDirtyChunks().map((c) => c.index),
    [1],
  );
});
