// The elevated engine's launch command, per OS and per package (pure), the decision to
// elevate, and quitting while the administrator prompt is still open.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  appImageOf,
  elevatedLaunch,
  needsElevation,
  shellQuote,
  type ElevationInput,
} from '../../main/elevation';
import { EngineSupervisor } from '../../main/engine-host';
import { elevationInput } from '../helpers/backend';
import { tempDir } from '../helpers/files';

const POSIX: ElevationInput = {
  platform: 'linux',
  runtime: '/opt/DriveTwin/drivetwin',
  hostScript: '/opt/DriveTwin/resources/app.asar.unpacked/dist/engine/host/host.js',
  dbPath: '/home/ann/.local/share/drivetwin/jobs.db',
  socketPath: '/tmp/drivetwin-abc/engine.sock',
  tokenFile: '/tmp/drivetwin-abc/token',
  owner: { uid: 1000, gid: 1000 },
};

/** The words /bin/sh makes of `line`. */
function shellWords(line: string): string[] {
  const out = execFileSync('/bin/sh', ['-c', `for w in ${line}; do printf '%s\\0' "$w"; done`], {
    encoding: 'utf8',
  });
  return out.split('\0').slice(0, -1);
}

test('Linux: pkexec runs env ELECTRON_RUN_AS_NODE=1 <electron> host.js, with the socket, token file and owner', () => {
  const launch = elevatedLaunch(POSIX);
  assert.equal(launch.command, 'pkexec');
  assert.deepEqual(launch.args, [
    '/usr/bin/env',
    'ELECTRON_RUN_AS_NODE=1',
    '/opt/DriveTwin/drivetwin',
    '/opt/DriveTwin/resources/app.asar.unpacked/dist/engine/host/host.js',
    '--db',
    '/home/ann/.local/share/drivetwin/jobs.db',
    '--socket',
    '/tmp/drivetwin-abc/engine.sock',
    '--token-file',
    '/tmp/drivetwin-abc/token',
    '--owner',
    '1000:1000',
  ]);
  assert.equal(launch.env, undefined);
  assert.ok(!launch.args.some((a) => /^\d+$/.test(a) && Number(a) > 1024), 'no TCP port anywhere');
});

test('Linux, from an AppImage: pkexec runs the AppImage file itself, which finds host.js under the APPDIR it mounts for root', () => {
  const mount = '/tmp/.mount_DriveTaBcDeF';
  const input: ElevationInput = {
    ...POSIX,
    runtime: `${mount}/drivetwin`,
    hostScript: `${mount}/resources/app.asar.unpacked/dist/engine/host/host.js`,
    appImage: { file: "/home/ann/Apps/Drive Twin's-0.1.0.AppImage", dir: mount },
  };
  const launch = elevatedLaunch(input);
  assert.equal(launch.command, 'pkexec');
  const [env, runAsNode, file, flag, code, ...rest] = launch.args;
  assert.deepEqual(
    [env, runAsNode, file, flag],
    ['/usr/bin/env', 'ELECTRON_RUN_AS_NODE=1', "/home/ann/Apps/Drive Twin's-0.1.0.AppImage", '-e'],
  );
  // Nothing from the user's own mount, which root cannot read.
  assert.ok(!launch.args.some((a) => a.includes(mount)), launch.args.join(' '));
  assert.match(code, /process\.env\.APPDIR/);
  assert.ok(
    code.includes(JSON.stringify('resources/app.asar.unpacked/dist/engine/host/host.js')),
    code,
  );
  assert.match(code, /\.start\(process\.argv\.slice\(1\)\)$/);
  assert.deepEqual(rest, [
    '--',
    '--db',
    POSIX.dbPath,
    '--socket',
    POSIX.socketPath,
    '--token-file',
    POSIX.tokenFile,
    '--owner',
    '1000:1000',
  ]);
  assert.throws(
    () => elevatedLaunch({ ...input, hostScript: '/opt/elsewhere/host.js' }),
    /is not inside the AppImage/,
  );
});

