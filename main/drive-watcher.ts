// Polls the drive list and says what changed: drives plugged in, pulled out, or
// changed (mounted, resized, made read-only). One poll at a time; a failed poll is
// reported once and polling goes on. The list is read without blocking (engine/drives/
// list.ts DriveLister: nothing waits on diskutil or PowerShell in this process); a
// device-change signal from the system (main/device-signals.ts, or Windows'
// WM_DEVICECHANGE on the window) makes the next poll come at once and read the system's
// picture again.

import { EventEmitter } from 'node:events';
import type { Drive } from '../engine/drives/classify';
import { DriveLister } from '../engine/drives/list';
import type { SystemSnapshot } from '../engine/drives/topology';
import { watchDeviceChanges } from './device-signals';

export interface DrivesDiff {
  drives: Drive[];
  added: string[];
  removed: string[];
  changed: string[];
}

const POLL_MS = 2000;
/** Signals come in bursts (a stick: a disk, then each partition, then the mounts). */
const SIGNAL_SETTLE_MS = 300;

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
  /** The system said a drive changed since the last poll began. */
  private signalled = false;
  private settling: NodeJS.Timeout | null = null;

  private unwatch: (() => void) | null = null;

  /**
   * `list(changed)`: the drives now; `changed` when the system signalled a change.
   * `signals`: subscribes to the system's device-change signals while started.
   */
  constructor(
    private readonly list: (changed: boolean) => Promise<Drive[]>,
    private readonly intervalMs = POLL_MS,
    private readonly signals?: (onChange: () => void) => () => void,
  ) {
    super();
  }

  /** The system says a drive changed: poll (reading its picture again) once the burst settles. */
  signal(): void {
    this.signalled = true;
    if (this.settling || !this.running) return;
    this.settling = setTimeout(() => {
      this.settling = null;
      void this.poll();
    }, SIGNAL_SETTLE_MS);
    this.settling.unref?.();
  }

  /** The last list seen, or null before the first poll. */
  get current(): Drive[] | null {
    return this.drives;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.unwatch = this.signals?.(() => this.signal()) ?? null;
    void this.poll().finally(() => this.schedule());
  }

  stop(): void {
    this.running = false;
    this.unwatch?.();
    this.unwatch = null;
    if (this.timer) clearTimeout(this.timer);
    if (this.settling) clearTimeout(this.settling);
    this.timer = null;
    this.settling = null;
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
    const changed = this.signalled;
    this.signalled = false;
    try {
      drives = await this.list(changed);
    } catch (e) {
      this.signalled ||= changed;
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

/**
 * The app's watcher over this system's drives and the picture its last list came from
 * (for the safety checks the handlers make: never read again while the user waits).
 */
export function watchSystemDrives(): {
  watcher: DriveWatcher;
  snapshot: () => SystemSnapshot | null;
} {
  const lister = new DriveLister();
  const watcher = new DriveWatcher((changed) => lister.list(changed), POLL_MS, watchDeviceChanges);
  return { watcher, snapshot: () => lister.snapshot };
}
