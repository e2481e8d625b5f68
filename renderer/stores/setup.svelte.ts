// What the user chose before a copy: the source, the targets, the options. Nothing
// is preselected; a chosen target that disappears, changes or becomes refused is
// unchosen (a different drive may turn up at the same path).
//
// Once a copy starts, the choices that were about that copy go: the source, the
// targets, and the risky allowances (writing mounted drives or the system drive,
// ignoring read errors) — the next copy must ask for them again. How copies run
// (region size, verify, sparse, sequential writes, disk time, speed limit) is a
// preference that stays: none of it can lose data or hide an error.
import type { CloneOptions, CloneRequest, CloneTarget } from '../../preload/api';
import type { DriveInfo, UsedSpaceInfo } from '../../preload/events';
import { api, errorText } from '../lib/api';
import { drives } from './drives.svelte';

const MIB = 1024 * 1024;

export interface SetupOptions {
  /** Bytes; 0: the engine's default (1 MiB). */
  regionSize: number;
  verify: boolean;
  sparse: 'auto' | 'yes' | 'no';
  ignoreErrors: boolean;
  /** Copy only the blocks the source's file systems use (ext2/3/4, FAT, NTFS, exFAT; per partition). */
  usedOnly: boolean;
  sequential: boolean;
  /** Percent of time for I/O, 1–100. */
  throttle: number;
  /** MiB/s as typed; 0 or empty: no cap. */
  maxRateMiB: number;
  /** "Use it now" (Linux): the first target served as a disk while it copies. This copy only. */
  useNow: boolean;
}

export const DEFAULT_OPTIONS: SetupOptions = {
  regionSize: 0,
  verify: true,
  sparse: 'auto',
  ignoreErrors: false,
  usedOnly: false,
  sequential: false,
  throttle: 100,
  maxRateMiB: 0,
  useNow: false,
};

class Setup {
  source = $state<string | null>(null);
  /** Chosen target paths, in the order chosen. */
  targets = $state<string[]>([]);
  /** Show mounted drives / the system drive as choosable (with confirmation). */
  allowMounted = $state(false);
  allowSystem = $state(false);
  options = $state<SetupOptions>({ ...DEFAULT_OPTIONS });
  notice = $state<string | null>(null);
  /**
   * What a copy of only the used space of the source reads, as the engine found it
   * (`error`: why it can't be done for this source); null until asked for this source
   * and region size.
   */
  usedSpace = $state.raw<{
    key: string;
    info: UsedSpaceInfo | null;
    error: string | null;
  } | null>(null);
  /** A download's SHA-256, as typed beside its URL. */
  sha256 = $state<{ url: string; hex: string } | null>(null);

  sourceDrive = $derived(drives.byPath(this.source) ?? null);
  /** The target verdicts on screen are for this source and these allowances. */
  verdictsCurrent = $derived(
    drives.targetsQuery.source === (this.source ?? undefined) &&
      Boolean(drives.targetsQuery.allowMounted) === this.allowMounted &&
      Boolean(drives.targetsQuery.allowSystem) === this.allowSystem,
  );
  targetDrives: DriveInfo[] = $derived(
    this.targets
      .map((p) => drives.targetByPath(p))
      .filter((d): d is DriveInfo => d !== undefined && d.verdicts.target.level !== 'refused'),
  );
  ready = $derived(
    this.sourceDrive !== null && this.verdictsCurrent && this.targetDrives.length > 0,
  );
  /**
   * Drives smaller than the source: only choosable when its partitions fit (their verdict
   * says so), and then the copy is fitted — partitions only, each with a partition table
   * for its own size. Image files are made as big as the copy needs.
   */
  fittedTargets: DriveInfo[] = $derived(
    this.targetDrives.filter((d) => d.kind === 'block' && d.size < (this.sourceDrive?.size ?? 0)),
  );

  constructor() {
    drives.onChange = (change) => {
      const gone = new Set([...change.removed, ...change.changed]);
      if (this.source && gone.has(this.source)) {
        this.notice = `The source ${this.source} was disconnected or changed: choose it again.`;
        this.source = null;
        this.targets = [];
        this.usedSpace = null;
      }
      const dropped = this.targets.filter((p) => gone.has(p));
      if (dropped.length > 0) {
        this.notice = `${dropped.join(', ')} was disconnected or changed: choose it again if you still mean it.`;
        this.targets = this.targets.filter((p) => !gone.has(p));
      }
    };
  }

