// `npm run web`: the backend without Electron, for a browser on this machine.
//
//   node dist/main/web.js [--port N] [--db FILE] [--renderer DIR]
//
// Prints the URL to open (with its token). Ctrl-C stops running jobs cleanly: what
// is in flight is committed and they stay resumable.

import { parseArgs } from 'node:util';
import { defaultDatabasePath } from '../engine/database';
import { listDrives } from '../engine/drives/list';
import { createBackend } from './api';
import { DriveWatcher } from './drive-watcher';
import { EngineSupervisor } from './engine-host';
import { startWebBridge } from './web-bridge';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      db: { type: 'string' },
      renderer: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write('Usage: npm run web -- [--port N] [--db FILE] [--renderer DIR]\n');
    return;
  }
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port takes a port number, not "${values.port}"`);
  }
  const dbPath = values.db ?? process.env.DRIVETWIN_DB ?? defaultDatabasePath();
  const engine = new EngineSupervisor({ dbPath });
  const watcher = new DriveWatcher(listDrives);
  watcher.on('error', (e: Error) => process.stderr.write(`drive list: ${e.message}\n`));
  const backend = createBackend({
    engine,
    listDrives: () => watcher.poll(),
    drivesChanges: watcher,
    dialogs: null,
    transport: 'web',
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    version: (require('../../package.json') as { version: string }).version,
  });
  watcher.start();
  const bridge = await startWebBridge({ backend, port, rendererDir: values.renderer });
  process.stdout.write(`DriveTwin is at ${bridge.url}\n(job database: ${dbPath})\n`);

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('Stopping: running jobs commit what is in flight and stay resumable…\n');
    watcher.stop();
    void bridge
      .close()
      .then(() => engine.close())
      .finally(() => {
        backend.close();
        process.exit(0);
      });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e: Error) => {
  process.stderr.write(`drivetwin web: ${e.message}\n`);
  process.exit(1);
});
