// The userspace dm-clone: hydrates every destination from the source, region by
// region, and commits the hydrated bitmap once a second — after flushing the
// destinations, so a region marked hydrated is always really on them.

import { EventEmitter } from 'node:events';
import { Copier, type CopyResult, type Target } from './copier';
import { type Geometry, type Range, mergeRanges, regionRange } from './geometry';
import { type Device, isStream } from './io/device';
import { alignedBuffer } from './io/buffers';
import type { JobOptions, Metadata, Mode } from './metadata';
import type { RegionMap } from './region-map';
import { Throttle, type ThrottleSettings } from './throttle';
import type { DoneEvent, EngineEvent, ProgressEvent } from './protocol';

const COMMIT_PERIOD_MS = 1000;
const RATE_WINDOW_MS = 3000;

type StopReason = { kind: 'cancelled' } | { kind: 'failed'; message: string };

export interface JobParts {
  id: number;
  metadata: Metadata;
  geometry: Geometry;
  source: Device;
  targets: Target[];
  map: RegionMap;
  options: JobOptions;
  /** Free regions (used-only clones) that are zeroed rather than copied. */
  zeroRegions?: RegionMap | null;
}

/** Job events: 'event' (EngineEvent) for errors and mode changes. */
export class HydrationJob extends EventEmitter {
  readonly id: number;
  private readonly meta: Metadata;
  private readonly geometry: Geometry;
  private readonly source: Device;
  private readonly targets: (Target | null)[];
  private readonly map: RegionMap;
  private readonly zeroRegions: RegionMap | null;
  private readonly options: JobOptions;
  private readonly throttle: Throttle;
  private readonly copier: Copier;

  private mode: Mode = 'rw';
  private cursor = 0;
  private hydrating = 0;
  private paused = false;
  private stopReason: StopReason | null = null;
  private wake: () => void = () => undefined;
  private freeBuffers: Buffer[] = [];
  private buffersLeft: number;
  private commitChain: Promise<void> = Promise.resolve();

  /** Copied and written, waiting for the next commit. */
  private copied: Array<{ first: number; count: number }> = [];
  private pendingUnreadable: Range[] = [];
  private unreadable: Range[] = [];
  private failedDestinations: string[] = [];

  private bytesDone: number;
  private bytesRead = 0;
  private bytesWritten = 0;
  private regionsCopied = 0;
  private startedAt = 0;
  private samples: Array<{ t: number; bytes: number }> = [];

  constructor(parts: JobParts) {
    super();
    this.id = parts.id;
    this.meta = parts.metadata;
    // Copied: a streamed source's size becomes known when its end is read.
    this.geometry = { ...parts.geometry };
    this.source = parts.source;
    this.targets = [...parts.targets];
    this.map = parts.map;
    this.zeroRegions = parts.zeroRegions ?? null;
    this.options = parts.options;
    this.throttle = new Throttle(
      { percent: parts.options.throttle, maxRate: parts.options.maxRate },
      undefined,
      undefined,
      Math.ceil(parts.options.threshold / parts.options.batch),
    );
    this.copier = new Copier(parts.source, this.throttle, {
      ignoreErrors: parts.options.ignoreErrors,
      sequential: parts.options.sequential,
      zeroUnit: parts.geometry.regionSize,
    });
    this.unreadable = this.meta.loadUnreadable(this.id);
    this.bytesDone = this.hydratedBytes();
    // Memory stays bounded: one buffer per batch that may be in flight.
    this.buffersLeft = Math.ceil(parts.options.threshold / parts.options.batch);
  }

  /** A batch buffer: a free one, or a new one while fewer than the bound exist. */
  private takeBuffer(): Buffer | null {
    const free = this.freeBuffers.pop();
    if (free) return free;
    if (this.buffersLeft === 0) return null;
    this.buffersLeft -= 1;
    return alignedBuffer(this.options.batch * this.geometry.regionSize);
  }

