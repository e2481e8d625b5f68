// The elevated engine's transport, under plain Node: the host connects back over a
// unix socket in a user-only folder and proves itself with the token; anyone else is
// turned away. The launch is elevatedLaunch's own Linux command line without pkexec
// in front, so everything but the prompt runs as in the app.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'node:test';
import { elevatedLaunch, listenForEngine } from '../../main/elevation';
import { startBackend } from '../helpers/backend';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';

const MIB = 1024 * 1024;

function knock(socketPath: string, line: string): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath, () => s.write(line));
    s.on('error', () => resolve('closed'));
    s.on('close', () => resolve('closed'));
    setTimeout(() => {
      resolve('open');
      s.destroy();
    }, 1000);
  });
}

test('the engine socket is user-only and refuses a wrong or missing token', async (t) => {
  if (process.platform === 'win32') return t.skip('unix sockets');
  const listener = await listenForEngine({ timeoutMs: 20_000 });
  t.after(() => listener.close());
  const dir = path.dirname(listener.socketPath);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  assert.equal(fs.statSync(listener.socketPath).mode & 0o777, 0o600);
  assert.equal(fs.statSync(listener.tokenFile).mode & 0o777, 0o600);
  const token = fs.readFileSync(listener.tokenFile, 'utf8').trim();
  assert.match(token, /^[0-9a-f]{64}$/);

  const wrong = token.replace(/^./, (c) => (c === 'a' ? 'b' : 'a'));
  assert.equal(
    await knock(listener.socketPath, JSON.stringify({ kind: 'auth', token: wrong }) + '\n'),
    'closed',
  );
  assert.equal(await knock(listener.socketPath, JSON.stringify({ kind: 'auth' }) + '\n'), 'closed');
  assert.equal(await knock(listener.socketPath, 'hello\n'), 'closed');
  assert.equal(
    await knock(
      listener.socketPath,
      JSON.stringify({ kind: 'auth', token: token.slice(1) }) + '\n',
    ),
    'closed',
  );
  assert.equal(listener.refused, 4);

  const client = net.connect(listener.socketPath, () =>
    client.write(JSON.stringify({ kind: 'auth', token }) + '\n' + '{"kind":"hello"}\n'),
  );
  t.after(() => client.destroy());
  const { socket, leftover } = await listener.accepted;
  assert.equal(leftover, '{"kind":"hello"}\n');
  socket.destroy();
  // One engine per listener: the token and the socket are gone once it is in.
  assert.equal(fs.existsSync(listener.tokenFile), false);
  assert.equal(fs.existsSync(dir), false);
});

test('a clone runs in an engine reached over the authenticated socket; files it creates go to the user', async (t) => {
  if (process.platform === 'win32') return t.skip('unix sockets');
  const tmp = tempDir('drivetwin-backend-elevated-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('src.img'), 16 * MIB, 31);
  const launched: string[][] = [];
  const h = startBackend(t, {
    dbPath: file('jobs.db'),
    progressMs: 100,
    elevation: {
      needed: (access) => access.write.some((p) => p.endsWith('dst.img')),
      launch: (input) => {
        // As the app would run it, minus pkexec; handed to nobody:nogroup.
        const { command, args } = elevatedLaunch({
          ...input,
          platform: 'linux',
          owner: { uid: 65534, gid: 65534 },
        });
        assert.equal(command, 'pkexec');
        launched.push(args);
        return { command: args[0], args: args.slice(1) };
      },
    },
  });

  const { job } = await h.call('startClone', {
    source: file('src.img'),
    targets: [{ path: file('dst.img') }],
  });
  assert.equal(launched.length, 1);
  assert.deepEqual(launched[0].slice(0, 3), [
    '/usr/bin/env',
    'ELECTRON_RUN_AS_NODE=1',
    process.execPath,
  ]);
  const elevatedPid = await h.engine.pid('elevated');
  assert.ok(elevatedPid);
  assert.equal(h.engine.jobPid(job), elevatedPid);
  const done = await h.waitFor('done', (d) => d.job === job);
  assert.equal(done.state, 'done');
  assert.ok(h.of('progress', job).length > 0);
  assert.equal(sha256(file('dst.img')), sha256(file('src.img')));
  assert.equal(fs.statSync(file('dst.img')).uid, 65534);
  assert.equal(fs.statSync(file('jobs.db')).uid, 65534);

  // The unelevated engine reads the same job database.
  const [summary] = await h.call('listJobs');
  assert.equal(summary.state, 'done');
  assert.notEqual(await h.engine.pid('normal'), elevatedPid);

  // The elevated engine dying interrupts its job like any other.
  const second = await h.call('startClone', {
    source: file('src.img'),
    targets: [{ path: file('other-dst.img') }, { path: file('dst.img') }],
    options: { maxRate: 4 * MIB },
  });
  await h.waitFor('progress', (p) => p.job === second.job && p.bytesDone > 0);
  assert.equal(h.engine.jobPid(second.job), elevatedPid);
  process.kill(elevatedPid, 'SIGKILL');
  const error = await h.waitFor('error', (e) => e.job === second.job && e.fatal);
  assert.match(error.message, /elevated engine disconnected/);
  assert.equal((await h.waitFor('done', (d) => d.job === second.job)).state, 'interrupted');
});

test("from an AppImage the AppImage file is what runs, and it finds host.js under the APPDIR it sets, not the app's own mount", async (t) => {
  if (process.platform === 'win32') return t.skip('unix sockets');
  const tmp = tempDir('drivetwin-backend-appimage-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  writeRandomFile(file('src.img'), 4 * MIB, 32);
  // The image's contents, mounted again for the elevated run: the app (this checkout)
  // where electron-builder puts it, resources/app.asar.unpacked.
  const rootMount = file('root-mount');
  fs.mkdirSync(path.join(rootMount, 'resources'), { recursive: true });
  fs.symlinkSync(
    path.join(__dirname, '..', '..', '..'),
    path.join(rootMount, 'resources', 'app.asar.unpacked'),
  );
  // Stands for the AppImage: its runtime mounts the image and sets APPDIR and APPIMAGE,
  // then AppRun runs the app's binary (here Node, as Electron in Node mode) with the
  // arguments it was given.
  const appImage = file('DriveTwin-0.1.0.AppImage');
  fs.writeFileSync(
    appImage,
    `#!/bin/sh\necho "$ELECTRON_RUN_AS_NODE $0" >> ${file('ran')}\n` +
      `APPDIR=${rootMount} APPIMAGE="$0" exec ${process.execPath} "$@"\n`,
    { mode: 0o755 },
  );
  // The app's own mount, which root could not read: nothing there exists for this run.
  const userMount = '/tmp/.mount_DriveTnOtHeRe';
  const h = startBackend(t, {
    dbPath: file('jobs.db'),
    hostScript: path.join(userMount, 'resources', 'app.asar', 'dist', 'engine', 'host', 'host.js'),
    elevation: {
      platform: 'linux',
      env: { APPIMAGE: appImage, APPDIR: userMount },
      needed: () => true,
      launch: (input) => {
        const { args } = elevatedLaunch(input); // minus pkexec, as above
        return { command: args[0], args: args.slice(1) };
      },
    },
  });
  const { job } = await h.call('startClone', {
    source: file('src.img'),
    targets: [{ path: file('dst.img') }],
  });
  assert.equal((await h.waitFor('done', (d) => d.job === job)).state, 'done');
  assert.equal(sha256(file('dst.img')), sha256(file('src.img')));
  assert.equal(fs.readFileSync(file('ran'), 'utf8'), `1 ${appImage}\n`);
  assert.ok(await h.engine.pid('elevated'));
});