test('an AppImage is recognised by the variables its runtime sets, on Linux only', () => {
  const env = { APPIMAGE: '/home/ann/DriveTwin.AppImage', APPDIR: '/tmp/.mount_DriveT1' };
  assert.deepEqual(appImageOf(env, 'linux'), {
    file: '/home/ann/DriveTwin.AppImage',
    dir: '/tmp/.mount_DriveT1',
  });
  assert.equal(appImageOf({ APPIMAGE: env.APPIMAGE }, 'linux'), undefined);
  assert.equal(appImageOf(env, 'darwin'), undefined);
  assert.equal(appImageOf({}, 'linux'), undefined);
});

test('the supervisor hands the AppImage to the launch when APPIMAGE is set, and the running binary otherwise', async () => {
  const mount = '/tmp/.mount_DriveTwXYZ';
  const start = (env: NodeJS.ProcessEnv): Promise<ElevationInput> =>
    elevationInput({
      hostScript: `${mount}/resources/app.asar/dist/engine/host/host.js`,
      elevation: { platform: 'linux', env },
    });
  const fromImage = await start({ APPIMAGE: '/home/ann/DriveTwin.AppImage', APPDIR: mount });
  assert.deepEqual(fromImage.appImage, { file: '/home/ann/DriveTwin.AppImage', dir: mount });
  assert.deepEqual(elevatedLaunch(fromImage).args.slice(0, 4), [
    '/usr/bin/env',
    'ELECTRON_RUN_AS_NODE=1',
    '/home/ann/DriveTwin.AppImage',
    '-e',
  ]);
  const installed = await start({});
  assert.equal(installed.appImage, undefined);
  assert.equal(elevatedLaunch(installed).args[2], process.execPath);
});

test('closing while the administrator prompt is open gives up on it at once, and ends the prompt', async (t) => {
  const tmp = tempDir('drivetwin-elevation-quit-');
  t.after(() => tmp.cleanup());
  const pidFile = path.join(tmp.dir, 'prompt.pid');
  const supervisor = new EngineSupervisor({
    dbPath: path.join(tmp.dir, 'jobs.db'),
    elevation: {
      needed: () => true,
      // The prompt: a process that waits (for an answer that never comes).
      launch: () => ({ command: '/bin/sh', args: ['-c', `echo $$ > ${pidFile}; exec sleep 600`] }),
    },
  });
  const pending = supervisor.request({ type: 'list-jobs' }, { read: ['/dev/sda'], write: [] });
  pending.catch(() => undefined);
  const until = Date.now() + 10_000;
  while (!fs.existsSync(pidFile) || !fs.readFileSync(pidFile, 'utf8').trim()) {
    assert.ok(Date.now() < until, 'the prompt started');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const prompt = Number(fs.readFileSync(pidFile, 'utf8'));
  const started = performance.now();
  await supervisor.close();
  const took = performance.now() - started;
  assert.ok(took < 2000, `closing took ${took.toFixed(0)} ms (the prompt's timeout is 5 minutes)`);
  await assert.rejects(pending, /DriveTwin is closing/);
  const gone = Date.now() + 5000;
  for (;;) {
    try {
      process.kill(prompt, 0);
    } catch {
      break; // no such process: the prompt ended with the app
    }
    assert.ok(Date.now() < gone, `the prompt's process ${prompt} is still there`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
});

test('macOS: osascript "do shell script … with administrator privileges", quoted for AppleScript and the shell', () => {
  const input: ElevationInput = {
    ...POSIX,
    platform: 'darwin',
    runtime: `/Applications/Drive "Twin".app/Contents/MacOS/Drive Twin`,
    dbPath: `/Users/o'brien/Library/Application Support/DriveTwin/jobs.db`,
    owner: { uid: 501, gid: 20 },
  };
  const launch = elevatedLaunch(input);
  assert.equal(launch.command, '/usr/bin/osascript');
  assert.equal(launch.args[0], '-e');
  const m = /^do shell script "((?:[^"\\]|\\.)*)" with administrator privileges$/.exec(
    launch.args[1],
  );
  assert.ok(m, launch.args[1]);
  const line = m[1].replace(/\\(.)/g, '$1'); // AppleScript string → shell line
  assert.ok(line.startsWith('ELECTRON_RUN_AS_NODE=1 '));
  assert.deepEqual(shellWords(line.slice('ELECTRON_RUN_AS_NODE=1 '.length)), [
    input.runtime,
    input.hostScript,
    '--db',
    input.dbPath,
    '--socket',
    input.socketPath,
    '--token-file',
    input.tokenFile,
    '--owner',
    '501:20',
  ]);
});

