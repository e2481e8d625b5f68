// The region map as front ends get it (engine/hydration/region-events.ts): what is in
// flight and what is written waiting for the commit come as two run lists, so a screen
// can tell them apart; a change in either is a new message, no change is none.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RegionEvents } from '../../engine/hydration/region-events';
import { RegionMap } from '../../engine/store/region-map';

test('in flight and written (awaiting the commit) are separate run lists', () => {
  const events = new RegionEvents(7, 1 << 20, 100, new RegionMap(100), []);
  const whole = events.full({
    inFlight: [{ first: 10, count: 2 }],
    written: [
      { first: 4, count: 3 },
      { first: 7, count: 1 },
    ],
  });
  assert.deepEqual(whole.hydrating, [10, 2]);
  assert.deepEqual(whole.written, [4, 4]);
  assert.deepEqual(events.full().written, [], 'nothing uncommitted: empty lists');

  const same = { inFlight: [{ first: 10, count: 2 }], written: [{ first: 4, count: 4 }] };
  assert.ok(events.delta(same), 'changed since the last message');
  assert.equal(events.delta(same), null, 'nothing changed: no message');
  const committed = events.delta({ inFlight: [{ first: 10, count: 2 }], written: [] });
  assert.deepEqual(committed?.written, [], 'the written ones were committed');
  assert.deepEqual(committed?.hydrating, [10, 2]);
});
