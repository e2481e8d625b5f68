// The job on screen: fed by window.driveTwin's events, one job at a time.
//
// Events can arrive before startClone/resumeJob answer with the job's id, so events
// of jobs not (yet) shown are kept briefly and replayed when the job is shown.
import type {
  DriveTwinEventName,
  DriveTwinEvents,
  JobDone,
  JobError,
  JobId,
  JobProgress,
  JobStarted,
  JobSummary,
  ModeChange,
  RegionMapChange,
  ThrottleChange,
  VerifyProgress,
} from '../../preload/api';
import { api, errorText } from '../lib/api';
import { RegionCells } from '../lib/region-cells';
import { history } from './history.svelte';

export interface RateSample {
  /** Seconds since the job came on screen. */
  t: number;
  /** Bytes per second. */
  rate: number;
  /** The cap in force (0: none). */
  cap: number;
  paused: boolean;
}

export type Phase = 'idle' | 'copying' | 'paused' | 'verifying' | 'finished';

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
  resumed = $state(false);
  source = $state('');
  destinations = $state.raw<string[]>([]);
  bytesTotal = $state(0);
  regionSize = $state(0);
  regionsTotal = $state(0);
  progress = $state.raw<JobProgress | null>(null);
  samples = $state.raw<RateSample[]>([]);
  errors = $state.raw<JobError[]>([]);
  /** All errors, including those no longer kept in `errors`. */
  errorCount = $state(0);
  mode = $state.raw<ModeChange | null>(null);
  done = $state.raw<JobDone | null>(null);
  verifying = $state.raw<VerifyProgress | null>(null);
  /** Errors not about one job (e.g. the engine could not start). */
  engineErrors = $state.raw<JobError[]>([]);
  /** Bumped whenever `map` changes (it is not reactive itself: it can be large). */
  mapVersion = $state(0);
  readonly map = new RegionCells();
  /** A control (pause, throttle…) the backend refused. */
  controlError = $state<string | null>(null);
  stopping = $state(false);
  /** Mean rate while not paused, since the job came on screen. */
  average = $state(0);
  /** Seconds spent copying (not paused) since the job came on screen. */
  activeSeconds = $state(0);

  phase: Phase = $derived(
    this.id === null
      ? 'idle'
      : this.done
        ? 'finished'
        : this.verifying
          ? 'verifying'
          : this.progress?.paused
            ? 'paused'
            : 'copying',
  );
  bytesDone = $derived(this.progress?.bytesDone ?? 0);

  private shownAt = 0;
  private firstBytes: number | null = null;
  private lastAt = 0;
  private lastPaused = false;
  private activeMs = 0;
  private kept = new Map<JobId, Buffered[]>();

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
  }

  private receive(message: Buffered): void {
    const job = (message.payload as { job: JobId | null }).job;
    if (job === null) {
      if (message.event === 'error') this.engineErrors = [...this.engineErrors, message.payload];
      return;
    }
    if (message.event === 'done' || message.event === 'job-started') void history.refresh();
    if (job === this.id) {
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
        return;
      case 'verify-progress':
        this.verifying = message.payload;
        return;
      case 'drives-changed':
        return;
    }
  }

  /** Show job `id`: from its start event, or from the history (a job already running). */
  show(id: JobId, from?: JobStarted | JobSummary): void {
    this.id = id;
    this.resumed = false;
    this.progress = null;
    this.samples = [];
    this.errors = [];
    this.errorCount = 0;
    this.mode = null;
    this.done = null;
    this.verifying = null;
    this.controlError = null;
    this.engineErrors = [];
    this.stopping = false;
    this.average = 0;
    this.activeSeconds = 0;
    this.shownAt = performance.now();
    this.firstBytes = null;
    this.lastAt = 0;
    this.activeMs = 0;
    this.map.clear(0, 0);
    this.mapVersion++;
    if (from && 'resumed' in from) this.onStarted(from);
    else if (from) {
      this.source = from.source;
      this.destinations = from.destinations.map((d) => d.path);
      this.bytesTotal = from.bytesTotal;
      this.regionSize = from.regionSize;
      this.regionsTotal = from.regionsTotal;
      if (from.mode !== 'rw') this.mode = { job: id, mode: from.mode, reason: from.error ?? '' };
    }
    for (const message of this.kept.get(id) ?? []) this.handle(message);
    this.kept.delete(id);
    void this.loadMap(id);
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
    } catch {
      // A job that never started has no map yet; its events bring it.
    }
  }

  private onStarted(e: JobStarted): void {
    this.resumed = e.resumed;
    this.source = e.source;
    this.destinations = e.destinations;
    this.bytesTotal = e.bytesTotal;
    this.regionSize = e.regionSize;
    this.regionsTotal = e.regionsTotal;
  }

  private onProgress(p: JobProgress): void {
    const now = performance.now();
    if (this.firstBytes === null) this.firstBytes = p.bytesDone;
    if (this.lastAt > 0 && !this.lastPaused) this.activeMs += now - this.lastAt;
    this.lastAt = now;
    this.lastPaused = p.paused;
    this.progress = p;
    this.bytesTotal = p.bytesTotal;
    this.regionsTotal = p.regionsTotal;
    this.activeSeconds = this.activeMs / 1000;
    this.average =
      this.activeMs > 500 ? (p.bytesDone - this.firstBytes) / (this.activeMs / 1000) : p.rate;
    const sample: RateSample = {
      t: (now - this.shownAt) / 1000,
      rate: p.paused ? 0 : p.rate,
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
