// Finding a program on PATH (for what this system offers: systemd-inhibit, udisksctl,
// eject), without running it.

import fs from 'node:fs';
import path from 'node:path';

/** The first `name` on PATH that may be run, or null. */
export function onPath(name: string, envPath = process.env.PATH ?? ''): string | null {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}
