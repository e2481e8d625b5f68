// A job session: the one owner of a job's life — checks, claim, set-up, hydration,
// commit, verify, close — and the one source of every event a front end shows. The
// CLI prints these events and the engine host forwards them; neither keeps a job's
// state of its own.
//
//   open:  plan (every check, nothing written) → confirm drives → claim destinations
//          and the job → set-up (first writes)
//   run:   [update: compare] → start → hydrate + commit → [verify] → done

import { EventEmitter } from 'node:events';
import { type Claim, claimDestinations, claimJob, claimedIdentities } from './claim';
import type { Geometry } from '../geometry';
import { type Device, isStream } from '../io/device';
import { ZstImage } from '../io/zst-image';
import { HydrationJob } from '../hydration/job';
import type { CopyOutcome } from '../hydration/job-parts';
import type { JobRecord } from '../store/job-record';
import type { Metadata } from '../store/metadata';
import { Refused, closeAll, openReadable } from '../io/open';
import type { JobOptions } from '../options';
import {
  type Confirm,
  type Intent,
  type Plan,
  type SessionRequest,
  confirmDrives,
  plan,
  sizeGuessNote,
} from './plan';
import { doneEvent } from './done-event';
import type {
  DoneEvent,
  EngineEvent,
  ErrorEvent,
  RegionMapEvent,
  StartEvent,
  VerifyEvent,
} from '../events';
import { saveLostDatabase, writeJobAgain } from './database-trouble';
import { RateMeter } from '../hydration/rate';
import { RegionEvents } from '../hydration/region-events';
import { releaseDrives } from './removal';
import { type ServeRequest, Serving, checkServing, writtenRanges } from './serving';
import { type SetUp, commitMap, setUp } from './setup';
import { type ThrottleSettings, throttleProblem } from '../options';
import { checkTables, rewrittenRanges, tableRegions } from '../partitions/check';
import { heldBack } from './plan-tables';
import { verify } from '../hydration/verify';
import { DownloadReport } from './download-report';

const PROGRESS_MS = 400;

export interface SessionOptions {
  /** How often progress is reported, ms (at most 500: the --json contract). */
  progressMs?: number;
  /** Eject drive destinations once the copy is done (and, if verified, equal). */
  eject?: boolean;
  /** Serve the destination over NBD while it hydrates (serving.ts). */
  serve?: ServeRequest;
}

/** Events: 'event' (EngineEvent), every one a front end shows, in order. */
export class JobSession extends EventEmitter {
  private stopped = false;
  private phase: 'comparing' | 'copying' | 'verifying' = 'copying';
  private job: HydrationJob;
  private readonly regions: RegionEvents;
  private delta: number | null = null;
  /** The job as recorded when the session began: written again if the database is found damaged. */
  private readonly recorded: JobRecord | null;
  /** The compare or verify under way: how far it is. */
  private checking: { bytesDone: number; size: number; meter: RateMeter } | null = null;
  /** The source is a URL: its download's events. */
  private readonly download: DownloadReport | null;
  private readonly serving: Serving | null;

  private constructor(
    private readonly meta: Metadata,
    private readonly plan: Plan,
    private readonly claim: Claim,
    readonly id: number,
    private readonly setup: SetUp,
    private readonly progressMs: number,
    private readonly eject: boolean,
    serve: ServeRequest | undefined,
  ) {
    super();
    this.serving = serve ? new Serving(id, serve, (e) => this.emitEvent(e)) : null;
    this.recorded = meta.getJob(id);
    this.job = this.hydrationJob(plan.source);
    this.download = DownloadReport.of(plan.source, id, (e) => this.emitEvent(e));
    const g = plan.geometry;
    this.regions = new RegionEvents(
      id,
      g.regionSize,
      Number.isFinite(g.regionCount) ? g.regionCount : 0,
      setup.map,
      meta.loadUnreadable(id),
    );
  }

  /** Every check, the user's confirmation, the claim and the set-up; Refused: nothing was written. */
  static async open(
    meta: Metadata,
    request: SessionRequest,
    confirm: Confirm,
    options: SessionOptions = {},
  ): Promise<JobSession> {
    const planned = await plan(meta, request);
    let claim: Claim | null = null;
    let id: number | null = null;
    try {
      if (options.serve) await checkServing(planned, options.serve);
      await confirmDrives(planned, confirm);
      claim = await claimDestinations(meta, planned);
      id = claimJob(meta, planned, claimedIdentities(planned, claim));
      const set = await setUp(meta, planned, claim, id);
      const { progressMs = PROGRESS_MS, eject = false } = options;
      return new JobSession(meta, planned, claim, id, set, progressMs, eject, options.serve);
    } catch (e) {
      if (id !== null) recordFailure(meta, id, e);
      if (id !== null) meta.releaseJob(id);
      await claim?.release(id === null);
      await closeAll([planned.source]);
      throw e;
    }
  }