  async run(): Promise<DoneEvent> {
    this.startedAt = performance.now();
    const timer = setInterval(() => void this.commit(), COMMIT_PERIOD_MS);
    const sizeWasKnown = this.sizeKnown;
    try {
      await this.hydrate();
      // Images of a stream grew with the writes: zero regions at the end left them short.
      if (!sizeWasKnown && this.sizeKnown) await this.settleImageLengths();
    } finally {
      clearInterval(timer);
    }
    await this.commit();
    return this.finish();
  }

  get sizeKnown(): boolean {
    return Number.isFinite(this.geometry.regionCount);
  }

  /** The geometry as known now (a stream's size once its end was read). */
  currentGeometry(): Geometry {
    return { ...this.geometry };
  }

  private async settleImageLengths(): Promise<void> {
    await Promise.all(
      this.liveTargets().map((t) =>
        t.device
          .setLength?.(this.geometry.size)
          .catch((e: Error) => this.dropTarget(t.device.path, e.message)),
      ),
    );
  }

  /** A stream ended at `end`: no region past it exists. */
  private learnSize(end: number): void {
    if (this.sizeKnown && end >= this.geometry.size) return;
    this.geometry.size = end;
    this.geometry.regionCount = Math.ceil(end / this.geometry.regionSize);
    this.map.truncate(this.geometry.regionCount);
    this.meta.setSourceSize(this.id, end, this.geometry.regionCount);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.wake();
  }

  /** In-flight I/O finishes and is committed; the job stays resumable. */
  cancel(): void {
    this.stopReason ??= { kind: 'cancelled' };
    this.wake();
  }

  setThrottle(change: Partial<ThrottleSettings>): void {
    this.throttle.set(change);
    if (change.percent !== undefined) this.options.throttle = change.percent;
    if (change.maxRate !== undefined) this.options.maxRate = change.maxRate;
  }

  status(): string {
    return statusLine({
      regionSize: this.geometry.regionSize,
      hydrated: this.map.count,
      total: this.sizeKnown ? this.geometry.regionCount : null,
      hydrating: this.hydrating,
      paused: this.paused,
      sparse: this.targets.some((t) => t?.skipZeros),
      options: this.options,
      mode: this.mode,
    });
  }

  progress(): ProgressEvent {
    const t = performance.now();
    this.samples.push({ t, bytes: this.bytesDone });
    while (this.samples.length > 2 && t - this.samples[0].t > RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0];
    const span = (t - first.t) / 1000;
    const rate = span > 0 ? (this.bytesDone - first.bytes) / span : 0;
    const total = this.sizeKnown ? this.geometry.size : this.estimatedSize();
    const left = total - this.bytesDone;
    return {
      type: 'progress',
      job: this.id,
      bytesDone: this.bytesDone,
      bytesTotal: total,
      sizeKnown: this.sizeKnown,
      regionsHydrated: this.map.count,
      regionsTotal: Math.ceil(total / this.geometry.regionSize),
      hydrating: this.hydrating,
      rate: Math.round(rate),
      eta: left === 0 ? 0 : rate > 0 ? Math.round(left / rate) : null,
      paused: this.paused,
      status: this.status(),
    };
  }

  /** Until a stream ends: its uncompressed size, extrapolated from how far into the compressed file it is. */
  private estimatedSize(): number {
    if (!isStream(this.source) || this.source.compressedPosition === 0) return this.bytesDone;
    const ratio = this.source.compressedSize / this.source.compressedPosition;
    return Math.max(this.bytesDone, Math.round(this.bytesDone * ratio));
  }

  private emitEvent(event: EngineEvent): void {
    this.emit('event', event);
  }

