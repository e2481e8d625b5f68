// The userspace dm-clone: hydrates every destination from the source, region by
// region, and commits the hydrated bitmap once a second — after flushing the
// destinations, so a region marked hydrated is always really on them. The regions
// holding the partition tables go last. The commit itself and the metadata mode are
// commit.ts; the batches and their memory bound batches.ts; what a run counts
// job-progress.ts; what a job is given and gives back job-parts.ts; its destinations,
// and one leaving, destinations.ts; the destination served while it hydrates on-demand.ts.

import { EventEmitter } from 'node:events';
import { Batches, type RegionTurn, nextRun } from './batches';
import { Committer } from './commit';
import { Copier, type CopyOptions, type CopyResult } from './copier';
import type { CopyOutcome, JobParts, JobTarget } from './job-parts';
import { type Geometry, type Range, regionRange, regionsOf } from '../geometry';
import { batchTrouble } from './batch-trouble';
import { Destinations } from './destinations';
import { type Device, isStream } from '../io/device';
import { JobProgress } from './job-progress';
import { type Lane, OnDemand } from './on-demand';
import type { Uncommitted } from './region-events';
import type { Metadata } from '../store/metadata';
import type { RegionMap } from '../store/region-map';
import { statusLine } from './status-line';
import type { JobOptions, ThrottleSettings } from '../options';
import { Throttle } from './throttle';
import type { EngineEvent, ProgressEvent } from '../events';

const COMMIT_PERIOD_MS = 1000;
const IDLE_POLL_MS = 10; // waiting for room a client's copy holds: how often to look again
/** A download's batches: this long of its pace each. */
const DOWNLOAD_BATCH_SECONDS = 0.25;

/** `final`: a resume can't finish the job (said so, and recorded). */
type StopReason = { kind: 'cancelled' } | { kind: 'failed'; message: string; final: boolean };

/**
 * Job events: 'event' (ErrorEvent | ModeEvent) for front ends; 'committed' (regions
 * newly hydrated, as runs, and unreadable extents) after each commit.
 */
export class HydrationJob extends EventEmitter {
  readonly id: number;
  private readonly meta: Metadata;
  private readonly geometry: Geometry;
  private readonly source: Device;
  private readonly destinations: Destinations;
  /** The destinations' slots, null once one left (the copier's and on-demand's view). */
  private readonly targets: (JobTarget | null)[];
  private readonly map: RegionMap;
  private readonly zeroRegions: RegionMap | null;
  private readonly fixedOptions: JobOptions;
  private readonly throttle: Throttle;
  private copier: Copier;
  private readonly copierOptions: CopyOptions;
  private readonly heldBack: Array<{ first: number; count: number }>;
  /** Every other region is committed: the held-back ones may go. */
  private tablesTurn = false;
  private readonly batches: Batches;
  private readonly committer: Committer;
  private readonly tally: JobProgress;
  /** Reads and writes of the destination as it will be, when it is served (null otherwise). */
  readonly served: OnDemand | null;

  private cursor = 0;
  private paused = false;
  private flushingAtEnd = false;
  private stopReason: StopReason | null = null;
  private wake: () => void = () => undefined;

