// How fast a job moves now, and so how long it has left: bytes over a short sliding
// window that starts afresh whenever the job's pace was changed on purpose (a pause, a
// resume, a throttle change), so the figure follows the change within about a second
// instead of averaging it away.

/** Long enough to smooth over big I/Os at a slow pace, short enough to follow a change. */
const WINDOW_MS = 1000;
/** A rate is only said once this much time was seen since the window started. */
const MIN_SPAN_MS = 250;
/** Time left is only said once this much of the current pace was seen. */
const ETA_SPAN_MS = 1000;

export class RateMeter {
  private samples: Array<{ t: number; bytes: number }> = [];
  private since: number;
  private last = 0;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.since = now();
  }

  /** The pace changed on purpose: what was seen before says nothing about now. */
  restart(bytes: number): void {
    this.since = this.now();
    this.samples = [{ t: this.since, bytes }];
  }

  /** Total bytes moved so far; call often (every completed I/O, every tick). */
  sample(bytes: number): void {
    const t = this.now();
    this.samples.push({ t, bytes });
    while (this.samples.length > 2 && t - this.samples[1].t >= WINDOW_MS) this.samples.shift();
  }

  /** Bytes per second over the window (the last figure while the window is too short). */
  rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || last.t - first.t < MIN_SPAN_MS) return this.last;
    this.last = Math.round(((last.bytes - first.bytes) * 1000) / (last.t - first.t));
    return this.last;
  }

  /** Seconds to move `left` more bytes at the current rate; null until that rate is known. */
  eta(left: number): number | null {
    if (left <= 0) return 0;
    const rate = this.rate();
    if (rate <= 0 || this.now() - this.since < ETA_SPAN_MS) return null;
    return Math.max(1, Math.ceil(left / rate));
  }
}
