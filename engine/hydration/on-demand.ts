// dm-clone's clone_map and hydrate_bio_region: the destination as it will be, read and
// written while the job hydrates it (engine/serve puts it on NBD). A read of a hydrated
// region comes from the first destination, of an unhydrated one from the source — and
// that region is queued ahead of the background hydration. A write covering a region
// whole lands on every destination and marks it hydrated without copying; a partial
// one first hydrates its region, out of the throttle, then writes: a region is never
// half old, half new. A flush flushes the destinations, then commits.
//
// Regions are locked against the copier: a background batch holds its regions while in
// flight and a client's write waits for it (a stale copy never lands over a client's
// write); the copier never takes a region a client holds or already wrote. The regions
// a client writes are recorded in the job database before the write reaches a
// destination, so a verify knows them whatever was killed when.

import type { Committer } from './commit';
import { Copier, type CopyOptions } from './copier';
import { type Geometry, regionRange } from '../geometry';
import type { Device } from '../io/device';
import { MAX_IO_BYTES, borrowBuffer, giveBack, zeroedBuffer } from '../io/buffers';
import { readInto, writeFrom } from '../io/unaligned';
import type { JobParts, JobTarget } from './job-parts';
import type { JobProgress } from './job-progress';
import type { Metadata } from '../store/metadata';
import { RegionMap } from '../store/region-map';
import { Throttle } from './throttle';

/** Where a batch is copied through: the served side's own copier (out of the throttle) and a buffer of its own. */
export interface Lane {
  copier: Copier;
  buffer: Buffer;
}

/** What the served side needs of the job that owns it (job.ts). */
export interface DemandSide {
  committer: Committer;
  tally: JobProgress;
  copierOptions: CopyOptions;
  /** Hydrates `count` regions from `first` now, through `lane`: the job's own batch path. */
  hydrate(first: number, count: number, lane: Lane): Promise<void>;
  dropTarget(target: JobTarget, reason: string): void;
  /** Flushes every destination still in the job; false when none is left. */
  flush(): Promise<boolean>;
  /** The job stopped: nothing more is hydrated. */
  stopped(): boolean;
}

interface Lock {
  released: Promise<void>;
  release(): void;
}

/** Partial writes hydrating at once, each through a buffer of its own: the memory bound. */
const LANES = 2;
/** Regions read while unhydrated waiting their turn; past this the background finds them anyway. */
const QUEUE_MOST = 4096;
/** Regions a discard locks and records at once. */
const DISCARD_REGIONS = 4096;

export class OnDemand {
  readonly size: number;
  private readonly geometry: Geometry;
  private readonly meta: Metadata;
  private readonly job: number;
  private readonly map: RegionMap;
  private readonly source: Device;
  private readonly zeroRegions: RegionMap | null;
  /** Each locked region's last holder or waiter: who takes it next waits for that one. */
  private readonly locks = new Map<number, Lock>();
  /** The background batches in flight, by first region. */
  private readonly claims = new Map<number, Lock>();
  /** On every destination, committed or waiting for the commit. */
  private readonly landed: RegionMap;
  /** Written by a client (recorded before the write reached a destination). */
  private readonly written: RegionMap;
  private readonly queue = new Set<number>();
  private readonly copier: Copier;
  private readonly buffers: Buffer[] = [];
  private lanesLeft = LANES;
  private laneWaiters: Array<() => void> = [];
  /** Client writes and discards under way (each holds its regions). */
  private readonly changing = new Set<Promise<void>>();
  private zeros: Buffer | null = null;

  constructor(
    parts: JobParts,
    /** The job's own list: a destination that left it is null there. */
    private readonly targets: ReadonlyArray<JobTarget | null>,
    private readonly side: DemandSide,
  ) {
    this.geometry = parts.geometry;
    this.size = parts.geometry.size;
    this.meta = parts.metadata;
    this.job = parts.id;
    this.map = parts.map;
    this.source = parts.source;
    this.zeroRegions = parts.zeroRegions ?? null;
    this.landed = new RegionMap(parts.geometry.regionCount);
    this.written = parts.metadata.loadWritten(parts.id, parts.geometry.regionCount);
    const unthrottled = new Throttle({ percent: 100, maxRate: 0 });
    this.copier = new Copier(parts.source, unthrottled, side.copierOptions);
  }

  // --- the job's side: the copier's locks, and what to hydrate next

  /** The copier may not take this region: a client holds it, or it is on the destinations already. */
  busy(region: number): boolean {
    return this.locks.has(region) || this.landed.has(region);
  }

  /** A background batch takes its regions (none of them busy) while it is in flight. */
  claim(first: number, count: number): void {
    const lock = newLock();
    for (let r = first; r < first + count; r++) this.locks.set(r, lock);
    this.claims.set(first, lock);
  }

  release(first: number, count: number): void {
    const lock = this.claims.get(first);
    this.claims.delete(first);
    if (lock) this.unlock(first, first + count - 1, lock);
  }