test('Windows: PowerShell Start-Process -Verb RunAs (UAC) runs cmd, which sets ELECTRON_RUN_AS_NODE for the named pipe host', () => {
  const input: ElevationInput = {
    platform: 'win32',
    runtime: 'C:\\Program Files\\DriveTwin\\DriveTwin.exe',
    hostScript: 'C:\\Program Files\\DriveTwin\\resources\\app.asar.unpacked\\dist\\engine\\host.js',
    dbPath: "C:\\Users\\O'Brien\\AppData\\Roaming\\DriveTwin\\jobs.db",
    socketPath: '\\\\.\\pipe\\drivetwin-0123abcd',
    tokenFile: 'C:\\Users\\OBrien\\AppData\\Local\\Temp\\drivetwin-x\\token',
  };
  const launch = elevatedLaunch(input);
  assert.equal(launch.command, 'powershell.exe');
  const at = launch.args.indexOf('-EncodedCommand');
  assert.deepEqual(launch.args.slice(0, at), [
    '-NoProfile',
    '-NonInteractive',
    '-WindowStyle',
    'Hidden',
  ]);
  const script = Buffer.from(launch.args[at + 1], 'base64').toString('utf16le');
  assert.equal(
    script,
    "$p = Start-Process -FilePath 'cmd.exe' -ArgumentList '/d /s /c \"set ELECTRON_RUN_AS_NODE=1&& " +
      '"C:\\Program Files\\DriveTwin\\DriveTwin.exe" ' +
      '"C:\\Program Files\\DriveTwin\\resources\\app.asar.unpacked\\dist\\engine\\host.js" ' +
      '"--db" "C:\\Users\\O\'\'Brien\\AppData\\Roaming\\DriveTwin\\jobs.db" ' +
      '"--socket" "\\\\.\\pipe\\drivetwin-0123abcd" ' +
      '"--token-file" "C:\\Users\\OBrien\\AppData\\Local\\Temp\\drivetwin-x\\token""\' ' +
      '-Verb RunAs -WindowStyle Hidden -Wait -PassThru; exit $p.ExitCode',
  );
  assert.throws(
    () => elevatedLaunch({ ...input, dbPath: 'C:\\Users\\%USERNAME%\\jobs.db' }),
    /can't pass .* through the UAC prompt/,
  );
});

test('shellQuote survives spaces, quotes and shell metacharacters', () => {
  const words = ['plain', 'with space', "it's", '"dq"', '$HOME', '`id`', 'a;b', '*', ''];
  assert.deepEqual(shellWords(words.map(shellQuote).join(' ')), words);
});

test('elevation is needed exactly when opening a path fails for lack of privilege', (t) => {
  const tmp = tempDir('drivetwin-elevation-');
  t.after(() => tmp.cleanup());
  const file = path.join(tmp.dir, 'image.img');
  fs.writeFileSync(file, Buffer.alloc(4096));
  const fifo = path.join(tmp.dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  assert.equal(needsElevation({ read: [file], write: [path.join(tmp.dir, 'new.img')] }), false);
  assert.equal(needsElevation({ read: [path.join(tmp.dir, 'missing')], write: [] }), false);
  assert.equal(needsElevation({ read: [fifo], write: [fifo] }), false, 'a FIFO is never opened');

  if (process.getuid?.() !== 0) return t.skip('the denied case runs as root, dropping to nobody');
  fs.chmodSync(tmp.dir, 0o755);
  fs.chmodSync(file, 0o600);
  const lockedDir = path.join(tmp.dir, 'locked');
  fs.mkdirSync(lockedDir, { mode: 0o755 });
  const script = `
    const { needsElevation } = require(${JSON.stringify(require.resolve('../../main/elevation'))});
    console.log(JSON.stringify([
      needsElevation({ read: [${JSON.stringify(file)}], write: [] }),
      needsElevation({ read: [], write: [${JSON.stringify(path.join(lockedDir, 'new.img'))}] }),
      needsElevation({ read: ['/dev/null'], write: [] }),
    ]));`;
  const out = execFileSync(process.execPath, ['-e', script], {
    uid: 65534,
    gid: 65534,
    encoding: 'utf8',
  });
  assert.deepEqual(JSON.parse(out), [true, true, false]);
});
