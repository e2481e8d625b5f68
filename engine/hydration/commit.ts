// The commit side of the hydration job, dm-clone's commit_metadata: regions written to
// every destination wait here for the next commit, which flushes the destinations and
// then writes the bitmap delta in one transaction — so a region marked hydrated is
// always really on them. A failed commit makes the metadata read-only; fail is final.

import { type Range, mergeRanges } from '../geometry';
import type { Mode } from '../store/job-record';
import type { Metadata } from '../store/metadata';
import type { ModeEvent } from '../events';
import type { RegionMap } from '../store/region-map';

/** `count` adjacent regions from `first`. */
export interface Run {
  first: number;
  count: number;
}

/** What a commit needs from the job that owns it. */
export interface CommitOwner {
  /** Flushes every destination still in the job (one that fails leaves it); false when none is left. */
  flushDestinations(): Promise<boolean>;
  /** The status line recorded with the commit. */
  status(): string;
  /** Stops hydrating, saying why. */
  stop(message: string): void;
  modeChanged(event: ModeEvent): void;
  /** Regions newly hydrated and unreadable extents, after each commit. */
  committed(regions: Run[], unreadable: Range[]): void;
}

export class Committer {
  private current: Mode = 'rw';
  private chain: Promise<void> = Promise.resolve();
  /** Written to every destination, waiting for the next commit. */
  private copied: Run[] = [];
  /** Taken by the commit under way: written, being flushed. */
  private committing: Run[] = [];
  private pendingUnreadable: Range[] = [];
  private committedUnreadable: Range[];
  private lost = false;
  private damage: string | null = null;

  constructor(
    private readonly id: number,
    private readonly meta: Metadata,
    private readonly map: RegionMap,
    private readonly owner: CommitOwner,
  ) {
    this.committedUnreadable = meta.loadUnreadable(id);
  }

  get mode(): Mode {
    return this.current;
  }

  /** Every unreadable extent committed, joined. */
  get unreadable(): Range[] {
    return this.committedUnreadable;
  }

  /** The job database was deleted or replaced while the job ran. */
  get databaseLost(): boolean {
    return this.lost;
  }

  /** Why the job database was found damaged (truncated, overwritten) while the job ran, or null. */
  get databaseDamaged(): string | null {
    return this.damage;
  }

  /** Regions written to every destination: marked hydrated by the next commit. */
  written(first: number, count: number): void {
    this.copied.push({ first, count });
  }

  /** Extents the source could not read: recorded by the next commit. */
  foundUnreadable(extents: Range[]): void {
    this.pendingUnreadable.push(...extents);
  }

  /** Written and waiting for the commit, or being committed. */
  uncommitted(): Run[] {
    return [...this.copied, ...this.committing];
  }

  regionsWritten(): number {
    return count(this.copied) + count(this.committing);
  }

  /** Commits run one at a time: the timer and the final commit may overlap. */
  commit(): Promise<void> {
    this.chain = this.chain.then(() => this.commitOnce());
    return this.chain;
  }

  private async commitOnce(): Promise<void> {
    if (this.mode !== 'rw' || (this.copied.length === 0 && this.pendingUnreadable.length === 0)) {
      return;
    }
    // Only regions whose writes completed before the flush is issued may be marked.
    this.committing = this.copied.splice(0);
    const unreadable = this.pendingUnreadable.splice(0);
    const someLeft = await this.owner.flushDestinations();
    const regions = this.committing;
    this.committing = [];
    if (!someLeft) return;
    if (!this.lost && !this.meta.stillAtPath()) {
      // Commits still reach the open (deleted) file: the session writes it out again at the end.
      this.lost = true;
      this.owner.stop(`the job database ${this.meta.file} was deleted or replaced during the copy`);
    }
    for (const r of regions) this.map.setRange(r.first, r.count);
    this.committedUnreadable = mergeRanges([...this.committedUnreadable, ...unreadable]);
    const delta = {
      chunks: this.map.takeDirtyChunks(),
      regionsHydrated: this.map.count,
      unreadable,
      unreadableBytes: unreadable.reduce((n, r) => n + r.length, 0),
      statusLine: this.owner.status(),
    };
    try {
      this.meta.commit(this.id, delta);
    } catch (e) {
      // A write that fails on a damaged file is the damage; the map in memory is the truth.
      if (!this.damaged(delta)) {
        this.metadataFailed(`commit failed: ${(e as Error).message}`);
        return;
      }
    }
    this.damaged(delta);
    this.owner.committed(regions, unreadable);
  }

  /**
   * Whether the database file still holds what was just committed, read back as a
   * resume would read it. Once it doesn't, the job stops saying so, nothing more is
   * written to it, and the map in memory (flushed regions only) is the job's truth:
   * the session writes the job again from it.
   */
  private damaged(delta: Parameters<Metadata['damageOnDisk']>[1]): boolean {
    if (this.damage || this.lost) return this.damage !== null;
    const problem = this.meta.damageOnDisk(this.id, delta);
    if (problem === null) return false;
    this.damage = problem;
    this.owner.stop(
      `the job database ${this.meta.file} was damaged or replaced during the copy (${problem})`,
    );
    return true;
  }

  /** Like dm-clone: a failed commit makes the metadata read-only and reloads what is committed. */
  metadataFailed(reason: string): void {
    this.setMode('ro', reason);
    try {
      this.map.load([{ index: 0, bytes: this.meta.loadBitmap(this.meta.getJob(this.id)!).bits }]);
    } catch (e) {
      this.setMode('fail', `reloading the committed bitmap failed: ${(e as Error).message}`);
    }
    this.owner.stop(reason);
  }

  setMode(mode: Mode, reason: string): void {
    const next = this.current === 'fail' ? 'fail' : mode; // never leave fail
    if (next === this.current) return;
    this.current = next;
    this.owner.modeChanged({ type: 'mode', job: this.id, mode: next, reason });
  }
}

function count(runs: Run[]): number {
  return runs.reduce((n, r) => n + r.count, 0);
}
