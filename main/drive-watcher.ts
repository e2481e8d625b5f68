// Polls the drive list and says what changed: drives plugged in, pulled out, or
// changed (mounted, resized, made read-only). One poll at a time; a failed poll is
// reported once and polling goes on.

import { EventEmitter } from 'node:events';
import type { Drive } from '../engine/drives/classify';

export interface DrivesDiff {
  drives: Drive[];
  added: string[];
  removed: string[];
  changed: string[];
}

const POLL_MS = 2000;

/** What differs between two lists, by path. */
export function diffDrives(before: Drive[], after: Drive[]): Omit<DrivesDiff, 'drives'> {
  const old = new Map(before.map((d) => [d.path, d]));
  const now = new Map(after.map((d) => [d.path, d]));
  const added = [...now.keys()].filter((p) => !old.has(p));
  const removed = [...old.keys()].filter((p) => !now.has(p));
  const changed = [...now.keys()].filter(
    (p) => old.has(p) && JSON.stringify(old.get(p)) !== JSON.stringify(now.get(p)),
  );
  return { added, removed, changed };
}

/** Events: 'change' (DrivesDiff), 'error' (Error, once until a poll succeeds again). */
export class DriveWatcher extends EventEmitter {
  private drives: Drive[] | null = null;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<Drive[]> | null = null;
  private failing = false;
  private running = false;

  constructor(
    private readonly list: () => Promise<Drive[]>,
    private readonly intervalMs = POLL_MS,
  ) {
    super();
  }

  /** The last list seen, or null before the first poll. */
  get current(): Drive[] | null {
    return this.drives;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.poll().finally(() => this.schedule());
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Polls now (or joins the poll under way) and returns the fresh list. */
  poll(): Promise<Drive[]> {
    this.polling ??= this.pollOnce().finally(() => (this.polling = null));
    return this.polling;
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => void this.poll().finally(() => this.schedule()), this.intervalMs);
    this.timer.unref?.();
  }

  private async pollOnce(): Promise<Drive[]> {
    let drives: Drive[];
    try {
      drives = await this.list();
    } catch (e) {
      if (!this.failing && this.listenerCount('error') > 0) this.emit('error', e);
      this.failing = true;
      return this.drives ?? [];
    }
    this.failing = false;
    const before = this.drives;
    this.drives = drives;
    if (before === null) {
      this.emit('change', { drives, added: drives.map((d) => d.path), removed: [], changed: [] });
      return drives;
    }
    const diff = diffDrives(before, drives);
    if (diff.added.length || diff.removed.length || diff.changed.length) {
      this.emit('change', { drives, ...diff });
    }
    return drives;
  }
}
