// Where the app's "Use it now" serves a copy while it copies: a Unix socket in a fresh
// folder only the user can open — in $XDG_RUNTIME_DIR (the user's own, on Linux) when
// there is one. The engine serving it (elevated or not) hands the socket to the user.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApiError } from './api-error';

export function serveSocketPath(
  env: NodeJS.ProcessEnv = process.env,
  platform: string = process.platform,
): string {
  if (platform !== 'linux') {
    throw new ApiError('refused', 'Use it now needs Linux: nbd-client or nbdfuse attach the copy');
  }
  const runtime = env.XDG_RUNTIME_DIR;
  const base = runtime && fs.existsSync(runtime) ? runtime : os.tmpdir();
  return path.join(fs.mkdtempSync(path.join(base, 'drivetwin-')), 'disk.sock');
}
