// Which file a path names now: its device and inode, or null when nothing is there.

import fs from 'node:fs';

export function inodeOf(file: string): string | null {
  try {
    const st = fs.statSync(file);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}
