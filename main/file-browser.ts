// The browser's file dialog, served by the backend: folders and files under the places
// a person keeps images (their home, /media, /mnt, /run/media), and nothing outside
// them — a symlink leading out is not followed, `..` never climbs above a place. When
// the backend runs as root for someone (sudo), what that person could not open is
// refused too: the dialog shows no more than they could see without DriveTwin.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FolderEntry, FolderListing } from '../preload/api';
import { ApiError } from './api-error';

/** Whose eyes the dialog sees with: a uid and its groups (null: this process's own). */
export interface Viewer {
  uid: number;
  gids: number[];
  home: string;
}

/** The person behind `sudo`, when this runs as root through it; else null (ourselves). */
export function sudoViewer(env: NodeJS.ProcessEnv = process.env): Viewer | null {
  const uid = Number(env.SUDO_UID);
  const gid = Number(env.SUDO_GID);
  if (process.getuid?.() !== 0 || !Number.isInteger(uid) || uid === 0) return null;
  let home = '';
  try {
    const line = fs
      .readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(uid));
    home = line?.split(':')[5] ?? '';
  } catch {
    // no passwd file: no home to offer
  }
  return { uid, gids: Number.isInteger(gid) ? [gid] : [], home };
}

/** The places the dialog starts from, those that exist. */
export function browsePlaces(viewer: Viewer | null): string[] {
  const home = viewer ? viewer.home : os.homedir();
  return [home, '/media', '/mnt', '/run/media'].filter((p) => {
    try {
      return p !== '' && fs.statSync(p).isDirectory();
    } catch {
      return false;
    }
  });
}

function real(p: string): string | null {
  try {
    return fs.realpathSync(p);
  } catch {
    return null;
  }
}

/** The place `p` (a real path) is in, or null. */
function placeOf(p: string, places: string[]): string | null {
  for (const place of places) {
    const root = real(place);
    if (root && (p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`))) return root;
  }
  return null;
}

/** May the viewer open `p` (read; and search, for a folder)? */
function mayOpen(p: string, st: fs.Stats, viewer: Viewer | null): boolean {
  const want = st.isDirectory() ? 0o5 : 0o4;
  if (!viewer) {
    try {
      fs.accessSync(
        p,
        st.isDirectory() ? fs.constants.R_OK | fs.constants.X_OK : fs.constants.R_OK,
      );
      return true;
    } catch {
      return false;
    }
  }
  const bits =
    st.uid === viewer.uid ? st.mode >> 6 : viewer.gids.includes(st.gid) ? st.mode >> 3 : st.mode;
  return (bits & want) === want;
}

/** The places (no `dir`), or one folder inside them, for the viewer. */
export function listFolder(
  dir: string | undefined,
  opts: { places: string[]; viewer: Viewer | null },
): FolderListing {
  if (dir === undefined || dir === '') {
    return {
      path: '',
      parent: null,
      entries: opts.places.map((p) => ({ name: p, path: p, kind: 'folder', size: 0 })),
    };
  }
  if (!path.isAbsolute(dir)) throw new ApiError('invalid', `give a full path, not "${dir}"`);
  const folder = real(dir);
  const place = folder ? placeOf(folder, opts.places) : null;
  if (!folder || !place) {
    throw new ApiError('refused', `${dir} is not in your home folder, /media, /mnt or /run/media`);
  }
  const st = fs.statSync(folder);
  if (!st.isDirectory()) throw new ApiError('invalid', `${dir} is not a folder`);
  if (!mayOpen(folder, st, opts.viewer)) throw new ApiError('refused', `you may not open ${dir}`);
  const entries: FolderEntry[] = [];
  for (const name of fs.readdirSync(folder)) {
    if (name.startsWith('.')) continue;
    const full = path.join(folder, name);
    const target = real(full);
    if (!target || !placeOf(target, opts.places)) continue; // a link leading out
    let est: fs.Stats;
    try {
      est = fs.statSync(target);
    } catch {
      continue;
    }
    if (!est.isDirectory() && !est.isFile()) continue;
    if (!mayOpen(target, est, opts.viewer)) continue;
    entries.push({
      name,
      path: full,
      kind: est.isDirectory() ? 'folder' : 'file',
      size: est.isFile() ? est.size : 0,
    });
  }
  entries.sort((a, b) =>
    a.kind !== b.kind ? (a.kind === 'folder' ? -1 : 1) : a.name.localeCompare(b.name),
  );
  return { path: folder, parent: folder === place ? null : path.dirname(folder), entries };
}
