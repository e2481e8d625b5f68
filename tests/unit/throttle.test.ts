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

/**
 * Simulated time for several callers at once: every sleep and every I/O is an event, and
 * the clock moves to the next one only when nothing else can run.
 */
class Sim {
  t = 0;
  longestSleep = 0;
  private events: Array<{ at: number; seq: number; fire: () => void }> = [];
  private seq = 0;
  readonly now = (): number => this.t;
  readonly sleep = (ms: number): Promise<void> => {
    this.longestSleep = Math.max(this.longestSleep, ms);
    return this.wait(ms);
  };

  wait(ms: number): Promise<void> {
    return new Promise((resolve) => this.at(this.t + ms, resolve));
  }

  at(time: number, fire: () => void): void {
    this.events.push({ at: time, seq: this.seq++, fire });
    this.events.sort((a, b) => a.at - b.at || a.seq - b.seq);
  }

  /** Runs everything scheduled up to `until` ms. */
  async run(until: number): Promise<void> {
    for (;;) {
      // Promise chains settle before setImmediate fires: everyone who can run has run.
      await new Promise((resolve) => setImmediate(resolve));
      const next = this.events[0];
      if (!next || next.at > until) break;
      this.events.shift();
      this.t = Math.max(this.t, next.at);
      next.fire();
    }
    this.t = until;
  }
}

interface PairModel {
  /** Bytes per second the disks give with I/Os queued. */
  speed: number;
  /** Per I/O, overlapped when several are in flight: a lone I/O is slower than its share. */
  latencyMs: number;
  /** A drive that serves a burst at `raw` after a rest, `seconds` of `speed` of it. */
  bucket?: { raw: number; seconds: number };
}

/** The disks: one queue served at `speed` (or faster from a token bucket), plus a latency. */
class SimPair {
  private busyUntil = 0;
  private tokens: number;
  private tokensAt = 0;

  constructor(
    private readonly sim: Sim,
    public model: PairModel,
  ) {
    this.tokens = model.bucket ? model.bucket.seconds * model.speed : 0;
  }

  io(bytes: number): Promise<void> {
    const start = Math.max(this.sim.t, this.busyUntil);
    this.busyUntil = start + this.serviceMs(start, bytes);
    return this.sim.wait(this.busyUntil + this.model.latencyMs - this.sim.t);
  }

  private serviceMs(start: number, bytes: number): number {
    const { speed, bucket } = this.model;
    if (!bucket) return (bytes * 1000) / speed;
    const cap = bucket.seconds * speed;
    this.tokens = Math.min(cap, this.tokens + ((start - this.tokensAt) / 1000) * speed);
    const fast = Math.min(bytes, this.tokens);
    const ms = (fast * 1000) / bucket.raw + ((bytes - fast) * 1000) / speed;
    this.tokens = Math.min(cap, Math.max(0, this.tokens + (ms / 1000) * speed - bytes));
    this.tokensAt = start + ms;
    return ms;
  }
}

/** I/Os as the job sizes them: at most the throttle's I/O size and what it lets in flight, 64 KiB to 8 MiB. */
function ioSize(t: Throttle, inFlight: number): number {
  const room = Math.min(t.ioBytes, t.inFlightBytes - inFlight);
  return Math.min(8 * MiB, Math.max(64 * KiB, Math.floor(room / (64 * KiB)) * 64 * KiB));
}

/**
 * A copy through `t` for `ms` as the job runs one: up to `slots` I/Os in flight, no more
 * bytes in flight than the throttle allows (one I/O at least). When each I/O ended, its bytes.
 */
async function copy(
  sim: Sim,
  t: Throttle,
  pair: SimPair,
  ms: number,
  opts: { slots?: number; paused?: (at: number) => boolean } = {},
): Promise<Array<{ at: number; bytes: number }>> {
  const done: Array<{ at: number; bytes: number }> = [];
  const end = sim.t + ms;
  let inFlight = 0;
  const worker = async (): Promise<void> => {
    while (sim.t < end) {
      const bytes = ioSize(t, inFlight);
      if (opts.paused?.(sim.t) || (inFlight > 0 && inFlight + bytes > t.inFlightBytes)) {
        await sim.wait(1);
        continue;
      }
      inFlight += bytes;
      await t.admit(bytes);
      // Sized again once admitted, as the copier does: a pace lowered meanwhile applies.
      const now = Math.min(bytes, ioSize(t, inFlight - bytes));
      t.refund(bytes - now);
      inFlight -= bytes - now;
      await t.measure(now, () => pair.io(now));
      inFlight -= now;
      if (sim.t <= end) done.push({ at: sim.t, bytes: now });
    }
  };
  const workers = Array.from({ length: opts.slots ?? 4 }, worker);
  await sim.run(end);
  void Promise.all(workers);
  return done;
}