  /** Regions written to every destination (by either path): reads come from there now. */
  landedNow(first: number, count: number): void {
    for (let r = first; r < first + count; r++) this.landed.set(r);
  }

  /** A region a client read while unhydrated, to hydrate next; null when none waits. */
  demanded(): number | null {
    for (const r of this.queue) {
      this.queue.delete(r);
      if (!this.present(r) && !this.locks.has(r)) return r;
    }
    return null;
  }

  /**
   * Waits for the clients' writes under way (the job commits what they hydrated before
   * it ends). True when a region one of them held is still to hydrate: the copier went
   * by while it was held, and it waits in the queue.
   */
  async settle(): Promise<boolean> {
    while (this.changing.size > 0) await Promise.allSettled([...this.changing]);
    giveBack(this.buffers.splice(0));
    this.lanesLeft = LANES;
    return [...this.queue].some((r) => !this.present(r));
  }

  // --- the client's side: the disk as it will be

  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    const reads: Array<Promise<void>> = [];
    for (let at = offset; at < offset + length;) {
      // A run of regions read from the same place: one read.
      const from = this.origin(this.regionOf(at));
      let end = at;
      do end = Math.min(offset + length, this.regionEnd(end));
      while (end < offset + length && this.origin(this.regionOf(end)) === from);
      const part = out.subarray(at - offset, end - offset);
      if (from === 'zeros') part.fill(0);
      else reads.push(readInto(from === 'source' ? this.source : this.servedTarget(), part, at));
      if (from === 'source') this.queueAhead(this.regionOf(at), this.regionOf(end - 1));
      at = end;
    }
    await Promise.all(reads);
    return out;
  }

  write(data: Buffer, offset: number): Promise<void> {
    return this.track(this.change(offset, data.length, data));
  }

  /** Zeros written like any data, a bounded piece at a time. */
  zero(offset: number, length: number): Promise<void> {
    return this.track(this.zeroNow(offset, length));
  }

  private async zeroNow(offset: number, length: number): Promise<void> {
    for (let done = 0; done < length; done += MAX_IO_BYTES) {
      const n = Math.min(MAX_IO_BYTES, length - done);
      this.zeros ??= zeroedBuffer(Math.min(MAX_IO_BYTES, this.size));
      await this.change(offset + done, n, this.zeros.subarray(0, n));
    }
  }

  /**
   * dm-clone's discard: an unhydrated region the range covers whole is marked hydrated
   * without copying (its bytes are the client's to forget); anything else is left alone.
   */
  discard(offset: number, length: number): Promise<void> {
    return this.track(this.discardNow(offset, length));
  }

  private async discardNow(offset: number, length: number): Promise<void> {
    const { regionSize, regionCount } = this.geometry;
    const first = Math.ceil(offset / regionSize);
    const end =
      offset + length === this.size ? regionCount : Math.floor((offset + length) / regionSize);
    // A piece at a time, one lock and one record each: a whole disk discarded (mkfs does
    // it) is quick, and holds no more than a piece's regions at once.
    for (let from = first; from < end; from += DISCARD_REGIONS) {
      const to = Math.min(end, from + DISCARD_REGIONS);
      const unlock = await this.lock(from, to - 1);
      const forgotten = range(from, to).filter((r) => !this.present(r));
      try {
        this.recordWritten(forgotten);
        for (const r of forgotten) this.hydratedByClient(r);
      } finally {
        for (const r of forgotten) if (!this.present(r)) this.queue.add(r);
        unlock();
      }
    }
  }

  /** Flush, then commit: every write answered before is durable, and its regions recorded. */
  async flush(): Promise<void> {
    if (!(await this.side.flush())) throw ioError('every destination of the copy failed');
    await this.side.committer.commit();
    if (this.side.committer.mode !== 'rw') {
      throw ioError(
        `the copy can't record its progress (its metadata is ${this.side.committer.mode})`,
      );
    }
  }

  // --- inside

  private regionOf(offset: number): number {
    return Math.floor(offset / this.geometry.regionSize);
  }

  private regionEnd(offset: number): number {
    return Math.min(this.size, (this.regionOf(offset) + 1) * this.geometry.regionSize);
  }

  private present(region: number): boolean {
    return this.map.has(region) || this.landed.has(region);
  }

  /** Where a region's bytes are read from now. */
  private origin(region: number): 'target' | 'source' | 'zeros' {
    if (this.present(region)) return 'target';
    // Free space a used-only clone zeroes: zeros is what it will hold.
    return this.zeroRegions?.has(region) ? 'zeros' : 'source';
  }

  /** The destination served: the first one still in the job. */
  private servedTarget(): Device {
    const target = this.targets.find((t) => t !== null);
    if (!target) throw ioError('every destination of the copy failed');
    return target.device;
  }

  private track(op: Promise<void>): Promise<void> {
    this.changing.add(op);
    return op.finally(() => this.changing.delete(op));
  }

  private queueAhead(first: number, last: number): void {
    for (let r = first; r <= last && this.queue.size < QUEUE_MOST; r++) this.queue.add(r);
  }

  /**
   * Writes `data` at `offset` on every destination, region by region as dm-clone does:
   * the regions it covers only in part are hydrated first (those in the middle are
   * covered whole), and those it covers whole are hydrated by the write itself.
   */
  private async change(offset: number, length: number, data: Buffer): Promise<void> {
    if (length === 0) return;
    const first = this.regionOf(offset);
    const last = this.regionOf(offset + length - 1);
    const unlock = await this.lock(first, last);
    try {
      this.recordWritten(range(first, last + 1));
      const partial = [first, last].filter((r) => !this.covers(r, offset, length));
      await Promise.all([...new Set(partial)].map((r) => this.hydrateNow(r)));
      await this.writeTargets(data, offset);
      for (let r = first; r <= last; r++) if (!this.present(r)) this.hydratedByClient(r);
    } finally {
      // A region the copier went by while it was held, and that failed here: its turn again.
      for (let r = first; r <= last; r++) if (!this.present(r)) this.queue.add(r);
      unlock();
    }
  }

  private covers(region: number, offset: number, length: number): boolean {
    const r = regionRange(this.geometry, region);
    return offset <= r.offset && r.offset + r.length <= offset + length;
  }

  /** A region written whole (or discarded) by a client: hydrated, and counted, without a copy. */
  private hydratedByClient(region: number): void {
    this.landed.set(region);
    this.side.committer.written(region, 1);
    this.side.tally.batchDone(1, regionRange(this.geometry, region).length);
  }

  /** Recorded before a byte of it reaches a destination: killed at any moment, a verify knows. */
  private recordWritten(regions: number[]): void {
    const added = regions.filter((r) => !this.written.has(r));
    if (added.length === 0) return;
    for (const r of added) this.written.set(r);
    try {
      this.meta.markWritten(this.job, this.written.takeDirtyChunks());
    } catch (e) {
      // Not recorded: not known as written either, so the next write records them again.
      for (const r of added) this.written.clear(r);
      throw ioError(`recording the regions written failed: ${(e as Error).message}`);
    }
  }

  /** Copies an unhydrated region now, out of the throttle (the client is waiting). */
  private async hydrateNow(region: number): Promise<void> {
    if (this.present(region)) return;
    if (this.side.stopped()) {
      throw Object.assign(new Error('the copy stopped: its disk is no longer served'), {
        code: 'ESHUTDOWN',
      });
    }
    const buffer = await this.takeBuffer();
    await this.side
      .hydrate(region, 1, { copier: this.copier, buffer })
      .finally(() => this.giveBuffer(buffer));
    if (!this.present(region)) {
      throw ioError(`region ${region} could not be copied from the source before the write`);
    }
  }

  private async writeTargets(data: Buffer, offset: number): Promise<void> {
    const live = this.targets.filter((t): t is JobTarget => t !== null);
    await Promise.all(
      live.map((t) =>
        writeFrom(t.device, data, offset).catch((e: Error) => this.side.dropTarget(t, e.message)),
      ),
    );
    if (!this.targets.some((t) => t !== null)) {
      throw ioError('every destination of the copy failed');
    }
  }

  /**
   * Locks regions `first` to `last`. Every one is queued for at once, so the copier takes
   * none of them from now on, and two writers sharing regions queue in the same order
   * everywhere (neither waits on the other); then it waits for those ahead.
   */
  private async lock(first: number, last: number): Promise<() => void> {
    const mine = newLock();
    const ahead = new Set<Promise<void>>();
    for (let r = first; r <= last; r++) {
      const before = this.locks.get(r);
      if (before) ahead.add(before.released);
      this.locks.set(r, mine);
    }
    await Promise.all(ahead);
    return () => this.unlock(first, last, mine);
  }

  private unlock(first: number, last: number, lock: Lock): void {
    // A region someone queued for since stays locked: by them.
    for (let r = first; r <= last; r++) if (this.locks.get(r) === lock) this.locks.delete(r);
    lock.release();
  }

  private async takeBuffer(): Promise<Buffer> {
    for (;;) {
      const free = this.buffers.pop();
      if (free) return free;
      if (this.lanesLeft > 0) {
        this.lanesLeft -= 1;
        return borrowBuffer(Math.min(this.geometry.regionSize, MAX_IO_BYTES));
      }
      await new Promise<void>((resolve) => this.laneWaiters.push(resolve));
    }
  }

  private giveBuffer(buffer: Buffer): void {
    this.buffers.push(buffer);
    this.laneWaiters.shift()?.();
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function newLock(): Lock {
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  return { released, release };
}

function ioError(message: string): Error {
  return Object.assign(new Error(message), { code: 'EIO' });
}
