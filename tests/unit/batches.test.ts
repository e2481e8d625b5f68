// Which regions a hydration job copies next: runs of unhydrated regions hydrated the
// same way, and the regions whose turn comes last (the partition tables) left out.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type RegionTurn, nextRun } from '../../engine/hydration/batches';
import { RegionMap } from '../../engine/store/region-map';

test('the next run skips hydrated regions and those whose turn comes later', () => {
  const map = new RegionMap(20);
  map.setRange(3, 2);
  const held = (r: number): RegionTurn => (r < 2 ? 'later' : r >= 10 && r < 12 ? 'zero' : 'copy');
  assert.deepEqual(nextRun(map, 0, 8, held), { first: 2, count: 1 });
  assert.deepEqual(nextRun(map, 3, 8, held), { first: 5, count: 5 }, 'a batch is one kind');
  assert.deepEqual(nextRun(map, 10, 8, held), { first: 10, count: 2 });
  assert.deepEqual(nextRun(map, 12, 3, held), { first: 12, count: 3 }, 'at most the room');
  map.setRange(2, 18);
  assert.equal(nextRun(map, 0, 8, held), null, 'only regions whose turn comes later are left');
  assert.deepEqual(
    nextRun(map, 0, 8, () => 'copy'),
    { first: 0, count: 2 },
    'their turn',
  );
});