/** Bytes per second ended between `from` and `to` ms. */
function rateOf(done: Array<{ at: number; bytes: number }>, from: number, to: number): number {
  const bytes = done.filter((d) => d.at > from && d.at <= to).reduce((n, d) => n + d.bytes, 0);
  return (bytes * 1000) / (to - from);
}

/** The longest stretch from `from` to `to` in which no I/O ended. */
function longestStill(done: Array<{ at: number }>, from: number, to: number): number {
  let longest = 0;
  let last = from;
  for (const d of done) {
    if (d.at <= from) continue;
    longest = Math.max(longest, Math.min(d.at, to) - last);
    last = d.at;
  }
  return Math.max(longest, to - last);
}

const PAIRS: Record<string, PairModel> = {
  'a fast pair (2 GiB/s)': { speed: 2048 * MiB, latencyMs: 2 },
  'a disk (150 MiB/s), slower alone': { speed: 150 * MiB, latencyMs: 25 },
  'a slow drive (20 MiB/s)': { speed: 20 * MiB, latencyMs: 5 },
  'a rate-limited drive (57 MiB/s, bursts at 600)': {
    speed: 57 * MiB,
    latencyMs: 1,
    bucket: { raw: 600 * MiB, seconds: 0.2 },
  },
};

/** The pair's full speed as a copy at 100 % shows it, after its first second. */
async function fullSpeedOf(model: PairModel): Promise<number> {
  const sim = new Sim();
  const done = await copy(
    sim,
    new Throttle({ percent: 100, maxRate: 0 }, sim.now, sim.sleep),
    new SimPair(sim, model),
    6000,
  );
  return rateOf(done, 1000, 6000);
}

test("p % gives p % of the pair's full speed from the first second, with no still half second", async () => {
  for (const [name, model] of Object.entries(PAIRS)) {
    const full = await fullSpeedOf(model);
    for (const percent of [5, 25, 50, 75]) {
      const sim = new Sim();
      const t = new Throttle({ percent, maxRate: 0 }, sim.now, sim.sleep);
      const done = await copy(sim, t, new SimPair(sim, model), 11_000);
      // The first second holds the measure of the full speed (a fraction of a second at
      // it), and on a drive that bursts the I/O it left in flight reaches into the next;
      // at 5 % that weighs on the whole. Each second from the second on is within 15 %.
      const from = percent < 25 ? 2 : 1;
      const share = rateOf(done, from * 1000, 11_000) / full;
      const still = longestStill(done, done[0].at, 11_000);
      const seconds = Array.from({ length: 11 }, (_, s) =>
        ((rateOf(done, s * 1000, (s + 1) * 1000) / full) * 100).toFixed(1),
      );
      const where = `${name} at ${percent} %: ${(share * 100).toFixed(1)} % of full speed from second ${from}, each second ${seconds.join(' ')} %, longest still ${still.toFixed(0)} ms`;
      assert.ok(Math.abs(share - percent / 100) <= (percent / 100) * 0.05, where);
      for (let s = 2; s < 11; s++) {
        const second = Number(seconds[s]) / 100;
        const slack = (percent / 100) * 0.15 + (64 * KiB) / full;
        assert.ok(Math.abs(second - percent / 100) <= slack, `second ${s}: ${where}`);
      }
      assert.ok(still <= 500, where);
      assert.ok(sim.longestSleep <= 100, `a sleep of ${sim.longestSleep} ms`);
    }
  }
});

test('the full speed is measured at 100 %, said once known, and kept while a percent holds the copy', async () => {
  const sim = new Sim();
  const t = new Throttle({ percent: 100, maxRate: 0 }, sim.now, sim.sleep);
  assert.equal(t.fullSpeed, null);
  const pair = new SimPair(sim, { speed: 150 * MiB, latencyMs: 25 });
  await copy(sim, t, pair, 2000);
  assert.ok(within(t.fullSpeed ?? 0, 150 * MiB, 0.02), `${t.fullSpeed}`);
  t.set({ percent: 20 });
  const done = await copy(sim, t, pair, 3000);
  assert.ok(within(t.fullSpeed ?? 0, 150 * MiB, 0.02), `still ${t.fullSpeed} while held`);
  // The pace is in force within a tick of the change: no probe is needed.
  assert.ok(
    within(rateOf(done, 2100, 5000), 30 * MiB, 0.05),
    `${rateOf(done, 2100, 5000) / MiB} MiB/s`,
  );
});

