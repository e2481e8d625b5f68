// A job's destinations as the copy goes: those still in it, and kcopyd's write_err — a
// destination that fails leaves the job with the bitmap it held, the others go on.
// Whatever is done to every destination at once (flush, wipe, the writes past the
// copy, the final length) goes through here, so a failure in any of them is a leaving.

import type { CopyOutcome, JobTarget } from './job-parts';
import { writePatches } from '../partitions/rewrite';
import { wipe } from '../partitions/wipe';

export class Destinations {
  /** One slot per destination, null once it left: shared with the copier and on-demand. */
  readonly slots: (JobTarget | null)[];
  readonly failed: CopyOutcome['failed'] = [];

  constructor(
    targets: ReadonlyArray<JobTarget | null>,
    private readonly hooks: {
      /** The bitmap as it is now: what a leaving destination holds. */
      held(): Uint8Array;
      /** A destination left: record it and say so. */
      left(target: JobTarget, reason: string): void;
    },
  ) {
    this.slots = [...targets];
  }

  live(): JobTarget[] {
    return this.slots.filter((t): t is JobTarget => t !== null);
  }

  byPath(path: string): JobTarget | undefined {
    return this.live().find((t) => t.device.path === path);
  }

  /** kcopyd's write_err: the failing destination leaves the job, the others go on. */
  drop(target: JobTarget, reason: string): void {
    const slot = this.slots.indexOf(target);
    if (slot < 0) return;
    this.slots[slot] = null;
    this.failed.push({
      index: target.index,
      path: target.device.path,
      reason,
      held: Uint8Array.from(this.hooks.held()),
    });
    void target.device.close().catch(() => undefined);
    this.hooks.left(target, reason);
  }

  /** A commit's first step: every destination still in the job is flushed; one that fails leaves it. */
  async flush(): Promise<boolean> {
    await this.each((t) => t.device.flush());
    return this.live().length > 0;
  }

  /** Invariant 9, wipe first: the old partition tables of a new job's destinations (partitions/wipe.ts). */
  wipeOld(): Promise<void> {
    return this.each((t) => (t.wipe?.length ? wipe(t.device, t.wipe) : undefined));
  }

  /** Whether any destination has writes past the copy: its end (zeros, a GPT's backup). */
  get anyPastCopy(): boolean {
    return this.live().some((t) => t.tables?.pastCopy.length);
  }

  writePastCopy(): Promise<void> {
    return this.each((t) =>
      t.tables?.pastCopy.length ? writePatches(t.device, t.tables.pastCopy) : undefined,
    );
  }

  /** Image files grown from a stream get the length its end gave. */
  setLength(size: number): Promise<void> {
    return this.each((t) => t.device.setLength?.(size));
  }

  /** `work` on every destination at once; one whose work fails leaves the job. */
  private async each(work: (t: JobTarget) => Promise<unknown> | undefined): Promise<void> {
    await Promise.all(
      this.live().map((t) => work(t)?.catch((e: Error) => this.drop(t, e.message))),
    );
  }
}
