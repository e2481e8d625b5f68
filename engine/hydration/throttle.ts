// How much of the disks the copier may use, changeable while it runs.
//
// Like dm-kcopyd, the percent throttle keeps a decaying history of how long I/O
// was in flight (ioTime) against wall time (totalTime), and holds back a new
// job while the share exceeds the limit. The rate cap is a token bucket whose
// credit never exceeds a short burst, so lowering a limit can't leave a
// backlog that bursts out later: a waiter re-reads the limits every tick.

import { type ThrottleSettings, throttleProblem } from '../options';

const TICK_MS = 100;
/** History is halved once it spans this long, so old behaviour fades. */
const HISTORY_MS = 2000;

type Clock = () => number;
type Sleep = (ms: number) => Promise<void>;

const realSleep: Sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Throttle {
  private settings: ThrottleSettings;
  private ioJobs = 0;
  private ioTime = 0;
  private totalTime = 0;
  private lastTick: number;
  private credit = 0;
  private creditAt: number;
  private queue: Promise<void> = Promise.resolve();
  /** The job stops: nobody waits any longer (a waiter re-checks within a tick). */
  private closed = false;

  /**
   * `slots`: how many jobs the copier keeps in flight at full speed. I/O time is
   * counted in proportion to the slots busy, so a 50% limit halves the rate rather
   * than only serialising overlapped jobs.
   */
  constructor(
    settings: ThrottleSettings,
    private readonly now: Clock = () => performance.now(),
    private readonly sleep: Sleep = realSleep,
    private readonly slots = 1,
  ) {
    this.settings = { ...settings };
    this.lastTick = this.creditAt = now();
  }

  get current(): ThrottleSettings {
    return { ...this.settings };
  }

  set(change: Partial<ThrottleSettings>): void {
    const problem = throttleProblem(change);
    if (problem) throw new RangeError(problem);
    // Time until now is settled at the limits that were in force during it.
    this.refill();
    this.account();
    const before = this.settings.maxRate;
    this.settings = { ...this.settings, ...change };
    // A debt is time owed at the rate it was run up at: a lower cap must not make the
    // I/O already let through cost more waiting than it did (a pause of seconds).
    if (this.credit < 0 && before > 0 && this.settings.maxRate > 0) {
      this.credit *= this.settings.maxRate / before;
    }
    this.credit = Math.min(this.credit, this.burst());
  }

  /** The job stops: every waiter returns within a tick, and later ones at once. */
  close(): void {
    this.closed = true;
  }

  /** Waits until a job of `bytes` may start. Callers are admitted in order. */
  admit(bytes: number): Promise<void> {
    const turn = this.queue.then(() => this.waitForTurn(bytes));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** Bytes admitted and then not used (the job shrank): they no longer count against the cap. */
  refund(bytes: number): void {
    if (this.settings.maxRate > 0) this.credit = Math.min(this.credit + bytes, this.burst());
  }

  /** Brackets real I/O so its time counts against the percent limit. */
  async measure<T>(io: () => Promise<T>): Promise<T> {
    this.account();
    this.ioJobs += 1;
    try {
      return await io();
    } finally {
      this.account();
      this.ioJobs -= 1;
    }
  }

  /** Percent of recent wall time spent with I/O in flight. */
  get busyPercent(): number {
    this.account();
    return this.totalTime > 0 ? (100 * this.ioTime) / this.totalTime : 0;
  }

  private async waitForTurn(bytes: number): Promise<void> {
    while (!this.closed && (this.overBusyLimit() || this.overRateLimit())) {
      await this.sleep(this.pause());
    }
    if (this.settings.maxRate > 0) this.credit -= bytes;
  }

  private overBusyLimit(): boolean {
    return this.settings.percent < 100 && this.busyPercent > this.settings.percent;
  }

  private overRateLimit(): boolean {
    if (this.settings.maxRate === 0) return false;
    this.refill();
    return this.credit < 0;
  }

  /** Sleep until the debt is paid or the busy share falls back, but never longer than a tick: limits may change. */
  private pause(): number {
    let wait = 0;
    if (this.settings.maxRate > 0 && this.credit < 0) {
      wait = (-this.credit / this.settings.maxRate) * 1000;
    }
    if (this.overBusyLimit()) {
      // Idle time after which io / total equals the allowed share.
      const io = (this.busyPercent / 100) * this.totalTime;
      wait = Math.max(wait, (io * 100) / this.settings.percent - this.totalTime);
    }
    return Math.max(1, Math.min(TICK_MS, wait));
  }

  private burst(): number {
    return this.settings.maxRate * (TICK_MS / 1000);
  }

  private refill(): void {
    const t = this.now();
    if (this.settings.maxRate > 0) {
      const earned = ((t - this.creditAt) / 1000) * this.settings.maxRate;
      this.credit = Math.min(this.credit + earned, this.burst());
    }
    this.creditAt = t;
  }

  private account(): void {
    const t = this.now();
    const elapsed = t - this.lastTick;
    this.totalTime += elapsed;
    this.ioTime += elapsed * Math.min(1, this.ioJobs / this.slots);
    this.lastTick = t;
    while (this.totalTime > HISTORY_MS) {
      this.ioTime /= 2;
      this.totalTime /= 2;
    }
    // Like the rate cap's burst: share left unused is kept for one tick's worth at
    // most, so a quiet spell or a raised limit can't be spent later as a burst.
    if (this.settings.percent < 100) {
      const floor = (this.settings.percent / 100) * (this.totalTime - TICK_MS);
      this.ioTime = Math.max(this.ioTime, floor);
    }
  }
}