  constructor(parts: JobParts) {
    super();
    this.id = parts.id;
    this.meta = parts.metadata;
    // Copied: a streamed source's size becomes known when its end is read.
    this.geometry = { ...parts.geometry };
    this.source = parts.source;
    this.map = parts.map;
    this.destinations = new Destinations(parts.targets, {
      held: () => this.map.bits,
      left: (target, reason) => this.destinationLeft(target, reason),
    });
    this.targets = this.destinations.slots;
    this.zeroRegions = parts.zeroRegions ?? null;
    this.fixedOptions = { ...parts.options };
    const { regionSize } = parts.geometry;
    // The memory bound: bytes in flight stay bounded whatever the region size.
    this.batches = new Batches(regionSize, parts.options);
    this.throttle = new Throttle({
      percent: parts.options.throttle,
      maxRate: parts.options.maxRate,
    });
    this.copierOptions = {
      ignoreErrors: parts.options.ignoreErrors,
      sequential: parts.options.sequential,
      zeroUnit: regionSize,
      onMoved: (bytes, admittedAt) => this.tally.moved(bytes, admittedAt),
      stopped: () => this.stopReason !== null,
    };
    this.copier = new Copier(parts.source, this.throttle, this.copierOptions);
    this.committer = new Committer(this.id, this.meta, this.map, {
      flushDestinations: () => this.destinations.flush(),
      status: () => this.status(),
      stop: (message) => this.stop(message),
      modeChanged: (event) => this.emitEvent(event),
      committed: (regions, unreadable) => this.emit('committed', regions, unreadable),
    });
    this.tally = new JobProgress(parts.source, parts.sizeEstimate ?? null, this.geometry, this.map);
    this.heldBack = (parts.heldBack ?? []).map((r) => regionsOf(this.geometry, r));
    this.served = !parts.serve
      ? null
      : new OnDemand(parts, this.targets, {
          committer: this.committer,
          tally: this.tally,
          copierOptions: this.copierOptions,
          hydrate: (first, n, lane) => this.hydrateBatch(first, n, lane),
          dropTarget: (target, reason) => this.destinations.drop(target, reason),
          flush: () => this.destinations.flush(),
          stopped: () => this.stopReason !== null,
        });
  }

  /** The options in force: the throttle holds the live percent and rate cap. */
  get options(): JobOptions {
    const { percent, maxRate } = this.throttle.current;
    return { ...this.fixedOptions, throttle: percent, maxRate };
  }

  get isPaused(): boolean {
    return this.paused;
  }

  get sizeKnown(): boolean {
    return Number.isFinite(this.geometry.regionCount);
  }

  /** The geometry as known now (a stream's size once its end was read). */
  currentGeometry(): Geometry {
    return { ...this.geometry };
  }

  async run(): Promise<CopyOutcome> {
    this.tally.start();
    const timer = setInterval(() => void this.committer.commit(), COMMIT_PERIOD_MS);
    const sizeWasKnown = this.sizeKnown;
    try {
      // Invariant 9, wipe first: before any region, a destination that can't take the
      // zeros leaves the job, as one that fails later would.
      await this.destinations.wipeOld();
      await this.hydrate();
      // Regions a client held as the copier went by are queued: their turn comes now.
      if (await this.served?.settle()) await this.hydrate();
      await this.hydrateTables();
      await this.served?.settle();
      // Images of a stream grew with the writes: zero regions at the end left them short.
      if (!sizeWasKnown && this.sizeKnown) await this.destinations.setLength(this.geometry.size);
    } finally {
      clearInterval(timer);
    }
    this.batches.release();
    this.flushingAtEnd = true;
    await this.committer.commit();
    this.flushingAtEnd = false;
    return this.finish();
  }

  pause(): void {
    this.paused = true;
    this.tally.pause();
  }

  resume(): void {
    this.paused = false;
    this.tally.resume();
    this.wake();
  }

  /** In-flight I/O finishes and is committed; the job stays resumable. */
  cancel(): void {
    this.stopReason ??= { kind: 'cancelled' };
    this.halt();
  }

  /** Nothing new starts: waiters for the throttle return and batches end after their current I/O. */
  private halt(): void {
    this.throttle.close();
    this.wake();
  }

  setThrottle(change: Partial<ThrottleSettings>): void {
    this.throttle.set(change);
    this.tally.newPace();
  }

  status(): string {
    return statusLine({
      regionSize: this.geometry.regionSize,
      hydrated: this.map.count,
      total: this.sizeKnown ? this.geometry.regionCount : null,
      hydrating: this.batches.regionsInFlight,
      paused: this.paused,
      sparse: this.targets.some((t) => t?.skipZeros),
      options: this.options,
      mode: this.committer.mode,
    });
  }

