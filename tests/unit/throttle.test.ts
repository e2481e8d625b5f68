import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Throttle } from '../../engine/hydration/throttle';
import { throttleProblem, type ThrottleSettings } from '../../engine/options';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A simulated clock: sleeping advances it, firing any events scheduled on the way at their time. */
class FakeTime {
  t = 0;
  private events: Array<{ at: number; fn: () => void }> = [];
  readonly now = (): number => this.t;
  readonly sleep = async (ms: number): Promise<void> => {
    assert.ok(ms > 0 && ms <= 1000, `sleep of ${ms} ms`);
    this.advance(ms);
  };

  at(time: number, fn: () => void): void {
    this.events.push({ at: time, fn });
    this.events.sort((a, b) => a.at - b.at);
  }

  advance(ms: number): void {
    const end = this.t + ms;
    while (this.events.length > 0 && this.events[0].at <= end) {
      const event = this.events.shift()!;
      this.t = Math.max(this.t, event.at);
      event.fn();
    }
    this.t = end;
  }
}

function throttle(settings: ThrottleSettings, time: FakeTime): Throttle {
  return new Throttle(settings, time.now, time.sleep);
}

/** Admits `chunk`-byte jobs back to back until `until` ms; bytes admitted per simulated second. */
async function admitUntil(
  t: Throttle,
  time: FakeTime,
  chunk: number,
  until: number,
): Promise<number[]> {
  const perSecond = new Array<number>(Math.ceil(until / 1000)).fill(0);
  for (let guard = 0; ; guard++) {
    assert.ok(guard < 10_000_000, 'the simulated clock stopped moving');
    await t.admit(chunk);
    if (time.t >= until) return perSecond;
    perSecond[Math.floor(time.t / 1000)] += chunk;
  }
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
const within = (actual: number, expected: number, fraction: number): boolean =>
  Math.abs(actual - expected) <= expected * fraction;

test('a rate cap admits bytes at the configured rate over 10 simulated seconds', async () => {
  for (const [rate, chunk] of [
    [50 * MiB, 1 * MiB],
    [10 * MiB, 64 * KiB],
    [1 * MiB, 4 * KiB],
    [3 * MiB, 7 * MiB], // jobs larger than the burst still average out to the cap
  ]) {
    const time = new FakeTime();
    const t = throttle({ percent: 100, maxRate: rate }, time);
    const admitted = sum(await admitUntil(t, time, chunk, 10_000));
    assert.ok(
      within(admitted, rate * 10, 0.02) || Math.abs(admitted - rate * 10) <= chunk,
      `${rate} B/s: ${admitted} B in 10 s`,
    );
  }
});

test('without a cap at 100 percent the throttle never waits', async () => {
  const time = new FakeTime();
  const t = throttle({ percent: 100, maxRate: 0 }, time);
  for (let i = 0; i < 1000; i++) await t.admit(64 * MiB);
  assert.equal(time.t, 0);
});

test('lowering the cap takes effect within a tick and raising it back releases no backlog', async () => {
  const high = 8 * MiB;
  const low = 1 * MiB;
  const chunk = 48 * KiB;
  const time = new FakeTime();
  const t = throttle({ percent: 100, maxRate: high }, time);
  const admittedAt: number[] = [];
  time.at(3000, () => t.set({ maxRate: low }));
  time.at(6000, () => t.set({ maxRate: high }));
  const perSecond = new Array<number>(10).fill(0);
  for (;;) {
    await t.admit(chunk);
    if (time.t >= 10_000) break;
    perSecond[Math.floor(time.t / 1000)] += chunk;
    admittedAt.push(time.t);
  }
  const mib = perSecond.map((b) => (b / MiB).toFixed(3)).join(' ');
  // Jobs are whole: a second may hold one job more or less than its exact share.
  const near = (actual: number, expected: number): boolean =>
    Math.abs(actual - expected) <= expected * 0.02 + chunk;
  for (const s of [1, 2, 7, 8, 9]) {
    assert.ok(near(perSecond[s], high), `second ${s} at the high cap: ${mib} MiB`);
  }
  for (const s of [4, 5]) {
    assert.ok(near(perSecond[s], low), `second ${s} at the low cap: ${mib} MiB`);
  }
  // The second in which the cap fell: at most one tick at the old rate, plus one job.
  assert.ok(perSecond[3] <= low + high / 10 + chunk, `second 3 (lowered): ${mib} MiB`);
  const firstTick = admittedAt.filter((a) => a >= 3000 && a < 3100).length * chunk;
  assert.ok(firstTick <= high / 10 + chunk, `first tick after lowering admitted ${firstTick} B`);
  // The second in which it rose: the high rate, no catching up on the slow stretch.
  assert.ok(near(perSecond[6], high), `second 6 (raised): ${mib} MiB`);
});

test('a debt run up at the old cap is owed in time, so lowering the cap does not stall the copy', async () => {
  // 1000 units/s (a unit: 64 KiB, the smallest cap is one); a 1000-unit job leaves a debt of one second.
  const u = 64 * KiB;
  const time = new FakeTime();
  const t = throttle({ percent: 100, maxRate: 1000 * u }, time);
  await t.admit(1000 * u);
  // Half a second passes at 1000 units/s (500 earned), then the cap drops to 10 units/s:
  // the half second still owed stays half a second (5 units at 10/s), not 500 (50 s).
  time.advance(500);
  t.set({ maxRate: 10 * u });
  const before = time.t;
  await t.admit(u);
  const waited = (time.t - before) / 1000;
  assert.ok(Math.abs(waited - 0.5) < 0.15, `waited ${waited} s (expected the 0.5 s still owed)`);
  // From then on the new cap holds: 10 units/s.
  const perSecond = await admitUntil(t, time, u, time.t + 10_000);
  const steady = perSecond.filter((n) => n > 0).slice(1, -1);
  assert.ok(
    steady.every((n) => within(n, 10 * u, 0.2)),
    `${steady}`,
  );
});

test('removing the cap admits at once and setting it again starts with no saved credit', async () => {
  const time = new FakeTime();
  const t = throttle({ percent: 100, maxRate: MiB }, time);
  await t.admit(MiB); // in debt for a second
  t.set({ maxRate: 0 });
  const before = time.t;
  await t.admit(100 * MiB);
  assert.equal(time.t, before);
  time.advance(60_000); // a minute uncapped must not become credit
  t.set({ maxRate: MiB });
  const perSecond = await admitUntil(t, time, 16 * KiB, time.t + 3000);
  const lastThree = perSecond.slice(-3);
  assert.ok(
    sum(lastThree) <= 3 * MiB * 1.02 + 16 * KiB + MiB / 10,
    `${sum(lastThree)} B in 3 s at 1 MiB/s`,
  );
});

/** Runs admit + measure(fake I/O of `ioMs`) until `until`; returns I/O ms per window. */
async function busyLoop(
  t: Throttle,
  time: FakeTime,
  ioMs: number,
  until: number,
  windowMs = 1000,
): Promise<number[]> {
  const busy = new Array<number>(Math.ceil(until / windowMs)).fill(0);
  while (time.t < until) {
    await t.admit(MiB);
    const start = time.t;
    if (start >= until) break;
    await t.measure(async () => time.advance(ioMs));
    // Split the I/O over the windows it spans.
    for (let a = start; a < time.t && a < until;) {
      const w = Math.floor(a / windowMs);
      const b = Math.min(time.t, (w + 1) * windowMs);
      busy[w] += b - a;
      a = b;
    }
  }
  return busy;
}

test('a percent throttle keeps the share of wall time spent in I/O near the percent', async () => {
  for (const [percent, ioMs] of [
    [50, 40],
    [50, 7],
    [50, 150],
    [25, 40],
    [80, 40],
    [10, 20],
  ]) {
    const time = new FakeTime();
    const t = throttle({ percent, maxRate: 0 }, time);
    const busy = await busyLoop(t, time, ioMs, 30_000);
    const steady = sum(busy.slice(5)) / (busy.length - 5) / 10; // percent of each second
    assert.ok(
      Math.abs(steady - percent) <= 5,
      `${percent}% with ${ioMs} ms I/O: busy ${steady.toFixed(1)}%`,
    );
  }
});

test('at 100 percent the I/O runs back to back', async () => {
  const time = new FakeTime();
  const t = throttle({ percent: 100, maxRate: 0 }, time);
  const busy = await busyLoop(t, time, 30, 5000);
  assert.equal(sum(busy), 5000);
});

test('lowering the percent takes effect within a second and leaves no burst after raising it', async () => {
  const time = new FakeTime();
  const t = throttle({ percent: 80, maxRate: 0 }, time);
  time.at(10_000, () => t.set({ percent: 20 }));
  time.at(20_000, () => t.set({ percent: 80 }));
  const busy = await busyLoop(t, time, 25, 30_000);
  const pct = busy.map((ms) => Math.round(ms / 10));
  assert.ok(pct[10] <= 25, `second after lowering to 20%: ${pct.join(' ')}`);
  for (let s = 13; s < 20; s++)
    assert.ok(Math.abs(pct[s] - 20) <= 8, `second ${s} at 20%: ${pct.join(' ')}`);
  // Raised back: no second above the new limit (no catching up on the slow stretch).
  for (let s = 20; s < 30; s++) assert.ok(pct[s] <= 88, `second ${s} at 80%: ${pct.join(' ')}`);
  const steady = sum(busy.slice(23)) / 7 / 10;
  assert.ok(Math.abs(steady - 80) <= 5, `steady at 80%: ${steady.toFixed(1)}% (${pct.join(' ')})`);
});

test('a pause in I/O saves up no share that bursts past the percent afterwards', async () => {
  const time = new FakeTime();
  const t = throttle({ percent: 50, maxRate: 0 }, time);
  await busyLoop(t, time, 25, 5000);
  time.advance(10_000); // the job was paused: no I/O for 10 s
  const start = time.t;
  const busy = await busyLoop(t, time, 25, start + 5000);
  const pct = busy.slice(start / 1000).map((ms) => Math.round(ms / 10));
  for (const p of pct)
    assert.ok(p <= 58, `busy % per second after the pause at 50%: ${pct.join(' ')}`);
});

test('the busy share counts I/O still in flight', async () => {
  const time = new FakeTime();
  const t = throttle({ percent: 100, maxRate: 0 }, time);
  time.advance(100);
  assert.equal(t.busyPercent, 0);
  let inside = -1;
  await t.measure(async () => {
    time.advance(100);
    inside = t.busyPercent;
  });
  assert.ok(Math.abs(inside - 50) < 1e-9, `${inside}`);
});

test('throttleProblem refuses percents outside 1–100, fractions and negative or fractional rates', () => {
  assert.equal(throttleProblem({}), null);
  assert.equal(throttleProblem({ percent: 1 }), null);
  assert.equal(throttleProblem({ percent: 100, maxRate: 0 }), null);
  assert.equal(throttleProblem({ maxRate: 50 * MiB }), null);
  for (const percent of [0, 101, 1.5, -1, NaN, Infinity]) {
    assert.match(throttleProblem({ percent }) ?? '', /whole percent from 1 to 100/, `${percent}`);
  }
  for (const maxRate of [-1, -MiB, 1.5, NaN, Infinity, 2 ** 60, 1, 3, KiB, 64 * KiB - 1]) {
    assert.match(throttleProblem({ maxRate }) ?? '', /rate cap/, `${maxRate}`);
  }
  assert.equal(throttleProblem({ maxRate: 64 * KiB }), null, 'the smallest cap');
});

test('set refuses bad settings and keeps the old ones', () => {
  const time = new FakeTime();
  const t = throttle({ percent: 60, maxRate: MiB }, time);
  assert.throws(() => t.set({ percent: 0 }), RangeError);
  assert.throws(() => t.set({ maxRate: -5 }), RangeError);
  assert.deepEqual(t.current, { percent: 60, maxRate: MiB });
  t.set({ percent: 30 });
  assert.deepEqual(t.current, { percent: 30, maxRate: MiB });
});

test('callers are admitted in the order they asked', async () => {
  const time = new FakeTime();
  const t = throttle({ percent: 100, maxRate: MiB }, time);
  const order: number[] = [];
  await Promise.all([0, 1, 2, 3, 4].map((i) => t.admit(256 * KiB).then(() => order.push(i))));
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
  assert.ok(Math.abs(time.t - 1000) < 1, `4 × 256 KiB of debt paid in ${time.t} ms`);
});

test('close: a job waiting out a debt of minutes returns within a tick, and later ones at once', async () => {
  const time = new FakeTime();
  const t = throttle({ percent: 100, maxRate: 64 * KiB }, time);
  await t.admit(64 * 64 * KiB); // a debt of 64 s
  time.at(time.t + 250, () => t.close());
  const before = time.t;
  await t.admit(64 * KiB);
  assert.ok(time.t - before <= 350, `waited ${time.t - before} ms after close`);
  const after = time.t;
  await t.admit(64 * KiB);
  assert.equal(time.t, after, 'no wait once closed');
});