  async chooseSource(path: string | null): Promise<void> {
    this.source = path;
    this.notice = null;
    this.usedSpace = null;
    await this.requery();
  }

  /** Asks the engine what a used-only copy of the source reads, once per source and region size. */
  async checkUsedSpace(): Promise<void> {
    const source = this.source;
    const regionSize = this.options.regionSize;
    const key = `${source}\n${regionSize}`;
    if (!source || this.usedSpace?.key === key) return;
    this.usedSpace = { key, info: null, error: null };
    let found: { info: UsedSpaceInfo | null; error: string | null };
    try {
      found = { info: await api().usedSpace(source, regionSize || undefined), error: null };
    } catch (e) {
      found = { info: null, error: errorText(e) };
    }
    if (this.usedSpace?.key !== key) return; // asked again meanwhile
    this.usedSpace = { key, ...found };
    if (found.error) this.options.usedOnly = false;
  }

  /** The SHA-256 typed with a download's URL (null: none typed). */
  expectSha256(url: string, hex: string | null): void {
    this.sha256 = hex === null ? null : { url, hex };
  }

  async setAllowances(allow: { mounted?: boolean; system?: boolean }): Promise<void> {
    if (allow.mounted !== undefined) this.allowMounted = allow.mounted;
    if (allow.system !== undefined) this.allowSystem = allow.system;
    await this.requery();
  }

  toggleTarget(path: string, on: boolean): void {
    const without = this.targets.filter((p) => p !== path);
    this.targets = on ? [...without, path] : without;
  }

  isTarget(path: string): boolean {
    return this.targetDrives.some((d) => d.path === path);
  }

  /** After picking a new image file to write. */
  addTarget(path: string): void {
    if (!this.targets.includes(path)) this.targets = [...this.targets, path];
  }

  private async requery(): Promise<void> {
    await drives.setQuery({
      source: this.source ?? undefined,
      allowMounted: this.allowMounted || undefined,
      allowSystem: this.allowSystem || undefined,
    });
    // Unchoose what the new verdicts refuse.
    this.targets = this.targets.filter(
      (p) => drives.targetByPath(p)?.verdicts.target.level !== 'refused',
    );
  }

  cloneOptions(): CloneOptions {
    const o = this.options;
    const options: CloneOptions = {
      verify: o.verify,
      ignoreErrors: o.ignoreErrors,
      sequential: o.sequential,
      sparse: o.sparse === 'auto' ? null : o.sparse === 'yes',
      // An emptied number field reads as null: no limit.
      throttle: Number.isFinite(o.throttle)
        ? Math.min(100, Math.max(1, Math.round(o.throttle)))
        : 100,
      maxRate: Number.isFinite(o.maxRateMiB) ? Math.max(0, Math.round(o.maxRateMiB * MIB)) : 0,
    };
    if (o.regionSize > 0) options.regionSize = o.regionSize;
    if (o.usedOnly) options.usedOnly = true;
    return options;
  }

  /**
   * The request, with the confirmations given in the Confirmation dialog. `fresh`: a new
   * job (erase and copy) even where one exists for this source and these targets.
   */
  request(systemNames: Record<string, string>, fresh = false): CloneRequest {
    const targets: CloneTarget[] = this.targetDrives.map((d) => {
      const target: CloneTarget = { path: d.path };
      if (d.kind === 'block') {
        target.confirmed = true;
        if (d.mountpoints.length > 0) target.allowMounted = true;
        if (d.system) target.confirmSystemName = systemNames[d.path] ?? '';
      }
      return target;
    });
    const request: CloneRequest = {
      source: this.source ?? '',
      targets,
      options: this.cloneOptions(),
    };
    if (this.fittedTargets.length > 0) request.options!.fit = true;
    if (fresh) request.fresh = true;
    if (this.sha256 && this.sha256.url === this.source) request.sha256 = this.sha256.hex;
    if (this.options.useNow) request.serve = true;
    return request;
  }

  /** After a copy started: nothing chosen, and no risky choice carried to the next copy. */
  reset(): void {
    this.source = null;
    this.targets = [];
    this.usedSpace = null;
    this.allowMounted = false;
    this.allowSystem = false;
    this.sha256 = null;
    // In place: the Options form is bound to this object.
    this.options.ignoreErrors = false;
    this.options.usedOnly = false;
    this.options.useNow = false;
    this.notice = null;
    void drives.setQuery({});
  }
}

export const setup = new Setup();