  /** Regions hydrated plus written-awaiting-commit plus in flight never exceed the total. */
  progress(): ProgressEvent {
    const total = this.sizeKnown ? this.geometry.size : this.tally.estimatedSize();
    const left = total - this.tally.bytesDone;
    const throttle = this.throttle.current;
    return {
      type: 'progress',
      job: this.id,
      phase: this.flushingAtEnd ? 'flushing' : 'copying',
      bytesDone: this.tally.bytesDone,
      bytesTotal: total,
      sizeKnown: this.sizeKnown,
      regionsHydrated: this.map.count,
      regionsWritten: this.committer.regionsWritten(),
      hydrating: this.batches.regionsInFlight,
      regionsTotal: Math.ceil(total / this.geometry.regionSize),
      rate: this.paused ? 0 : this.tally.rate(),
      averageRate: this.tally.averageRate(),
      eta: this.paused ? null : this.tally.eta(left),
      paused: this.paused,
      throttle: { percent: throttle.percent, maxRate: throttle.maxRate },
      fullSpeed: this.throttle.fullSpeed,
      status: this.status(),
    };
  }

  /** Regions not yet committed: in flight, and written waiting for the commit. */
  uncommittedRuns(): Uncommitted {
    return { inFlight: this.batches.runsInFlight(), written: this.committer.uncommitted() };
  }

  /** A stream ended at `end`: no region past it exists. */
  private learnSize(end: number): void {
    if (this.sizeKnown && end >= this.geometry.size) return;
    this.geometry.size = end;
    this.geometry.regionCount = Math.ceil(end / this.geometry.regionSize);
    this.map.truncate(this.geometry.regionCount);
    this.meta.setSourceSize(this.id, end, this.geometry.regionCount);
  }

  private emitEvent(event: EngineEvent): void {
    this.emit('event', event);
  }

