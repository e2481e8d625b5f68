// Image files the user picked or typed, remembered per list (source, target) until taken
// off — across restarts: they are kept in a small file next to the job database
// (picked-images.json, readable by the user alone, written whole). They join the drive
// list, each saying which lists it was picked for; one that has gone since is listed
// with its verdict (it does not exist), for the user to remove. A download (a URL) is
// picked as a source only, for as long as the backend runs: what it is — asked of its
// server once, when picked — is remembered with it, and it is not kept in the file.

import fs from 'node:fs';
import path from 'node:path';
import type { Drive } from '../engine/drives/classify';
import type { DriveRole } from '../preload/events';
import { findDrive, imageDrive, type PickedDownload } from './api-drives';

export type ListedDrive = Drive & { sizeKnown?: boolean; pickedAs?: DriveRole[] };

/** Where the picked images are kept for a job database at `dbPath`. */
export function pickedImagesFile(dbPath: string): string {
  return path.join(path.dirname(dbPath), 'picked-images.json');
}

const ROLES: readonly DriveRole[] = ['source', 'target'];

export class PickedImages {
  /** Path → the lists it was picked for, in the order picked. */
  private readonly picked = new Map<string, DriveRole[]>();
  private readonly downloads = new Map<string, PickedDownload>();

  /** `file`: where they are kept across restarts; null: for as long as this process runs. */
  constructor(private readonly file: string | null = null) {
    if (file) this.load(file);
  }

  add(file: string, role: DriveRole): void {
    const roles = this.picked.get(file) ?? [];
    if (roles.includes(role)) return;
    this.picked.set(file, [...roles, role]);
    this.save();
  }

  /** A URL picked as a source, with what its server said of it. */
  addDownload(url: string, described: PickedDownload): void {
    this.downloads.set(url, described);
    this.add(url, 'source');
  }

  /** What a picked download is; undefined for anything else. */
  download(url: string): PickedDownload | undefined {
    return this.downloads.get(url);
  }

  /** Off one list; forgotten once on none. */
  forget(file: string, role: DriveRole): void {
    const roles = (this.picked.get(file) ?? []).filter((r) => r !== role);
    if (roles.length > 0) this.picked.set(file, roles);
    else {
      this.picked.delete(file);
      this.downloads.delete(file);
    }
    this.save();
  }

  has(file: string): boolean {
    return this.picked.has(file);
  }

  /** The drives, and the picked images after them (as they are now), each with its lists. */
  async withDrives(drives: Drive[]): Promise<ListedDrive[]> {
    const out: ListedDrive[] = drives.map((d) => ({ ...d, pickedAs: [] }));
    for (const [image, roles] of this.picked) {
      const download = this.downloads.get(image);
      const listed = download ? undefined : (findDrive(out, image) as ListedDrive | undefined);
      if (listed) listed.pickedAs = [...roles];
      else out.push({ ...(download?.drive ?? (await imageDrive(image))), pickedAs: [...roles] });
    }
    return out;
  }

  /** What was kept; anything unreadable or not ours is ignored (the lists start empty). */
  private load(file: string): void {
    let kept: unknown;
    try {
      kept = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch {
      return;
    }
    const images = (kept as { images?: unknown } | null)?.images;
    if (!Array.isArray(images)) return;
    for (const entry of images) {
      const { path: p, roles } = (entry ?? {}) as { path?: unknown; roles?: unknown };
      if (typeof p !== 'string' || !path.isAbsolute(p) || !Array.isArray(roles)) continue;
      const valid = ROLES.filter((r) => roles.includes(r));
      if (valid.length > 0) this.picked.set(p, valid);
    }
  }

  /** Written whole (a temporary file renamed over it), readable by the user alone. */
  private save(): void {
    if (!this.file) return;
    const images = [...this.picked]
      .filter(([p]) => !this.downloads.has(p))
      .map(([p, roles]) => ({ path: p, roles }));
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
      const temporary = `${this.file}.${process.pid}.tmp`;
      fs.writeFileSync(temporary, `${JSON.stringify({ images }, null, 2)}\n`, { mode: 0o600 });
      fs.renameSync(temporary, this.file);
    } catch {
      // Remembering across restarts is a convenience: the lists still work without it.
    }
  }
}
