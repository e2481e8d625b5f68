// The renderer's region map model (renderer/lib/region-cells.ts), under plain Node:
// squares say exactly what their regions are, and millions of regions cost what a
// few thousand do (memory and time bounded by the bucket count, not the disk).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_BUCKETS, RegionCells } from '../../renderer/lib/region-cells';
import type { RegionMapChange } from '../../preload/events';

function change(over: Partial<RegionMapChange>): RegionMapChange {
  return {
    job: 1,
    reset: false,
    regionSize: 1 << 20,
    regionsTotal: 100,
    hydrated: [],
    hydrating: [],
    written: [],
    unreadable: [],
    ...over,
  };
}

test('each square tells hydrated, in flight, written (awaiting the commit), unreadable and pending regions apart', () => {
  const cells = new RegionCells();
  assert.ok(cells.apply(change({ reset: true, hydrated: [0, 10, 50, 5], unreadable: [52, 1] })));
  assert.ok(cells.apply(change({ hydrated: [10, 5], hydrating: [20, 3] })));
  assert.equal(cells.hydratedCount, 20);
  assert.equal(cells.unreadableCount, 1);
  assert.equal(cells.hydratingCount, 3);

  // One region per square.
  const one = cells.summarize(1000);
  assert.equal(one.cellCount, 100);
  assert.equal(one.regionsPerCell, 1);
  assert.deepEqual([one.hydrated[0], one.hydrated[14], one.hydrated[15]], [1, 1, 0]);
  assert.deepEqual([...one.hydrating.slice(19, 24)], [0, 1, 1, 1, 0]);
  assert.equal(one.unreadable[52], 1);
  assert.equal(one.unreadable[51], 0);

  // Ten regions per square: fractions, and any unreadable or in-flight region marks its square.
  const ten = cells.summarize(10);
  assert.equal(ten.cellCount, 10);
  assert.equal(ten.regionsPerCell, 10);
  assert.equal(ten.hydrated[0], 1);
  assert.equal(ten.hydrated[1], 0.5);
  assert.equal(ten.hydrated[5], 0.5);
  assert.equal(ten.hydrating[2], 1);
  assert.equal(ten.unreadable[5], 1);

  // Hydrating is replaced by each message; a region reported twice counts once per square.
  cells.apply(change({ hydrated: [0, 10] }));
  assert.equal(cells.hydratingCount, 0);
  assert.equal(cells.summarize(10).hydrated[0], 1);
  assert.equal(cells.summarize(10).hydrating[2], 0);

  // Written and waiting for the commit is its own kind of square, apart from in flight.
  cells.apply(change({ hydrating: [30, 2], written: [40, 4] }));
  assert.equal(cells.hydratingCount, 2);
  assert.equal(cells.writtenCount, 4);
  const marked = cells.summarize(1000);
  assert.deepEqual([...marked.hydrating.slice(29, 33)], [0, 1, 1, 0]);
  assert.deepEqual([...marked.written.slice(39, 45)], [0, 1, 1, 1, 1, 0]);
  assert.equal(marked.written[30], 0);

  // A message for another geometry asks for the whole map again.
  assert.equal(cells.apply(change({ regionsTotal: 200, hydrated: [0, 1] })), false);
});

test('a map of 16 million regions stays small and fast', (t) => {
  const total = 16 * 1024 * 1024; // a 64 GiB drive at 4 KiB regions, or 16 TiB at 1 MiB
  const cells = new RegionCells();
  const runs: number[] = [];
  for (let first = 0; first < total; first += 4096) runs.push(first, 2048);
  let t0 = performance.now();
  cells.apply(change({ reset: true, regionsTotal: total, hydrated: runs }));
  const resetMs = performance.now() - t0;
  assert.equal(cells.hydratedCount, total / 2);
  assert.ok(cells.bucketCount <= MAX_BUCKETS, `${cells.bucketCount} buckets`);

  // A second's worth of progress messages, then a drawing's worth of squares.
  t0 = performance.now();
  for (let i = 0; i < 10; i++) {
    cells.apply(
      change({ regionsTotal: total, hydrated: [2048 + i * 4096, 2048], hydrating: [100_000, 32] }),
    );
  }
  const updateMs = performance.now() - t0;
  t0 = performance.now();
  const squares = cells.summarize(80 * 25);
  const drawMs = performance.now() - t0;
  assert.ok(squares.cellCount <= 2000);
  assert.equal(
    squares.hydrating.reduce((n, v) => n + v, 0),
    1,
  );
  // Half of every 4096 regions is hydrated: every square (thousands of regions) is about half.
  const middle = squares.hydrated[Math.floor(squares.cellCount / 2)];
  assert.ok(Math.abs(middle - 0.5) < 0.05, `a square in the middle is ${middle} hydrated`);
  t.diagnostic(
    `reset ${resetMs.toFixed(1)} ms, 10 updates ${updateMs.toFixed(2)} ms, 2000 squares ${drawMs.toFixed(2)} ms`,
  );
  assert.ok(resetMs < 500, `whole map in ${resetMs} ms`);
  assert.ok(updateMs < 20, `updates in ${updateMs} ms`);
  assert.ok(drawMs < 50, `squares in ${drawMs} ms`);
});