  /** Keeps up to `threshold` regions in flight until every region is dispatched or we stop. */
  private async hydrate(): Promise<void> {
    const running = new Set<Promise<void>>();
    for (;;) {
      while (!this.stopReason && !this.paused && this.batches.hasBuffer()) {
        const batch = this.nextBatch();
        if (!batch) break;
        const copy: Promise<void> = this.hydrateBatch(batch.first, batch.count).finally(() => {
          running.delete(copy);
          this.served?.release(batch.first, batch.count);
        });
        running.add(copy);
      }
      const idle = this.stopReason || this.paused || this.cursor >= this.geometry.regionCount;
      if (running.size === 0 && (this.stopReason || this.cursor >= this.geometry.regionCount))
        break;
      // None of its own in flight, none may start (a client's copy holds the room): wait, never spin.
      const poll = running.size === 0 && !idle ? setTimeout(() => this.wake(), IDLE_POLL_MS) : null;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        for (const p of running) void p.then(resolve);
      });
      if (poll) clearTimeout(poll);
    }
  }

  /** The next run of unhydrated regions after the cursor, no longer than a batch nor the threshold allows. */
  private nextBatch(): { first: number; count: number } | null {
    const hydrating = this.batches.regionsInFlight;
    const download = this.downloadShare();
    const room = Math.min(
      this.batches.limit(
        Math.min(this.throttle.ioBytes, download),
        Math.min(this.throttle.inFlightBytes, download),
        hydrating,
      ),
      this.fixedOptions.threshold - hydrating,
    );
    if (room <= 0) return null;
    // A region a client read goes ahead of the cursor.
    const from = this.served?.demanded() ?? this.cursor;
    // A run of copies may stretch over a hole of the source: nothing is read for it.
    const run = nextRun(
      this.map,
      from,
      room,
      (r) => this.turnOf(r),
      (first, how) => (how === 'copy' ? this.holeRegions(first) : 0),
    );
    if (from === this.cursor) this.cursor = run ? run.first + run.count : this.geometry.regionCount;
    if (run) this.served?.claim(run.first, run.count);
    return run;
  }

  /**
   * A download without a rate cap: a quarter of a second of what it moves (its own
   * pace), so its batches end in turn and what an interruption loses is about a second
   * of it, not a batch of MiBs that came slowly. Anything else: no bound of its own.
   */
  private downloadShare(): number {
    const capped = this.throttle.current.maxRate > 0;
    if (capped || !isStream(this.source) || !this.source.file.download) return Infinity;
    return Math.max(1, this.tally.rate()) * DOWNLOAD_BATCH_SECONDS;
  }

  /** A batch is all copies or all zeroings; the regions holding the tables wait for their turn. */
  private turnOf(region: number): RegionTurn {
    const held = (h: { first: number; count: number }): boolean =>
      region >= h.first && region < h.first + h.count;
    if (!this.tablesTurn && this.heldBack.some(held)) return 'later';
    if (this.served?.busy(region)) return 'later';
    return this.isZeroRegion(region) ? 'zero' : 'copy';
  }

  /**
   * The partition tables go last: once every other region is committed, each
   * destination's end is written (zeros over stale signatures, a GPT's backup), then
   * the regions that hold the tables and the boot sector, flushed by the final commit.
   * A new job wiped the destinations' old tables before the first region
   * (Destinations.wipeOld), so a copy stopped before then leaves no table at all: a
   * half-written disk never looks like a finished one, nor like the disk it was.
   */
  private async hydrateTables(): Promise<void> {
    const held = this.heldBack.length > 0;
    if (!held && !this.destinations.anyPastCopy) return;
    if (held) await this.committer.commit();
    if (this.stopReason || this.committer.mode !== 'rw') return;
    await this.destinations.writePastCopy();
    if (!held || this.stopReason) return;
    this.tablesTurn = true;
    this.cursor = Math.min(...this.heldBack.map((h) => h.first));
    // A stream went past the tables long ago: they are read again from its start.
    const again = isStream(this.source) ? await this.source.reopen() : null;
    if (again) this.copier = new Copier(again, this.throttle, this.copierOptions);
    await this.hydrate().finally(() => again?.close());
  }

  /**
   * Regions from `first` on wholly in a hole of the source image: one batch, however
   * many, when nothing is read or written for them (a 64 GiB sparse image to an image is
   * a few batches). Where zeros must be written, batches stay their size: commits go on.
   */
  private holeRegions(first: number): number {
    if (this.targets.some((t) => t && !t.skipZeros)) return 0;
    const { regionSize, regionCount, size } = this.geometry;
    const data = this.source.nextData?.(first * regionSize) ?? null;
    if (data === null) return 0;
    if (data >= size) return regionCount - first;
    return Math.floor(data / regionSize) - first;
  }

  private isZeroRegion(region: number): boolean {
    return this.zeroRegions?.has(region) ?? false;
  }

  /** A batch through the job's own buffers and throttled copier, or a served write's `lane`. */
  private async hydrateBatch(first: number, n: number, lane?: Lane): Promise<void> {
    const { copier, buffer } = lane ?? { copier: this.copier, buffer: this.batches.takeBuffer() };
    this.batches.started(first, n);
    const range = regionRange(this.geometry, first, n);
    let result: CopyResult;
    try {
      result = this.isZeroRegion(first)
        ? await copier.zero(
            range,
            this.targets.map((t) => (t?.writesFree ? t : null)),
          )
        : await copier.copy(range, buffer, this.targets);
    } catch (e) {
      this.batches.ended(first);
      return this.stop(
        `copy of bytes ${range.offset}+${range.length} failed: ${(e as Error).message}`,
      );
    } finally {
      if (!lane) this.batches.returnBuffer(buffer);
    }
    this.batches.ended(first);
    this.tally.batchCopied(result, this.targets);
    if (result.end !== undefined) this.learnSize(result.end);
    // Past a stream's end there are no regions to mark.
    const real = Math.min(n, this.geometry.regionCount - first);
    const length = Math.min(range.length, this.geometry.size - range.offset);
    // What stops the job, and whether a resume can finish it: a source gone (not a bad
    // sector: nothing is recorded unreadable), damaged, or bigger than a drive.
    const trouble = await batchTrouble(this.source, result, this.targets, this.sizeKnown, this.id);
    if (trouble) return this.stop(trouble.message, trouble.device, trouble.at, trouble.final);
    result.writeErrors.forEach((e) => {
      const target = this.destinations.byPath(e.path);
      if (target) this.destinations.drop(target, e.message);
    });
    if (this.destinations.live().length === 0) return;
    if (result.unreadable.length > 0) {
      this.committer.foundUnreadable(result.unreadable);
      for (const r of result.unreadable) {
        this.emitEvent({
          type: 'error',
          job: this.id,
          device: this.source.path,
          offset: r.offset,
          length: r.length,
          message: `${this.source.path}: ${r.length} bytes at ${r.offset} are unreadable; written as zeros`,
          fatal: false,
        });
      }
    }
    // Stopped part-way: what was written is copied again on resume.
    if (real <= 0 || result.stopped) return;
    this.committer.written(first, real);
    this.served?.landedNow(first, real);
    this.tally.batchDone(real, length);
  }

  /** A destination left the job (Destinations.drop): recorded, said, and the job stops with the last. */
  private destinationLeft(target: JobTarget, reason: string): void {
    try {
      this.meta.failDestination(this.id, target.index, reason);
    } catch (e) {
      this.committer.metadataFailed(
        `recording that ${target.device.path} failed: ${(e as Error).message}`,
      );
    }
    this.recordError(target.device.path, `${reason}; this destination left the job`, false);
    if (this.destinations.live().length === 0) this.stop('every destination failed');
  }

  private recordError(device: string | null, message: string, fatal: boolean, at?: Range): void {
    try {
      this.meta.recordError(this.id, device, message);
    } catch {
      // The error still reaches the user below; the database may be what failed.
    }
    this.emitEvent({
      type: 'error',
      job: this.id,
      device: device ?? undefined,
      offset: at?.offset,
      length: at?.length,
      message,
      fatal,
    });
  }

  /** Stops hydrating, saying why once: the first reason is the one recorded. */
  private stop(message: string, device: string | null = null, at?: Range, final = false): void {
    if (!this.stopReason) {
      this.stopReason = { kind: 'failed', message, final };
      this.recordError(device, message, true, at);
    }
    this.halt();
  }

  /** Done only when every destination still in the job holds every region. */
  private finish(): CopyOutcome {
    const { mode } = this.committer;
    const complete =
      this.sizeKnown && this.map.count === this.geometry.regionCount && mode === 'rw';
    const lostDestination = this.destinations.failed.length > 0;
    let error = this.stopReason?.kind === 'failed' ? this.stopReason.message : null;
    if (lostDestination && !error) {
      error = this.destinations.failed
        .map((f) => `destination ${f.path} failed: ${f.reason}`)
        .join('; ');
    }
    const state = complete && !lostDestination ? 'done' : error !== null ? 'failed' : 'interrupted';
    const final = this.stopReason?.kind === 'failed' && this.stopReason.final;
    const totals = this.tally.totals();
    try {
      this.meta.setState(this.id, state, {
        error,
        mode,
        options: this.options,
        copySeconds: totals.seconds,
        ...(final ? { unresumable: error! } : {}),
      });
    } catch (e) {
      this.committer.setMode('fail', `recording the job's end failed: ${(e as Error).message}`);
    }
    return {
      state,
      complete,
      resumable: state !== 'done' && !final,
      error,
      ...totals,
      unreadable: this.committer.unreadable,
      failed: this.destinations.failed,
      databaseLost: this.committer.databaseLost,
      databaseDamaged: this.committer.databaseDamaged,
    };
  }
}