  /** Keeps up to `threshold` regions in flight until every region is dispatched or we stop. */
  private async hydrate(): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    for (;;) {
      while (!this.stopReason && !this.paused && this.hasBuffer()) {
        const batch = this.nextBatch();
        if (!batch) break;
        const copy: Promise<void> = this.hydrateBatch(batch.first, batch.count).finally(() =>
          inFlight.delete(copy),
        );
        inFlight.add(copy);
      }
      const idle = this.stopReason || this.paused || this.cursor >= this.geometry.regionCount;
      if (inFlight.size === 0 && (this.stopReason || this.cursor >= this.geometry.regionCount))
        break;
      if (inFlight.size === 0 && !idle) continue;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        for (const p of inFlight) void p.then(resolve);
      });
    }
  }

  private hasBuffer(): boolean {
    return this.freeBuffers.length > 0 || this.buffersLeft > 0;
  }

  /** The next run of unhydrated regions after the cursor, no longer than a batch nor the threshold allows. */
  private nextBatch(): { first: number; count: number } | null {
    const first = this.map.nextClear(this.cursor);
    if (first < 0) {
      this.cursor = this.geometry.regionCount;
      return null;
    }
    const room = Math.min(this.options.batch, this.options.threshold - this.hydrating);
    if (room <= 0) return null;
    // A batch is all copies or all zeroings.
    const zero = this.isZeroRegion(first);
    let count = 1;
    while (
      count < room &&
      first + count < this.geometry.regionCount &&
      !this.map.has(first + count) &&
      this.isZeroRegion(first + count) === zero
    ) {
      count += 1;
    }
    this.cursor = first + count;
    return { first, count };
  }

  private isZeroRegion(region: number): boolean {
    return this.zeroRegions?.has(region) ?? false;
  }

  private async hydrateBatch(first: number, count: number): Promise<void> {
    const buffer = this.takeBuffer() as Buffer;
    this.hydrating += count;
    const range = regionRange(this.geometry, first, count);
    let result: CopyResult;
    try {
      result = this.isZeroRegion(first)
        ? await this.copier.zero(
            range,
            this.targets.map((t) => (t?.writesFree ? t : null)),
          )
        : await this.copier.copy(range, buffer, this.targets);
    } catch (e) {
      this.stop(`copy of bytes ${range.offset}+${range.length} failed: ${(e as Error).message}`);
      return;
    } finally {
      this.hydrating -= count;
      this.freeBuffers.push(buffer);
    }
    this.bytesRead += result.bytesRead;
    this.bytesWritten += result.bytesWritten;
    if (result.end !== undefined) this.learnSize(result.end);
    // Past a stream's end there are no regions to mark.
    const real = Math.min(count, this.geometry.regionCount - first);
    const length = Math.min(range.length, this.geometry.size - range.offset);
    if (result.readError) {
      this.recordError(this.source.path, result.readError.message, true, result.readError);
      this.stop(result.readError.message);
      return;
    }
    result.writeErrors.forEach((e) => this.dropTarget(e.path, e.message));
    if (this.liveTargets().length === 0) return;
    if (result.unreadable.length > 0) {
      this.pendingUnreadable.push(...result.unreadable);
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
    if (real <= 0) return;
    this.copied.push({ first, count: real });
    this.bytesDone += length;
    this.regionsCopied += real;
  }

  private liveTargets(): Target[] {
    return this.targets.filter((t): t is Target => t !== null);
  }

  /** kcopyd's write_err: the failing destination leaves the job, the others go on. */
  private dropTarget(path: string, reason: string): void {
    const index = this.targets.findIndex((t) => t?.device.path === path);
    if (index < 0) return;
    const target = this.targets[index] as Target;
    this.targets[index] = null;
    this.failedDestinations.push(path);
    void target.device.close().catch(() => undefined);
    this.meta.failDestination(this.id, index, reason);
    this.recordError(path, `${reason}; this destination was dropped`, false);
    if (this.liveTargets().length === 0) this.stop('every destination failed');
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

  private stop(message: string): void {
    this.stopReason ??= { kind: 'failed', message };
    this.wake();
  }

  /** Commits run one at a time: the timer and the final commit may overlap. */
  private commit(): Promise<void> {
    this.commitChain = this.commitChain.then(() => this.commitOnce());
    return this.commitChain;
  }

  private async commitOnce(): Promise<void> {
    if (this.mode !== 'rw' || (this.copied.length === 0 && this.pendingUnreadable.length === 0)) {
      return;
    }
    // Only regions whose writes completed before the flush is issued may be marked.
    const regions = this.copied.splice(0);
    const unreadable = this.pendingUnreadable.splice(0);
    const flushes = this.liveTargets().map((t) =>
      t.device.flush().catch((e: Error) => this.dropTarget(t.device.path, e.message)),
    );
    await Promise.all(flushes);
    if (this.liveTargets().length === 0) return;
    for (const r of regions) this.map.setRange(r.first, r.count);
    this.unreadable = mergeRanges([...this.unreadable, ...unreadable]);
    try {
      this.meta.commit(this.id, {
        chunks: this.map.takeDirtyChunks(),
        regionsHydrated: this.map.count,
        unreadable,
        unreadableBytes: unreadable.reduce((n, r) => n + r.length, 0),
        statusLine: this.status(),
      });
    } catch (e) {
      this.metadataFailed(`commit failed: ${(e as Error).message}`);
    }
  }

  /** Like dm-clone: a failed commit makes the metadata read-only and reloads what is committed. */
  private metadataFailed(reason: string): void {
    this.setMode('ro', reason);
    try {
      const committed = this.meta.loadBitmap(this.meta.getJob(this.id)!);
      this.map.load([{ index: 0, bytes: committed.bits }]);
    } catch (e) {
      this.setMode('fail', `reloading the committed bitmap failed: ${(e as Error).message}`);
    }
    this.stop(reason);
  }

  private setMode(mode: Mode, reason: string): void {
    const next = this.mode === 'fail' ? 'fail' : mode; // never leave fail
    if (next === this.mode) return;
    this.mode = next;
    this.emitEvent({ type: 'mode', job: this.id, mode: next, reason });
  }

  private finish(): DoneEvent {
    const complete =
      this.sizeKnown && this.map.count === this.geometry.regionCount && this.mode === 'rw';
    const state = complete ? 'done' : this.stopReason?.kind === 'failed' ? 'failed' : 'interrupted';
    const error = this.stopReason?.kind === 'failed' ? this.stopReason.message : null;
    try {
      this.meta.setState(this.id, state, { error, mode: this.mode, options: this.options });
    } catch (e) {
      this.setMode('fail', `recording the job's end failed: ${(e as Error).message}`);
    }
    return {
      type: 'done',
      job: this.id,
      state,
      bytesRead: this.bytesRead,
      bytesWritten: this.bytesWritten,
      regionsCopied: this.regionsCopied,
      unreadableBytes: this.unreadable.reduce((n, r) => n + r.length, 0),
      unreadable: this.unreadable,
      failedDestinations: this.failedDestinations,
      seconds: (performance.now() - this.startedAt) / 1000,
    };
  }

  private hydratedBytes(): number {
    const { regionCount, regionSize, size } = this.geometry;
    if (!this.sizeKnown) return this.map.count * regionSize;
    const last = regionCount - 1;
    const short = this.map.has(last) ? regionCount * regionSize - size : 0;
    return this.map.count * regionSize - short;
  }
}

/** dm-clone's status line: <region size> <hydrated>/<total> <hydrating> <features> <core args> <mode>. */
export function statusLine(s: {
  regionSize: number;
  hydrated: number;
  /** Null while a streamed source's size is unknown. */
  total: number | null;
  hydrating: number;
  paused: boolean;
  sparse: boolean;
  options: JobOptions;
  mode: Mode;
}): string {
  const o = s.options;
  const features = [
    s.paused && 'no_hydration',
    o.ignoreErrors && 'ignore_errors',
    o.sequential && 'sequential',
    s.sparse && 'sparse',
  ].filter((f): f is string => typeof f === 'string');
  const args = [
    ['hydration_threshold', o.threshold],
    ['hydration_batch_size', o.batch],
    ['throttle', o.throttle],
    ['max_rate', o.maxRate],
  ].flat();
  return [
    s.regionSize,
    `${s.hydrated}/${s.total ?? '?'}`,
    s.hydrating,
    features.length,
    ...features,
    args.length,
    ...args,
    s.mode,
  ].join(' ');
}