test('a pair that slows down under the pace is measured again, and the percent follows', async () => {
  const sim = new Sim();
  const t = new Throttle({ percent: 50, maxRate: 0 }, sim.now, sim.sleep);
  const pair = new SimPair(sim, { speed: 200 * MiB, latencyMs: 5 });
  sim.at(5000, () => (pair.model = { speed: 40 * MiB, latencyMs: 5 }));
  const done = await copy(sim, t, pair, 12_000);
  assert.ok(
    within(rateOf(done, 1000, 5000), 100 * MiB, 0.05),
    `before: ${rateOf(done, 1000, 5000) / MiB}`,
  );
  assert.ok(
    within(t.fullSpeed ?? 0, 40 * MiB, 0.05),
    `measured again: ${(t.fullSpeed ?? 0) / MiB} MiB/s`,
  );
  assert.ok(
    within(rateOf(done, 7000, 12_000), 20 * MiB, 0.1),
    `after: ${rateOf(done, 7000, 12_000) / MiB}`,
  );
});

test('lowering the percent takes effect within a tick and raising it back releases no burst', async () => {
  const sim = new Sim();
  const t = new Throttle({ percent: 80, maxRate: 0 }, sim.now, sim.sleep);
  const pair = new SimPair(sim, { speed: 150 * MiB, latencyMs: 25 });
  sim.at(10_000, () => t.set({ percent: 20 }));
  sim.at(20_000, () => t.set({ percent: 80 }));
  const done = await copy(sim, t, pair, 30_000);
  const pct = Array.from({ length: 30 }, (_, s) =>
    Math.round((rateOf(done, s * 1000, (s + 1) * 1000) / (150 * MiB)) * 100),
  );
  const shown = pct.join(' ');
  const halfSecondOn = rateOf(done, 10_500, 11_500) / (150 * MiB);
  assert.ok(Math.abs(halfSecondOn - 0.2) <= 0.02, `half a second after lowering: ${shown}`);
  for (let s = 11; s < 20; s++)
    assert.ok(Math.abs(pct[s] - 20) <= 2, `second ${s} at 20 %: ${shown}`);
  for (let s = 20; s < 30; s++) assert.ok(pct[s] <= 84, `second ${s} at 80 %: ${shown}`);
  for (let s = 21; s < 30; s++) assert.ok(pct[s] >= 76, `second ${s} at 80 %: ${shown}`);
});

test('a pause saves up nothing, and does not count against the full speed', async () => {
  const sim = new Sim();
  const t = new Throttle({ percent: 100, maxRate: 0 }, sim.now, sim.sleep);
  const pair = new SimPair(sim, { speed: 100 * MiB, latencyMs: 5 });
  const done = await copy(sim, t, pair, 20_000, { paused: (at) => at >= 3000 && at < 13_000 });
  assert.ok(within(t.fullSpeed ?? 0, 100 * MiB, 0.03), `${(t.fullSpeed ?? 0) / MiB} MiB/s`);
  t.set({ percent: 50 });
  const after = await copy(sim, t, pair, 10_000, { paused: (at) => at < 25_000 });
  for (let s = 25; s < 30; s++) {
    const r = rateOf(after, s * 1000, (s + 1) * 1000);
    // At most the tenth of a second of allowance kept, no more.
    assert.ok(r <= 50 * MiB * 1.1 + 64 * KiB, `second ${s} after the pause: ${r / MiB} MiB/s`);
  }
  assert.ok(done.length > 0);
});

test('under a rate cap and a percent the slower holds; the cap from the first byte', async () => {
  // The cap held the copy from the start, so the full speed was never seen: the bytes per
  // second of busy time stand in for it. A lone I/O is slower than its share of the full
  // speed, so the estimate errs on the slow side.
  for (const [maxRate, expected] of [
    [30 * MiB, 30 * MiB],
    [150 * MiB, 100 * MiB],
  ]) {
    const sim = new Sim();
    const t = new Throttle({ percent: 50, maxRate }, sim.now, sim.sleep);
    const done = await copy(sim, t, new SimPair(sim, { speed: 200 * MiB, latencyMs: 5 }), 8000);
    const first = rateOf(done, 0, 1000);
    assert.ok(first <= maxRate * 1.1 + 8 * MiB, `${maxRate / MiB}: first second ${first / MiB}`);
    const r = rateOf(done, 1000, 8000);
    assert.ok(r >= expected * 0.75 && r <= expected * 1.05, `${maxRate / MiB}: ${r / MiB} MiB/s`);
  }
  // Once the cap lets go, the full speed is measured and the percent is its share.
  const sim = new Sim();
  const t = new Throttle({ percent: 50, maxRate: 150 * MiB }, sim.now, sim.sleep);
  const pair = new SimPair(sim, { speed: 200 * MiB, latencyMs: 5 });
  sim.at(3000, () => t.set({ maxRate: 0 }));
  const done = await copy(sim, t, pair, 8000);
  assert.ok(within(t.fullSpeed ?? 0, 200 * MiB, 0.03), `${(t.fullSpeed ?? 0) / MiB}`);
  assert.ok(within(rateOf(done, 5000, 8000), 100 * MiB, 0.05), `${rateOf(done, 5000, 8000) / MiB}`);
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
