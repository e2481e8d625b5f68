// How fast a job moves now, and so how long it has left: the bytes moved over the last
// second, from a line through the moments I/Os completed (not a count of whole I/Os,
// which jumps when a few big ones land in or out of the window). The window starts
// afresh whenever the pace was changed on purpose (a pause, a resume, a throttle
// change), so the figure follows the change within about a second.

/** Long enough to smooth over big I/Os at a slow pace, short enough to follow a change. */
const WINDOW_MS = 1000;
/** A rate is only said once this much time was seen since the window started. */
const MIN_SPAN_MS = 250;
/** Time left is only said once this much of the current pace was seen. */
const ETA_SPAN_MS = 1000;

type Sample = { t: number; bytes: number };

export class RateMeter {
  private samples: Sample[] = [];
  private since: number;
  /** The last rate said: still said while a new window is too short to say another. */
  private last = 0;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.since = now();
    this.samples = [{ t: this.since, bytes: 0 }];
  }

  /** The pace changed on purpose: what was seen before says nothing about now. */
  restart(bytes: number): void {
    this.since = this.now();
    this.samples = [{ t: this.since, bytes }];
  }

  /** Total bytes moved so far, when an I/O completed. */
  sample(bytes: number): void {
    const t = this.now();
    this.samples.push({ t, bytes });
    // Keep one sample older than the window: the line is drawn from it.
    while (this.samples.length > 2 && t - this.samples[1].t >= WINDOW_MS) this.samples.shift();
  }

  /** Bytes per second over the last second (or since the restart, when that is shorter). */
  rate(): number {
    const t = this.now();
    const span = Math.min(WINDOW_MS, t - this.since);
    if (span < MIN_SPAN_MS) return this.last;
    const newest = this.samples[this.samples.length - 1];
    this.last = Math.round(((newest.bytes - this.bytesAt(t - span)) * 1000) / span);
    return this.last;
  }

  /** Seconds to move `left` more bytes at the current rate; null until that rate is known. */
  eta(left: number): number | null {
    if (left <= 0) return 0;
    if (this.now() - this.since < ETA_SPAN_MS) return null;
    const rate = this.rate();
    if (rate <= 0) return null;
    return Math.max(1, Math.ceil(left / rate));
  }

  /** Bytes moved by time `t`, on the line between the completions around it. */
  private bytesAt(t: number): number {
    const s = this.samples;
    if (t <= s[0].t) return s[0].bytes;
    for (let i = 1; i < s.length; i++) {
      if (s[i].t < t) continue;
      const a = s[i - 1];
      const b = s[i];
      return b.t === a.t ? b.bytes : a.bytes + ((b.bytes - a.bytes) * (t - a.t)) / (b.t - a.t);
    }
    return s[s.length - 1].bytes;
  }
}