  get intent(): Intent {
    return this.plan.intent;
  }

  get paused(): boolean {
    return this.job.isPaused;
  }

  /** The options in force, as the job holds them. */
  get options(): JobOptions {
    return this.job.options;
  }

  pause(): void {
    this.job.pause();
    this.tick();
  }

  resume(): void {
    this.job.resume();
    this.tick();
  }

  /** What is in flight finishes and is committed; the job stays resumable. */
  cancel(): void {
    this.stopped = true;
    this.serving?.stop();
    this.job.cancel();
    this.download?.giveUp();
  }

  setThrottle(change: Partial<ThrottleSettings>): void {
    const problem = throttleProblem(change);
    if (problem) throw new Refused(problem);
    this.job.setThrottle(change);
    this.tick();
  }

  /** The whole region map now. */
  regionMap(): RegionMapEvent {
    return this.regions.full(this.job.uncommittedRuns());
  }

  async run(): Promise<DoneEvent> {
    const began = performance.now();
    let copy: CopyOutcome | null = null;
    let checked: VerifyEvent | null = null;
    let failure: Error | null = null;
    let verifySeconds = 0;
    const ticker = setInterval(() => this.tick(), this.progressMs);
    try {
      if (this.plan.intent === 'update') await this.compare();
      if (!this.stopped) {
        this.emitEvent(this.startEvent());
        this.emitEvent(this.regionMap());
        this.job.on('event', (e: EngineEvent) => this.emitEvent(e));
        this.job.on('committed', (regions, unreadable) =>
          this.regions.committedNow(regions, unreadable),
        );
        await this.serving?.start(this.job.served!, this.plan.sourcePath);
        copy = this.plan.verifyOnly ? this.alreadyCopied() : await this.job.run();
        await this.serving?.end(copy.state === 'done');
        this.tick();
      }
      if (copy?.state === 'done' && this.options.verify && !this.stopped) {
        const t = performance.now();
        checked = await this.verify(copy);
        verifySeconds = (performance.now() - t) / 1000;
      }
    } catch (e) {
      failure = e as Error;
      this.emitEvent({ type: 'error', job: this.id, message: failure.message, fatal: true });
    } finally {
      clearInterval(ticker);
    }
    // Otherwise the copy (and the verify) recorded how the job ended.
    if (copy === null || failure) this.recordEnd(copy, failure);
    await this.close();
    const good = copy?.state === 'done' && !failure && (checked?.equal ?? true);
    const devices = this.setup.targets.map((t) => t.device);
    const removals = await releaseDrives(devices, this.eject && good);
    const done = doneEvent({
      job: this.id,
      intent: this.plan.intent,
      targets: this.setup.targets,
      removals,
      stopped: this.stopped,
      copy,
      checked,
      failure,
      seconds: (performance.now() - began) / 1000,
      verifySeconds,
      download: this.download?.summary().download,
    });
    if (copy?.databaseLost) this.emitEvent(saveLostDatabase(this.meta, this.id));
    else if (copy?.databaseDamaged) this.emitEvent(this.writeJobAgain(copy));
    this.emitEvent(done);
    return done;
  }

  /** The database file was found damaged: the job goes into a new one, from what this process holds. */
  private writeJobAgain(copy: CopyOutcome): ErrorEvent {
    const g = this.job.currentGeometry();
    const known = Number.isFinite(g.regionCount);
    return writeJobAgain(this.meta, {
      record: { ...this.recorded!, sourceIdentity: this.plan.sourceIdentity },
      sourceSize: known ? g.size : 0,
      regionsTotal: known ? g.regionCount : 0,
      state: copy.state,
      error: copy.error,
      options: this.options,
      map: this.setup.map,
      unreadable: copy.unreadable,
      failed: copy.failed,
      copySeconds: copy.seconds,
    });
  }

