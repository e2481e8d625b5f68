// `npm run web`: the backend without Electron, for a browser on this machine.
//
//   node dist/main/web.js [--port N] [--db FILE] [--renderer DIR] [--new-token]
//
// Prints the URL to open (its token is in the #fragment, which the browser never
// sends anywhere). The port and token are kept for the next run (main/web-state.ts),
// so an open page reconnects by itself after a restart. While a copy runs, the
// machine is kept from sleeping where systemd-inhibit exists. Ctrl-C stops running
// jobs cleanly: what is in flight is committed and they stay resumable.

import { parseArgs } from 'node:util';
import { databasePath } from '../engine/store/database';
import { createBackend } from './api';
import { watchSystemDrives } from './drive-watcher';
import { ejectTool } from './eject';
import { EngineSupervisor } from './engine-host';
import { pickedImagesFile } from './picked-images';
import { sudoViewer } from './file-browser';
import { SleepInhibitor, systemdInhibit } from './sleep-inhibitor';
import { startWebBridge, type WebBridge, type WebBridgeOptions } from './web-bridge';
import { bridgeStateFile, loadBridgeState, newToken, saveBridgeState } from './web-state';

/** On the port asked for; on the saved one if it is free, else on any. */
async function listen(options: WebBridgeOptions, fallback: boolean): Promise<WebBridge> {
  try {
    return await startWebBridge(options);
  } catch (e) {
    if (!fallback || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    process.stderr.write(`port ${options.port} is taken: another one is used\n`);
    return startWebBridge({ ...options, port: 0 });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      db: { type: 'string' },
      renderer: { type: 'string' },
      'new-token': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'Usage: npm run web -- [--port N] [--db FILE] [--renderer DIR] [--new-token]\n',
    );
    return;
  }
  const asked = values.port === undefined ? undefined : Number(values.port);
  if (asked !== undefined && (!Number.isInteger(asked) || asked < 0 || asked > 65535)) {
    throw new Error(`--port takes a port number, not "${values.port}"`);
  }
  const dbPath = databasePath(values.db);
  const stateFile = bridgeStateFile(dbPath);
  const saved = loadBridgeState(stateFile);
  const token = values['new-token'] || !saved ? newToken() : saved.token;

  const engine = new EngineSupervisor({ dbPath });
  const { watcher, snapshot } = watchSystemDrives();
  watcher.on('error', (e: Error) => process.stderr.write(`drive list: ${e.message}\n`));
  const backend = createBackend({
    engine,
    listDrives: () => watcher.poll(),
    snapshot,
    drivesChanges: watcher,
    dialogs: null,
    fileBrowser: { viewer: sudoViewer() },
    eject: ejectTool(),
    transport: 'web',
    pickedImagesFile: pickedImagesFile(dbPath),
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    version: (require('../../package.json') as { version: string }).version,
  });
  const inhibitor = new SleepInhibitor(systemdInhibit());
  backend.onEvent((event, payload) => inhibitor.onEvent(event, payload));
  inhibitor.on('error', (e: Error) => process.stderr.write(`sleep inhibitor: ${e.message}\n`));
  watcher.start();
  const bridge = await listen(
    { backend, port: asked ?? saved?.port ?? 0, rendererDir: values.renderer, token },
    asked === undefined,
  );
  saveBridgeState(stateFile, { port: bridge.port, token: bridge.token });
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
        inhibitor.close();
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
