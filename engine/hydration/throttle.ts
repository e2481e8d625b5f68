// How much of the disks the copier may use, changeable while it runs.
//
// dm-kcopyd's throttle is a share of time: the copier may keep the disks busy `percent`
// of the time. Here the time an I/O keeps them busy is what its bytes cost at the pair's
// full speed — the copier's throughput with every I/O in flight, the gaps between them
// included. That is the I/O's share of the union of busy time, so several I/Os in flight
// are not counted twice and a lone I/O (which can't overlap a read with a write) is not
// charged for the overlap it lacks; and a drive that serves a burst fast after a rest (a
// rate-limited or cached one) is charged what its bytes cost when it runs flat out. Each
// I/O is followed by the idle it owes, in time, before the next may start: `percent` gives
// that share of the full speed, evenly, from the start.
//
// The full speed is measured, never assumed: the throughput whenever nothing holds the
// copy back — at 100 %, at the start of a throttled copy until it is known (a fraction of
// a second), and again whenever the pace asked is more than the disks give (they slowed
// down, or the first measure caught a burst). Where a rate cap has held the copy back
// from the start, the full speed can't be seen above it: the bytes per second of union
// busy time (kcopyd's own measure) stand in for it until the cap lets the copy go.
//
// The rate cap is the other pace; the slower one holds. What was let through is owed in
// time at the pace it was let through at, so changing either never stalls the copy, and
// allowance left unused is kept for one tick at most, so it never bursts out later.

import { type ThrottleSettings, throttleProblem } from '../options';
import { FullSpeedMeter } from './rate';

/** The longest sleep: limits may change meanwhile. */
const TICK_MS = 100;
/** Allowance left unused is kept this long at most. */
const BURST_MS = 100;
/** The copy is held back when its I/Os waited for their turn more than this share… */
const HELD_SHARE = 0.05;
/** …of the last this-long. */
const HELD_WINDOW_MS = 500;
/** A pace is unmet when less than this share of it ended… */
const UNMET_SHARE = 0.8;
/** …in the last this-long (a moment the processors were busy elsewhere is not the disks slowing). */
const UNMET_WINDOW_MS = 2000;
/** Measured again, the full speed waits this long at most for a steady measure. */
const REMEASURE_SETTLE_MS = 2000;
/** No I/O in flight or asked for this long: the copy stopped (paused, ending), not a gap between I/Os. */
const STOPPED_MS = 50;
/** One I/O is at most this many seconds' worth, so the copy moves evenly… */
const IO_SECONDS = 0.05;
/** …and I/O in flight at most this many, so a change takes effect within it. */
const IN_FLIGHT_SECONDS = 0.25;

type Clock = () => number;
type Sleep = (ms: number) => Promise<void>;

