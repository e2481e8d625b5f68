// The job on screen: fed by window.driveTwin's events, one job at a time. It keeps the
// latest event of each kind and shows those; it never works out a job's state (rates,
// times, counts, paused) itself — the engine's session says them.
//
// Events can arrive before startClone/resumeJob answer with the job's id, so events
// of jobs not (yet) shown are kept briefly and replayed when the job is shown.
import type { JobSummary, ThrottleChange } from '../../preload/api';
import type {
  CloneIntent,
  DriveTwinEventName,
  DriveTwinEvents,
  JobDone,
  JobError,
  JobId,
  JobOptionsInfo,
  JobProgress,
  JobServing,
  JobStarted,
  JobVerified,
  ModeChange,
  RegionMapChange,
  VerifyProgress,
} from '../../preload/events';
import { api, errorText } from '../lib/api';
import { finalCounts, regionCounts, type RegionCounts } from '../lib/job-words';
import type { Phase } from '../lib/phase';
import { RegionCells } from '../lib/region-cells';
import { notifyEnd } from '../lib/notify';
import { drives } from './drives.svelte';
import { history } from './history.svelte';

export type { Phase };

export interface RateSample {
  /** Seconds since the job came on screen. */
  t: number;
  /** Bytes per second. */
  rate: number;
  /** The cap in force (0: none). */
  cap: number;
  paused: boolean;
}

const MAX_SAMPLES = 1200;
const MAX_ERRORS = 100;
const KEPT_EVENTS = 400;

type Buffered = {
  [E in DriveTwinEventName]: { event: E; payload: DriveTwinEvents[E] };
}[DriveTwinEventName];

/** Halves old samples by averaging neighbours, so a long copy keeps its whole curve. */
function thin(samples: RateSample[]): RateSample[] {
  const out: RateSample[] = [];
  for (let i = 0; i + 1 < samples.length; i += 2) {
    const a = samples[i];
    const b = samples[i + 1];
    out.push({ t: a.t, rate: (a.rate + b.rate) / 2, cap: b.cap, paused: a.paused && b.paused });
  }
  if (samples.length % 2 === 1) out.push(samples[samples.length - 1]);
  return out;
}

class CurrentJob {
  id = $state<JobId | null>(null);
  /** From job-started: a new copy, a resumed one, or an update (copies what differs). */
  intent = $state<CloneIntent | null>(null);
  /** The options in force, from job-started (or the job's record when shown from Jobs). */
  options = $state.raw<JobOptionsInfo | null>(null);
  /** job-started's: how many regions an update found to differ. */
  delta = $state<number | null>(null);
  source = $state('');
  destinations = $state.raw<string[]>([]);
  bytesTotal = $state(0);
  regionSize = $state(0);
  regionsTotal = $state(0);
  progress = $state.raw<JobProgress | null>(null);
  /**
   * The region counts on screen: the latest progress event's (a verify's too: it carries
   * the copy's), and once the job ended, how it ended (finalCounts).
   */
  counts = $state.raw<RegionCounts | null>(null);
  samples = $state.raw<RateSample[]>([]);
  errors = $state.raw<JobError[]>([]);
  /** All errors, including those no longer kept in `errors`. */
  errorCount = $state(0);
  mode = $state.raw<ModeChange | null>(null);
  done = $state.raw<JobDone | null>(null);
  /** The latest compare (before an update) or verify progress, until copy progress follows. */
  verifying = $state.raw<VerifyProgress | null>(null);
  /** The verify's result per destination. */
  verified = $state.raw<JobVerified | null>(null);
  /** The copy served as a disk while it copies ("Use it now"): the latest word on it. */
  serving = $state.raw<JobServing | null>(null);
  /** Errors not about one job (e.g. the engine could not start). */
  engineErrors = $state.raw<JobError[]>([]);
  /** Bumped whenever `map` changes (it is not reactive itself: it can be large). */
  mapVersion = $state(0);
  readonly map = new RegionCells();
  /** A control (pause, throttle…) the backend refused. */
  controlError = $state<string | null>(null);
  /** Cancel was asked and the job has not ended yet (what the button shows). */
  stopping = $state(false);
  /**
   * The job's record, when it ended while the backend was out of reach: its done event
   * was never heard, so the record says how it ended.
   */
  unheardEnd = $state.raw<JobSummary | null>(null);

