// Image files the user picked or typed, remembered per list (source, target) for as
// long as the backend runs, until taken off. They join the drive list, each saying
// which lists it was picked for. A download (a URL) is picked as a source only, and
// what it is — asked of its server once, when picked — is remembered with it.

import type { Drive } from '../engine/drives/classify';
import type { DriveRole } from '../preload/events';
import { findDrive, imageDrive, type PickedDownload } from './api-drives';

export type ListedDrive = Drive & { sizeKnown?: boolean; pickedAs?: DriveRole[] };

export class PickedImages {
  /** Path → the lists it was picked for, in the order picked. */
  private readonly picked = new Map<string, DriveRole[]>();
  private readonly downloads = new Map<string, PickedDownload>();

  add(file: string, role: DriveRole): void {
    const roles = this.picked.get(file) ?? [];
    if (!roles.includes(role)) this.picked.set(file, [...roles, role]);
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
}