const realSleep: Sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Throttle {
  private settings: ThrottleSettings;
  /** When the next I/O may start: the idle owed by those let through before it. */
  private readyAt: number;
  private queue: Promise<void> = Promise.resolve();
  /** Bytes per second of wall time, flat out. */
  private readonly full = new FullSpeedMeter();
  /** Bytes per second of union busy time: what stands in for the full speed under a cap. */
  private readonly perBusySecond = new FullSpeedMeter();
  private busyMs = 0;
  private busySince = 0;
  /** The last HELD_WINDOW_MS: waits for a turn (when each ended, how long) and I/Os ended. */
  private waits: Array<{ at: number; ms: number }> = [];
  private ended: Array<{ at: number; bytes: number }> = [];
  private inFlight = 0;
  private bytesInFlight = 0;
  private asking = 0;
  private stoppedAt: number | null = null;
  /** Since the copy (re)started: its bytes, for a first idea of its speed. */
  private startedAt: number | null = null;
  private bytesSinceStart = 0;
  /** The percent holds nothing back while the full speed is measured (again). */
  private measuring = true;
  /** Since when the percent's state (measuring, or holding to a pace) is what it is. */
  private stateSince: number;
  /** The job stops: nobody waits any longer (a waiter re-checks within a tick). */
  private closed = false;

  constructor(
    settings: ThrottleSettings,
    private readonly now: Clock = () => performance.now(),
    private readonly sleep: Sleep = realSleep,
  ) {
    this.settings = { ...settings };
    this.readyAt = this.stateSince = now();
  }

  get current(): ThrottleSettings {
    return { ...this.settings };
  }

  /** The pair's full speed in bytes per second, as last measured (or estimated); null until then. */
  get fullSpeed(): number | null {
    const f = this.fullOrEstimate();
    return f === null ? null : Math.round(f);
  }

  /**
   * Bytes per second the copy is held to now, 0 for none: the percent's share of the full
   * speed, or the rate cap, whichever is slower. While the full speed is measured the
   * percent holds nothing back; the cap always holds.
   */
  get pace(): number {
    const { maxRate } = this.settings;
    const share = this.share();
    if (share > 0 && maxRate > 0) return Math.min(share, maxRate);
    return share || maxRate;
  }

  /**
   * The largest I/O now: a twentieth of a second's worth at the pace or the full speed, so
   * the copy moves evenly; while the full speed is measured, at the speed seen so far (a
   * copy starts small and grows), so it is measured within a fraction of a second; no
   * bound before anything is known at 100 %.
   */
  get ioBytes(): number {
    const speed = this.speed();
    return speed === null ? Infinity : speed * IO_SECONDS;
  }

  /**
   * Bytes the copier may keep in flight: a quarter of a second's worth, so a change takes
   * effect within it whatever the disks; while the full speed is measured, at most twice
   * what has ended so far (a drive's first burst does not fill the pipeline).
   */
  get inFlightBytes(): number {
    const speed = this.speed();
    if (speed === null) return Infinity;
    // Measuring, the I/O size bounds what is in flight (a few of them): a bound in time
    // too would keep a pair whose I/Os wait for the processors from ever showing its speed.
    return this.measuringNow() ? 2 * this.bytesSinceStart : speed * IN_FLIGHT_SECONDS;
  }

  set(change: Partial<ThrottleSettings>): void {
    const problem = throttleProblem(change);
    if (problem) throw new RangeError(problem);
    const paced = this.pace > 0;
    this.settings = { ...this.settings, ...change };
    // Known, the full speed is used at once; unknown (a cap held the copy back from the
    // start and hid it, or nothing was copied yet), it is measured first.
    this.measuring = this.full.bytesPerSecond === null;
    this.stateSince = this.now();
    this.full.interrupt();
    if (!paced) this.owe();
  }

  /** The job stops: every waiter returns within a tick, and later ones at once. */
  close(): void {
    this.closed = true;
  }

  /** Waits until an I/O of `bytes` may start. Callers are admitted in order. */
  admit(bytes: number): Promise<void> {
    const t = this.now();
    if (this.stoppedAt !== null && t - this.stoppedAt > STOPPED_MS) {
      this.full.interrupt();
      this.stateSince = t;
      this.startedAt = null;
    }
    if (this.startedAt === null) {
      this.startedAt = t;
      this.bytesSinceStart = 0;
    }
    this.stoppedAt = null;
    this.asking += 1;
    const turn = this.queue.then(() => this.waitForTurn(bytes));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** Bytes admitted and then not used (the I/O shrank): their idle is no longer owed. */
  refund(bytes: number): void {
    const pace = this.pace;
    if (pace > 0) this.readyAt -= (bytes * 1000) / pace;
  }

  /** Brackets real I/O of `bytes`: it measures the full speed while nothing holds the copy back. */
  async measure<T>(bytes: number, io: () => Promise<T>): Promise<T> {
    if (this.inFlight === 0) this.busySince = this.now();
    this.inFlight += 1;
    this.bytesInFlight += bytes;
    try {
      return await io();
    } finally {
      this.inFlight -= 1;
      this.bytesInFlight -= bytes;
      this.completed(bytes);
    }
  }

  /**
   * Bytes per second the copy goes at: the pace; else, while the percent measures the full
   * speed, what the copy shows so far; else the full speed; null before it is known.
   */
  private speed(): number | null {
    if (this.pace > 0) return this.pace;
    if (this.measuringNow()) {
      const t = this.now();
      const since = this.startedAt ?? t;
      const soFar = t > since ? (this.bytesSinceStart * 1000) / (t - since) : 0;
      return this.full.tentative || soFar;
    }
    return this.full.bytesPerSecond;
  }

  /** The percent holds nothing back while it measures the full speed. */
  private measuringNow(): boolean {
    return this.measuring && this.settings.percent < 100 && this.pace === 0;
  }

  private fullOrEstimate(): number | null {
    return this.full.bytesPerSecond ?? this.perBusySecond.bytesPerSecond;
  }

  /** The percent's pace: its share of the full speed; 0 while it holds nothing back. */
  private share(): number {
    const { percent } = this.settings;
    const full = this.fullOrEstimate();
    if (percent >= 100 || this.measuring || full === null) return 0;
    return (percent / 100) * full;
  }

  private async waitForTurn(bytes: number): Promise<void> {
    const start = this.now();
    try {
      for (;;) {
        const t = this.now();
        if (this.closed || this.pace === 0 || t >= this.readyAt) break;
        await this.sleep(Math.max(1, Math.min(TICK_MS, this.readyAt - t)));
      }
    } finally {
      this.asking -= 1;
    }
    const t = this.now();
    if (t > start) this.waits.push({ at: t, ms: t - start });
    const pace = this.pace;
    if (pace > 0) this.readyAt = Math.max(this.readyAt, t - BURST_MS) + (bytes * 1000) / pace;
  }

  private completed(bytes: number): void {
    const t = this.now();
    this.bytesSinceStart += bytes;
    this.ended = this.ended.filter((e) => e.at > t - UNMET_WINDOW_MS);
    this.ended.push({ at: t, bytes });
    if (this.inFlight === 0) {
      this.busyMs += t - this.busySince;
      if (this.asking === 0) this.stoppedAt = t;
    }
    const busyClock = this.busyMs + (this.inFlight > 0 ? t - this.busySince : 0);
    this.perBusySecond.sample(busyClock, bytes);
    const settled = t - this.stateSince >= UNMET_WINDOW_MS;
    if (this.heldBack(t)) {
      this.full.interrupt();
      // Only a cap holds the copy back while the percent measures: the full speed can't be
      // seen above it, and the bytes per busy second stand in for it.
      if (this.measuring && settled) this.measuring = false;
      return;
    }
    if (this.share() > 0) {
      const endedBytes = this.ended.reduce((sum, e) => sum + e.bytes, 0);
      if (!settled || endedBytes >= UNMET_SHARE * this.pace * (UNMET_WINDOW_MS / 1000)) {
        this.full.interrupt();
        return;
      }
      // Nobody waited for a turn and the pace was not met: the disks give less than the
      // full speed measured. Measure them again — until the measure is steady: a moment the
      // whole machine stood still is not the disks' speed.
      this.measuring = true;
      this.stateSince = t;
      this.full.interrupt(REMEASURE_SETTLE_MS);
    }
    if (this.full.sample(t, bytes) && this.measuring && this.settings.percent < 100) {
      // Measured: from now on the percent holds the copy to its share.
      this.measuring = false;
      this.stateSince = t;
      this.full.interrupt();
      this.owe();
    }
  }

  /**
   * The copy goes from full speed to a pace: the I/O in flight was let through at full
   * speed and owes the time it takes at full speed, so the pace starts once it is done —
   * not behind it, where the disks would run flat out until the backlog cleared.
   */
  private owe(): void {
    const speed = this.full.bytesPerSecond ?? this.full.tentative;
    if (this.pace === 0 || speed === 0) return;
    this.readyAt = Math.max(this.readyAt, this.now() + (this.bytesInFlight * 1000) / speed);
  }

  /** Did I/Os wait for their turn in the last HELD_WINDOW_MS (more than a trace)? */
  private heldBack(t: number): boolean {
    const from = t - HELD_WINDOW_MS;
    this.waits = this.waits.filter((w) => w.at > from);
    const waited = this.waits.reduce((sum, w) => sum + Math.min(w.ms, w.at - from), 0);
    return waited > HELD_SHARE * HELD_WINDOW_MS;
  }
}
