// How fast a job moves now, and so how long it has left: the bytes moved over the last
// second, from a line through the moments I/Os completed (not a count of whole I/Os,
// which jumps when a few big ones land in or out of the window). The window starts
// afresh whenever the pace was changed on purpose (a pause, a resume, a throttle
// change) — at the first I/O let through at the new pace, so what was in flight at the
// old one is left out — and the figure follows the change within about a second.

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
  /** The pace changed and nothing moved at the new one yet: the last rate stands. */
  private held = false;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.since = now();
    this.samples = [{ t: this.since, bytes: 0 }];
  }

  /**
   * The pace is changing on purpose: what was seen before says nothing about what comes.
   * Until restart(), the last rate is said, and no time left.
   */
  hold(): void {
    this.held = true;
  }

  /** The new pace began at `at` with `bytes` moved so far. */
  restart(bytes: number, at = this.now()): void {
    this.held = false;
    this.since = at;
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
    if (this.held || span < MIN_SPAN_MS) return this.last;
    const newest = this.samples[this.samples.length - 1];
    this.last = Math.round(((newest.bytes - this.bytesAt(t - span)) * 1000) / span);
    return this.last;
  }

  /** Seconds to move `left` more bytes at the current rate; null until that rate is known. */
  eta(left: number): number | null {
    if (left <= 0) return 0;
    if (this.held || this.now() - this.since < ETA_SPAN_MS) return null;
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

/** A stretch says the full speed once its completions span this long… */
const FULL_MIN_SPAN_MS = 300;
/** …and this many I/Os completed after its first. */
const FULL_MIN_IOS = 8;
/** The full speed is the throughput over the last this-long of the stretch. */
const FULL_WINDOW_MS = 2000;
/** A new stretch's first this-long is left out: the pipeline filling, a drive's saved-up burst. */
const FULL_SKIP_MS = 250;
/** A new stretch has settled once its older half and its newer agree within this share… */
const SETTLED_SHARE = 0.1;
/** …or once it is this old (unless told otherwise). */
const FULL_SETTLE_MS = 750;

/**
 * The pair's full speed: bytes per second over a stretch in which nothing held the copy
 * back, drawn from one completion to another (the first of a stretch is its base: the
 * pipeline filling before it moved nothing). The time between I/Os is part of the full
 * speed. A stretch that ends (the copy was held back or stopped) leaves the last
 * measurement standing until a new stretch is long enough to say another.
 */
export class FullSpeedMeter {
  private samples: Sample[] = [];
  private measured: number | null = null;
  /** This stretch has said the full speed. */
  private said = false;
  /** When this stretch's first I/O ended. */
  private began = 0;
  /** How long this stretch waits for its halves to agree. */
  private settleMs = FULL_SETTLE_MS;

  /** Bytes per second, or null until a stretch was long enough to say. */
  get bytesPerSecond(): number | null {
    return this.measured;
  }

  /** What this stretch shows lately (0 before two I/Os ended): a first idea of the speed. */
  get tentative(): number {
    const s = this.samples;
    if (s.length < 2) return 0;
    const last = s[s.length - 1];
    let from = s.length - 2;
    while (from > 0 && last.t - s[from - 1].t <= FULL_SKIP_MS) from -= 1;
    return Math.min(slope(s[from], last), Number.MAX_VALUE);
  }

  /**
   * The copy was held back, or stopped: what follows is a new stretch, which says a speed
   * once its halves agree, or after `settleMs` whatever they say.
   */
  interrupt(settleMs = FULL_SETTLE_MS): void {
    this.samples = [];
    this.said = false;
    this.settleMs = settleMs;
  }

  /**
   * An I/O of `bytes` completed at `t` (ms) with nothing holding the copy back; true once
   * this stretch has said the full speed.
   */
  sample(t: number, bytes: number): boolean {
    const s = this.samples;
    if (s.length === 0) this.began = t;
    s.push({ t, bytes: (s.length > 0 ? s[s.length - 1].bytes : 0) + bytes });
    while (s.length > FULL_MIN_IOS + 1 && t - s[1].t >= FULL_WINDOW_MS) s.shift();
    if (!this.said) {
      // A stretch starts while the pipeline fills, or while a drive spends a burst it
      // saved up resting: its first quarter second is left out, and the first window whose
      // older half and newer agree begins after that start. None yet: wait for one — for
      // settleMs, then the speed is what it is.
      const skip = s.findIndex((x) => x.t >= this.began + FULL_SKIP_MS);
      if (skip < 0) return false;
      let from = settledFrom(s, t, skip);
      if (from < 0 && t - this.began >= this.settleMs) from = skip;
      if (from < 0 || s.length - from <= FULL_MIN_IOS || t - s[from].t < FULL_MIN_SPAN_MS) {
        return false;
      }
      s.splice(0, from);
    } else if (s.length <= FULL_MIN_IOS || t - s[0].t < FULL_MIN_SPAN_MS) {
      return true;
    }
    this.measured = fitted(s);
    this.said = true;
    return true;
  }
}

/** The first sample from `start` on after which `s` spans long enough and has settled; -1: none. */
function settledFrom(s: Sample[], t: number, start: number): number {
  for (let i = start; s.length - i > FULL_MIN_IOS && t - s[i].t >= FULL_MIN_SPAN_MS; i++) {
    const mid = s[i + Math.floor((s.length - i) / 2)];
    const older = slope(s[i], mid);
    const newer = slope(mid, s[s.length - 1]);
    if (Math.abs(older - newer) <= SETTLED_SHARE * newer) return i;
  }
  return -1;
}

/**
 * Bytes per second of the line that fits `s` best (least squares): I/Os of different sizes
 * that end together don't tip it as they tip a line from the first sample to the last.
 */
function fitted(s: Sample[]): number {
  const n = s.length;
  const mt = s.reduce((sum, x) => sum + x.t, 0) / n;
  const mb = s.reduce((sum, x) => sum + x.bytes, 0) / n;
  let num = 0;
  let den = 0;
  for (const x of s) {
    num += (x.t - mt) * (x.bytes - mb);
    den += (x.t - mt) ** 2;
  }
  return den > 0 ? (num * 1000) / den : slope(s[0], s[n - 1]);
}

/** Bytes per second from one sample to a later one. */
function slope(a: Sample, b: Sample): number {
  return b.t > a.t ? ((b.bytes - a.bytes) * 1000) / (b.t - a.t) : Infinity;
}