  phase: Phase = $derived(
    this.id === null
      ? 'idle'
      : this.done || this.unheardEnd
        ? 'finished'
        : this.verifying
          ? this.verifying.phase
          : this.progress
            ? this.progress.paused
              ? 'paused'
              : this.progress.phase
            : 'starting',
  );
  bytesDone = $derived(this.progress?.bytesDone ?? 0);

  private shownAt = 0;
  private kept = new Map<JobId, Buffered[]>();
  /** False between hold() and show(): events are kept, even the shown job's. */
  private following = true;

  start(): void {
    const on = <E extends DriveTwinEventName>(event: E): void => {
      api().on(event, (payload) => this.receive({ event, payload } as Buffered));
    };
    on('job-started');
    on('progress');
    on('region-map');
    on('error');
    on('mode');
    on('done');
    on('verify-progress');
    on('verified');
    on('serving');
  }

  private receive(message: Buffered): void {
    const job = (message.payload as { job: JobId | null }).job;
    if (job === null) {
      if (message.event === 'error') this.engineErrors = [...this.engineErrors, message.payload];
      return;
    }
    if (message.event === 'done' || message.event === 'job-started') void history.refresh();
    // Heard live (never on a replay): the copy just ended. Electron's main process
    // notifies by itself.
    if (message.event === 'done' && drives.capabilities?.notifications === 'page') {
      notifyEnd(message.payload);
    }
    if (job === this.id && this.following) {
      this.handle(message);
      return;
    }
    const list = this.kept.get(job) ?? [];
    list.push(message);
    if (list.length > KEPT_EVENTS) list.splice(0, list.length - KEPT_EVENTS);
    this.kept.delete(job); // most recent last, so the oldest job goes first below
    this.kept.set(job, list);
    if (this.kept.size > 8) this.kept.delete(this.kept.keys().next().value as JobId);
  }

  private handle(message: Buffered): void {
    switch (message.event) {
      case 'job-started':
        return this.onStarted(message.payload);
      case 'progress':
        return this.onProgress(message.payload);
      case 'region-map':
        return this.onMap(message.payload);
      case 'error':
        return this.onError(message.payload);
      case 'mode':
        this.mode = message.payload;
        return;
      case 'done':
        this.done = message.payload;
        this.verifying = null;
        this.stopping = false;
        this.counts = finalCounts(message.payload.state, this.regionsTotal, null) ?? this.counts;
        // What the record holds now (committed regions): the map and, short of done, the counts.
        if (this.id !== null) void this.loadMap(this.id);
        return;
      case 'verify-progress':
        this.verifying = message.payload;
        return;
      case 'verified':
        this.verified = message.payload;
        return;
      case 'serving':
        this.serving = message.payload;
        return;
      case 'drives-changed':
        return;
    }
  }

  /**
   * Before starting or resuming a job: its events are kept from now on, to be shown by
   * show(). A resumed job has the id of the one that may be on screen: its new session
   * must not land on the old one's screen, and nothing heard before belongs to it.
   */
  hold(): void {
    this.following = false;
    this.kept.clear();
  }

  /** The start or resume was refused: back to the job on screen. */
  unhold(): void {
    this.following = true;
  }

  /** Show job `id`: from its start event, or from the history (a job already running). */
  show(id: JobId, from?: JobStarted | JobSummary): void {
    this.following = true;
    this.id = id;
    this.intent = null;
    this.options = null;
    this.delta = null;
    this.progress = null;
    this.counts = null;
    this.samples = [];
    this.errors = [];
    this.errorCount = 0;
    this.mode = null;
    this.done = null;
    this.verifying = null;
    this.verified = null;
    this.serving = null;
    this.controlError = null;
    this.engineErrors = [];
    this.stopping = false;
    this.unheardEnd = null;
    this.shownAt = performance.now();
    this.map.clear(0, 0);
    this.mapVersion++;
    if (from && 'intent' in from) this.onStarted(from);
    else if (from) {
      this.source = from.source;
      this.destinations = from.destinations.map((d) => d.path);
      this.bytesTotal = from.bytesTotal;
      this.regionSize = from.regionSize;
      this.regionsTotal = from.regionsTotal;
      this.options = from.options;
      if (from.mode !== 'rw') this.mode = { job: id, mode: from.mode, reason: from.error ?? '' };
    }
    for (const message of this.kept.get(id) ?? []) this.handle(message);
    this.kept.delete(id);
    void this.loadMap(id);
  }