  /**
   * The job's state when the session ends early. Before an update compared, and when a
   * verify fails, the job is what it was: copied (and not verified).
   */
  private recordEnd(copy: CopyOutcome | null, failure: Error | null): void {
    const copied = copy
      ? copy.state === 'done'
      : this.plan.intent === 'update' || this.plan.verifyOnly;
    const error = failure?.message ?? null;
    try {
      if (copied) {
        this.meta.setState(this.id, 'done', { error: error && `verify: ${error}` });
      } else {
        this.meta.setState(this.id, failure ? 'failed' : 'interrupted', { error });
      }
    } catch {
      // the database may be what failed; the error reaches the user all the same
    }
  }

  private hydrationJob(source: Device): HydrationJob {
    return new HydrationJob({
      id: this.id,
      metadata: this.meta,
      geometry: this.plan.geometry,
      source,
      targets: this.setup.targets,
      map: this.setup.map,
      options: this.plan.options,
      zeroRegions: this.setup.zeroRegions,
      sizeEstimate: this.plan.sizeEstimate,
      // In order when writes must be (zoned drives, backups): the tables are then rewritten in place.
      heldBack: this.plan.options.sequential ? [] : heldBack(this.plan, isStream(source)),
      serve: this.serving !== null,
    });
  }

  private emitEvent(event: EngineEvent): void {
    this.emit('event', event);
  }

  private tick(): void {
    if (this.phase !== 'copying') {
      // Comparing or verifying: the progress stream goes on, with that phase's bytes.
      const c = this.checking;
      if (!c) return;
      this.emitEvent({
        ...this.job.progress(),
        phase: this.phase,
        bytesDone: c.bytesDone,
        bytesTotal: c.size,
        rate: c.meter.rate(),
        eta: c.meter.eta(c.size - c.bytesDone),
      });
      return;
    }
    this.emitEvent({ ...this.job.progress(), ...this.download?.progress() });
    const delta = this.regions.delta(this.job.uncommittedRuns());
    if (delta) this.emitEvent(delta);
  }

  private startEvent(): StartEvent {
    const now = this.job.progress();
    return {
      type: 'start',
      job: this.id,
      intent: this.plan.intent,
      resumed: this.plan.intent !== 'new',
      source: this.plan.sourcePath,
      destinations: this.setup.targets.map((t) => t.device.path),
      regionSize: this.plan.geometry.regionSize,
      regionsTotal: now.regionsTotal,
      regionsHydrated: now.regionsHydrated,
      bytesTotal: now.bytesTotal,
      sizeKnown: now.sizeKnown,
      ...(now.sizeKnown ? {} : { sizeNote: sizeGuessNote(this.plan, now.bytesTotal)! }),
      options: this.options,
      ...(this.delta !== null ? { delta: this.delta } : {}),
      ...(this.plan.usedSpace ? { usedSpace: this.plan.usedSpace } : {}),
      ...this.download?.progress(),
    };
  }

  /**
   * An update: every region of the source is compared with the destinations and only
   * those that differ are hydrated again. The compare reads a stream to its end, so
   * the copy reads it afresh.
   */
  private async compare(): Promise<void> {
    this.phase = 'comparing';
    const g = this.plan.geometry;
    const found = await verify(
      this.plan.source,
      this.setup.targets.map((t) => t.device),
      g,
      {
        skipRegion: (r) => this.plan.free?.has(r) ?? false,
        unreadable: this.meta.loadUnreadable(this.id),
        onProgress: this.verifyProgress(g.size),
        stopped: () => this.stopped,
        rewritten: rewrittenRanges(this.setup.targets),
      },
    );
    // Stopped before everything was compared: the destinations are as the last copy left them.
    if (!found.finished) return;
    // The tables are written again whatever the compare says: the source's may have changed.
    const tables = tableRegions(g, this.plan.partitions, this.setup.targets);
    const differing = new Set([...Object.values(found.mismatchedRegions).flat(), ...tables]);
    for (const r of differing) this.setup.map.clear(r);
    commitMap(this.meta, this.id, this.setup.map);
    // Every region a client had written differs, and is copied again: none is theirs now.
    this.meta.clearWritten(this.id);
    this.meta.setSourceIdentity(this.id, this.plan.sourceIdentity);
    this.delta = differing.size;
    this.meta.setState(this.id, 'running');
    if (isStream(this.plan.source)) {
      await this.plan.source.close();
      this.plan.source = await this.plan.source.reopen();
    }
    // Pause and throttle changes made while comparing hold for the copy.
    const { throttle, maxRate } = this.job.options;
    const paused = this.job.isPaused;
    this.job = this.hydrationJob(this.plan.source);
    this.job.setThrottle({ percent: throttle, maxRate });
    if (paused) this.job.pause();
    this.phase = 'copying';
  }

