// The drives as the backend sees them, kept current by 'drives-changed'.
//
// Two lists: every drive with its verdict as a source, and the same drives with their
// verdicts as targets — those depend on the chosen source and on what the user allows
// (mounted drives, the system drive), so they are asked for again when those change.
import type { Capabilities, DriveQuery } from '../../preload/api';
import type { DriveInfo, DriveRole, DrivesChanged } from '../../preload/events';
import { api, errorText } from '../lib/api';

class Drives {
  capabilities = $state.raw<Capabilities | null>(null);
  /** Every drive, with its source verdict. */
  list = $state.raw<DriveInfo[]>([]);
  /** Every drive, with its target verdict for `targetsQuery`. */
  targets = $state.raw<DriveInfo[]>([]);
  /** The question `targets` answers (it lags behind a new source for a moment). */
  targetsQuery = $state.raw<DriveQuery>({});
  loaded = $state(false);
  error = $state<string | null>(null);
  /** Called with each 'drives-changed' (paths removed or changed under the user's eyes). */
  onChange: ((change: DrivesChanged) => void) | null = null;

  private query: DriveQuery = {};
  private asked = 0;

  async start(): Promise<void> {
    api().on('drives-changed', (change) => {
      this.list = change.drives;
      this.onChange?.(change);
      void this.refreshTargets();
    });
    try {
      this.capabilities = await api().capabilities();
    } catch (e) {
      this.error = errorText(e);
    }
    await this.refresh();
  }

  async refresh(): Promise<void> {
    try {
      const [list] = await Promise.all([api().listDrives(), this.refreshTargets()]);
      this.list = list;
      this.error = null;
    } catch (e) {
      this.error = errorText(e);
    } finally {
      this.loaded = true;
    }
  }

  /** Target verdicts for a new source or new allowances. */
  async setQuery(query: DriveQuery): Promise<void> {
    this.query = query;
    await this.refreshTargets();
  }

  async refreshTargets(): Promise<void> {
    const ask = ++this.asked;
    try {
      const targets = await api().listDrives(this.query);
      // An older answer must not overwrite a newer question's.
      if (ask === this.asked) {
        this.targets = targets;
        this.targetsQuery = this.query;
      }
    } catch (e) {
      if (ask === this.asked) this.error = errorText(e);
    }
  }

  /**
   * What a list offers: every drive, and the image files picked for this list (an image
   * picked as a target is not offered as a source, nor the other way round).
   */
  forRole(list: DriveInfo[], role: DriveRole): DriveInfo[] {
    return list.filter((d) => d.kind === 'block' || d.pickedAs.includes(role));
  }

  /** Takes a picked image off one list. */
  async forget(path: string, role: DriveRole): Promise<void> {
    try {
      await api().forgetImage(path, role);
    } catch (e) {
      this.error = errorText(e);
    }
    await this.refresh();
  }

  byPath(path: string | null): DriveInfo | undefined {
    return path === null ? undefined : this.list.find((d) => d.path === path);
  }

  targetByPath(path: string): DriveInfo | undefined {
    return this.targets.find((d) => d.path === path);
  }

  /** A short name for a path: the drive's name when listed, else the path. */
  label(path: string): string {
    const d = this.byPath(path) ?? this.targetByPath(path);
    return d && d.name !== path ? `${d.name} (${path})` : path;
  }
}

export const drives = new Drives();