  /**
   * After the connection came back: a job still running goes on (its map afresh: changes
   * were missed); one that ended meanwhile is shown as its record says.
   */
  async catchUp(): Promise<void> {
    await history.refresh();
    const id = this.id;
    if (id === null || this.done) return;
    const record = history.byId(id);
    if (record?.live) void this.loadMap(id);
    else if (record) {
      this.unheardEnd = record;
      this.counts = finalCounts(null, record.regionsTotal, record.regionsHydrated);
    }
  }

  /** Back to no job on screen. */
  close(): void {
    this.id = null;
  }

  private async loadMap(id: JobId): Promise<void> {
    try {
      const whole = await api().regionMap(id);
      if (this.id !== id) return;
      this.map.apply({ ...whole, reset: true });
      this.mapVersion++;
      if (this.done) {
        this.counts = finalCounts(this.done.state, this.map.regionsTotal, this.map.hydratedCount);
      }
    } catch {
      // A job that never started has no map yet; its events bring it.
    }
  }

  private onStarted(e: JobStarted): void {
    this.intent = e.intent;
    this.options = e.options;
    this.delta = e.delta ?? null;
    this.source = e.source;
    this.destinations = e.destinations;
    this.bytesTotal = e.bytesTotal;
    this.regionSize = e.regionSize;
    this.regionsTotal = e.regionsTotal;
  }

  private onProgress(p: JobProgress): void {
    if (!this.done) this.counts = regionCounts(p);
    // A compare or a verify: its own events (verify-progress) show its bytes and rate.
    if (p.phase === 'comparing' || p.phase === 'verifying') return;
    this.progress = p;
    // Copy progress after a compare: the compare is over.
    this.verifying = null;
    this.bytesTotal = p.bytesTotal;
    this.regionsTotal = p.regionsTotal;
    // The chart keeps the rates as they came: a curve of the events, nothing worked out.
    const sample: RateSample = {
      t: (performance.now() - this.shownAt) / 1000,
      rate: p.rate,
      cap: p.throttle.maxRate,
      paused: p.paused,
    };
    const samples = [...this.samples, sample];
    this.samples = samples.length > MAX_SAMPLES ? thin(samples) : samples;
  }

  private onMap(change: RegionMapChange): void {
    this.regionSize = change.regionSize;
    this.regionsTotal = change.regionsTotal;
    const fits = this.map.apply(change);
    this.mapVersion++;
    if (!fits && this.id !== null) void this.loadMap(this.id);
  }

  private onError(e: JobError): void {
    this.errorCount++;
    const errors = [...this.errors, e];
    // Keep the fatal ones and the latest others.
    if (errors.length > MAX_ERRORS) {
      const i = errors.findIndex((x) => !x.fatal);
      errors.splice(i < 0 ? 0 : i, 1);
    }
    this.errors = errors;
  }

  // --- controls ---------------------------------------------------------------

  private async control(what: () => Promise<void>): Promise<boolean> {
    this.controlError = null;
    try {
      await what();
      return true;
    } catch (e) {
      this.controlError = errorText(e);
      return false;
    }
  }

  pause(): Promise<boolean> {
    const id = this.id;
    return id === null ? Promise.resolve(false) : this.control(() => api().pause(id));
  }

  resume(): Promise<boolean> {
    const id = this.id;
    return id === null ? Promise.resolve(false) : this.control(() => api().resume(id));
  }

  async cancel(): Promise<boolean> {
    const id = this.id;
    if (id === null) return false;
    this.stopping = true;
    const ok = await this.control(() => api().cancel(id));
    if (!ok) this.stopping = false;
    return ok;
  }

  setThrottle(change: ThrottleChange): Promise<boolean> {
    const id = this.id;
    return id === null ? Promise.resolve(false) : this.control(() => api().setThrottle(id, change));
  }
}

export const job = new CurrentJob();