  /** Reports compare and verify progress, at most once a progress period (and at the end). */
  private verifyProgress(size: number): (bytesDone: number) => void {
    let last = 0;
    const meter = new RateMeter();
    this.checking = { bytesDone: 0, size, meter };
    return (bytesDone) => {
      meter.sample(bytesDone);
      this.checking = { bytesDone, size, meter };
      const t = performance.now();
      if (t - last < this.progressMs && bytesDone < size) return;
      last = t;
      this.emitEvent({
        type: 'verify-progress',
        job: this.id,
        phase: this.phase === 'comparing' ? 'comparing' : 'verifying',
        bytesDone,
        bytesTotal: size,
        rate: meter.rate(),
        eta: meter.eta(size - bytesDone),
      });
    };
  }

  /** A copied job that only verifies: nothing to hydrate. */
  private alreadyCopied(): CopyOutcome {
    return {
      state: 'done',
      complete: true,
      resumable: false,
      error: null,
      bytesRead: 0,
      bytesWritten: 0,
      regionsCopied: 0,
      unreadable: this.meta.loadUnreadable(this.id),
      failed: [],
      written: new Map(),
      seconds: 0,
      databaseLost: false,
      databaseDamaged: null,
    };
  }

  /** Compares every destination left with the source; a backup is read by decompressing it. */
  private async verify(copy: CopyOutcome): Promise<VerifyEvent | null> {
    this.phase = 'verifying';
    this.meta.setState(this.id, 'verifying');
    const g: Geometry = this.job.currentGeometry();
    const began = performance.now();
    const opened: Device[] = [];
    try {
      // A stream was read to its end: compare against a fresh one.
      const source = isStream(this.plan.source)
        ? await this.plan.source.reopen()
        : this.plan.source;
      if (source !== this.plan.source) opened.push(source);
      const live = this.setup.targets.filter((t) => !copy.failed.some((f) => f.index === t.index));
      const devices: Device[] = [];
      for (const t of live) {
        if (t.device instanceof ZstImage) {
          await t.device.close();
          const backup = await openReadable(t.device.path, 'destination');
          opened.push(backup);
          devices.push(backup);
        } else devices.push(t.device);
      }
      // Regions a client wrote through the served disk are theirs, not the source's.
      const written = this.meta.loadWritten(this.id, g.regionCount);
      const result = await verify(source, devices, g, {
        unreadable: copy.unreadable,
        onProgress: this.verifyProgress(g.size),
        skipRegion: (r) => (this.plan.free?.has(r) ?? false) || written.has(r),
        stopped: () => this.stopped,
        rewritten: rewrittenRanges(live),
      });
      if (!result.finished) {
        // Stopped: copied, and not verified.
        this.meta.setState(this.id, 'done');
        return null;
      }
      // The rewritten tables were left out of the compare: they are checked on their own.
      const tables = await checkTables(this.plan.partitions, live, this.options.newIds);
      const destinations = devices.map((d) => ({
        path: d.path,
        equal: result.mismatches[d.path].length === 0 && !tables[d.path],
        mismatches: result.mismatches[d.path],
        regions: result.mismatchedRegions[d.path],
        ...(tables[d.path] ? { tableProblem: tables[d.path]! } : {}),
      }));
      const equal = copy.failed.length === 0 && destinations.every((d) => d.equal);
      const seconds = (performance.now() - began) / 1000;
      this.meta.setVerified(this.id, equal, seconds);
      this.meta.setState(this.id, 'done');
      const event: VerifyEvent = {
        type: 'verify',
        job: this.id,
        equal,
        destinations,
        skipped: result.skipped,
        written: writtenRanges(written, g),
        seconds,
      };
      this.emitEvent(event);
      return event;
    } finally {
      await closeAll(opened);
    }
  }

  private async close(): Promise<void> {
    this.download?.close();
    await this.serving?.end(false);
    await closeAll([this.plan.source, ...this.setup.targets.map((t) => t.device)]);
    await this.claim.release();
    this.meta.releaseJob(this.id);
  }
}

function recordFailure(meta: Metadata, id: number, e: unknown): void {
  try {
    meta.setState(id, 'failed', { error: (e as Error).message });
  } catch {
    // the database may be what failed; the error reaches the user all the same
  }
}
