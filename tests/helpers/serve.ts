// A clone run with --serve SOCKET, once its export listens.

import { spawnCli, type CliEvent, type SpawnedCli } from './cli';
import type { Workspace } from './workspace';

export interface ServedRun {
  run: SpawnedCli;
  /** The `serve` event saying it listens: its socket, uri and job. */
  serving: CliEvent;
  socket: string;
}

/** `drivetwin ARGS --serve SOCKET --json`, the socket in the workspace; killed when the test ends. */
export async function serveRun(
  t: { after(fn: () => void): void },
  env: Workspace,
  args: string[],
): Promise<ServedRun> {
  const socket = env.file('disk.sock');
  const run = spawnCli([...args, '--serve', socket, '--json'], { db: env.db });
  t.after(() => run.child.kill('SIGKILL'));
  const serving = await run.waitEvent((e) => e.type === 'serve' && e.state === 'listening');
  return { run, serving, socket };
}
