// What `npm run web` keeps between runs: its port and token, in a file only the user can
// read, next to the job database. So a page left open reconnects by itself after the
// bridge is restarted (same address, same token), and a bookmark keeps working.
// `--new-token` forgets the old token (anyone who saw that address loses access).

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface BridgeState {
  port: number;
  token: string;
}

export function bridgeStateFile(dbPath: string): string {
  return path.join(path.dirname(dbPath), 'web-bridge.json');
}

export function newToken(): string {
  return randomBytes(32).toString('hex');
}

/** The saved state, or null when there is none (or it is not ours to trust). */
export function loadBridgeState(file: string): BridgeState | null {
  try {
    const st = fs.statSync(file);
    // Readable by others: someone else may know the token. Start afresh.
    if ((st.mode & 0o077) !== 0) return null;
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<BridgeState>;
    const port = Number(parsed.port);
    const token = String(parsed.token ?? '');
    if (!Number.isInteger(port) || port < 0 || port > 65535) return null;
    if (!/^[0-9a-f]{64}$/.test(token)) return null;
    return { port, token };
  } catch {
    return null;
  }
}

/** Written whole (a temporary file renamed over it), readable by the user alone. */
export function saveBridgeState(file: string, state: BridgeState): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, `${JSON.stringify(state)}\n`, { mode: 0o600 });
  fs.renameSync(temporary, file);
}
