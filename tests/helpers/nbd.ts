// Misbehaving drives from Debian's nbdkit (1.32), served as a file by nbdfuse, with
// a loop device on top so the engine sees a real block device. Recipe (measured):
//
//   nbdkit -f --exit-with-parent -U SOCK -P NBDKIT.pid [-r] --filter=F file file=IMG ARGS
//   touch MNT && nbdfuse -P FUSE.pid MNT --unix SOCK   # "naked" mount over a regular file
//   losetup --find --show --direct-io=on [--sector-size N] [-r] MNT
//
// - Ready = the pid file exists (nbdkit -P: listening; nbdfuse -P: serving).
// - faulty: --filter=ddrescue ddrescue-mapfile=MAP ('-' areas fail with EIO; the filter
//   is read-only, so nbdkit -r and a read-only loop). With the loop's --direct-io=on
//   faults are per 512-byte sector; with direct-io off the loop reads through the FUSE
//   page cache and a fault spreads to its whole 4 KiB page.
// - forgetful: --filter=cache cache=writeback (its cache file goes in $TMPDIR): writes
//   stay in nbdkit until a flush (fdatasync on the loop device -> loop fsyncs the FUSE
//   file -> NBD flush -> written to the backing file).
// - Power cut = SIGKILL nbdkit, `losetup -d` (before the unmount: a lazily unmounted
//   backing file reads as "/" in sysfs), then `fusermount3 -u -z MNT` (a plain unmount
//   can hang on a dead server). nbdfuse exits by itself once the loop lets go of the
//   file; it is never killed (that leaves a dead mount).
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from './files';
import { attachLoop, type LoopDevice } from './loop';

export interface NbdDrive {
  /** The nbdfuse file. */
  file: string;
  loop?: LoopDevice;
  /**
   * kill: SIGKILL nbdkit first (a power cut: unflushed writes are lost), then detach
   * and unmount. Otherwise a clean eject: flush, detach, unmount, stop nbdkit.
   * Either way the helper's files go too; idempotent.
   */
  stop(opts?: { kill?: boolean }): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function readLog(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}

/** Starts `cmd` in the background and waits until it writes `pidFile`. */
async function startDaemon(
  cmd: string,
  args: string[],
  pidFile: string,
  log: string,
  env = process.env,
): Promise<number> {
  const out = fs.openSync(log, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', out, out], env });
  fs.closeSync(out);
  child.unref();
  let exited: string | undefined;
  child.on('exit', (code, signal) => (exited = `exited (code ${code}, signal ${signal})`));
  child.on('error', (err) => (exited = err.message));
  for (let waited = 0; waited < 15_000; waited += 20) {
    if (exited) break;
    if (fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '') return child.pid!;
    await sleep(20);
  }
  if (!exited) child.kill('SIGKILL');
  throw new Error(`${cmd} did not become ready: ${exited ?? 'timeout'}\n${readLog(log)}`);
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function mounted(mnt: string): boolean {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === mnt);
}

function flush(dev: string): void {
  const fd = fs.openSync(dev, 'r+');
  try {
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function quiet(fn: () => void): void {
  try {
    fn();
  } catch {
    // cleanup goes on
  }
}

async function serve(
  nbdkitArgs: string[],
  dir: { dir: string; cleanup(): void },
  loopOpts: { sectorSize?: 512 | 4096; readOnly?: boolean; at?: string },
  env = process.env,
): Promise<NbdDrive> {
  const sock = path.join(dir.dir, 'nbd.sock');
  const mnt = path.join(dir.dir, 'drive');
  const log = path.join(dir.dir, 'log');
  let nbdkitPid: number | undefined;
  let loop: LoopDevice | undefined;
  let stopped = false;

  const killNbdkit = (signal: NodeJS.Signals) => {
    if (nbdkitPid === undefined) return;
    quiet(() => process.kill(nbdkitPid!, signal));
    // Nothing may reach the backing file once stop returns.
    for (let i = 0; i < 500 && alive(nbdkitPid); i++) sleepSync(10);
  };
  const unmount = () => {
    if (mounted(mnt))
      quiet(() => execFileSync('fusermount3', ['-u', '-z', mnt], { stdio: 'ignore' }));
  };
  const stop = (opts: { kill?: boolean } = {}) => {
    if (stopped) return;
    stopped = true;
    if (opts.kill) {
      killNbdkit('SIGKILL');
      if (loop) quiet(() => loop!.detach());
      unmount();
    } else {
      if (loop && !loopOpts.readOnly) quiet(() => flush(loop!.path));
      if (loop) quiet(() => loop!.detach());
      unmount();
      killNbdkit('SIGTERM');
    }
    dir.cleanup();
  };

  try {
    fs.writeFileSync(mnt, '');
    const nbdkitPidFile = path.join(dir.dir, 'nbdkit.pid');
    nbdkitPid = await startDaemon(
      'nbdkit',
      ['-f', '--exit-with-parent', '-U', sock, '-P', nbdkitPidFile, ...nbdkitArgs],
      nbdkitPidFile,
      log,
      env,
    );
    const fusePidFile = path.join(dir.dir, 'nbdfuse.pid');
    await startDaemon('nbdfuse', ['-P', fusePidFile, mnt, '--unix', sock], fusePidFile, log);
    loop = attachLoop(mnt, { ...loopOpts, directIo: true });
    return { file: mnt, loop, stop };
  } catch (err) {
    stop({ kill: true });
    throw err;
  }
}

/** GNU ddrescue mapfile: `bad` extents '-', everything else '+'. */
function mapfile(size: number, bad: Array<{ offset: number; length: number }>): string {
  const hex = (n: number) => `0x${n.toString(16).toUpperCase()}`;
  const lines = [
    '# Mapfile. Created by DriveTwin tests',
    '# current_pos  current_status  current_pass',
    '0x0 + 1',
    '#  pos  size  status',
  ];
  let pos = 0;
  const sorted = [...bad].sort((a, b) => a.offset - b.offset);
  for (const { offset, length } of sorted) {
    const start = Math.max(offset, pos);
    const end = Math.min(offset + length, size);
    if (end <= start) continue;
    if (start > pos) lines.push(`${hex(pos)} ${hex(start - pos)} +`);
    lines.push(`${hex(start)} ${hex(end - start)} -`);
    pos = end;
  }
  if (pos < size) lines.push(`${hex(pos)} ${hex(size - pos)} +`);
  return `${lines.join('\n')}\n`;
}

/**
 * `image` served read-only as a block device whose reads of `badExtents` fail with EIO
 * (per 512-byte sector; per 4096-byte sector with sectorSize 4096).
 */
export async function faultyDrive(
  image: string,
  badExtents: Array<{ offset: number; length: number }>,
  opts: { sectorSize?: 512 | 4096 } = {},
): Promise<NbdDrive> {
  const dir = tempDir('drivetwin-faulty-');
  const map = path.join(dir.dir, 'bad.map');
  fs.writeFileSync(map, mapfile(fs.statSync(image).size, badExtents));
  return serve(
    ['-r', '--filter=ddrescue', 'file', `file=${path.resolve(image)}`, `ddrescue-mapfile=${map}`],
    dir,
    { sectorSize: opts.sectorSize, readOnly: true },
  );
}

/**
 * A block device over `backing` that keeps writes in memory until a flush:
 * after stop({ kill: true }) `backing` holds exactly what was flushed.
 */
export async function forgetfulDrive(
  backing: string,
  opts: { sectorSize?: 512 | 4096 } = {},
): Promise<NbdDrive> {
  const dir = tempDir('drivetwin-forgetful-');
  const cache = path.join(dir.dir, 'cache');
  fs.mkdirSync(cache);
  return serve(
    ['--filter=cache', 'file', `file=${path.resolve(backing)}`, 'cache=writeback'],
    dir,
    { sectorSize: opts.sectorSize },
    { ...process.env, TMPDIR: cache }, // where the cache filter keeps its (deleted) cache file
  );
}

export interface PluggableDrive extends NbdDrive {
  loop: LoopDevice;
  /** Pulls the cable: from now on every read and write fails (EIO), the device stays. */
  unplug(): void;
  /** Plugs it back: the same device, the same data. */
  replug(): void;
}

/**
 * `image` as a drive that can be unplugged and plugged back in: nbdkit's error filter
 * fails every request while its trigger file exists. Killing nbdkit (stop({ kill }))
 * is the other way a drive goes: for good.
 */
export async function pluggableDrive(
  image: string,
  opts: { readOnly?: boolean; sectorSize?: 512 | 4096; at?: string } = {},
): Promise<PluggableDrive> {
  const dir = tempDir('drivetwin-pluggable-');
  const trigger = path.join(dir.dir, 'unplugged');
  const drive = await serve(
    [
      ...(opts.readOnly ? ['-r'] : []),
      '--filter=error',
      'file',
      `file=${path.resolve(image)}`,
      'error-rate=100%',
      `error-file=${trigger}`,
    ],
    dir,
    { sectorSize: opts.sectorSize, readOnly: opts.readOnly, at: opts.at },
  );
  return {
    ...drive,
    loop: drive.loop!,
    unplug: () => fs.writeFileSync(trigger, ''),
    replug: () => fs.rmSync(trigger, { force: true }),
  };
}

export interface AttachedExport {
  /** The loop device over the nbdfuse file: the served disk as a block device. */
  loop: LoopDevice;
  /** Detaches the loop device and unmounts the nbdfuse file (nbdfuse then exits); idempotent. */
  detach(): void;
}

/**
 * A served NBD export (`uri`) attached as a Linux block device the way a user without
 * the kernel's nbd module does it: nbdfuse makes it a file, losetup a block device.
 */
export async function attachExport(uri: string, size: number): Promise<AttachedExport> {
  const dir = tempDir('drivetwin-attach-');
  const mnt = path.join(dir.dir, 'disk');
  const log = path.join(dir.dir, 'log');
  fs.writeFileSync(mnt, '');
  let loop: LoopDevice | undefined;
  let detached = false;
  const detach = (): void => {
    if (detached) return;
    detached = true;
    if (loop) quiet(() => loop!.detach());
    // Not lazily: a lazy unmount would leave the disk's connections open after detach.
    if (mounted(mnt)) quiet(() => execFileSync('fusermount3', ['-u', mnt], { stdio: 'ignore' }));
    dir.cleanup();
  };
  try {
    const pidFile = path.join(dir.dir, 'nbdfuse.pid');
    await startDaemon('nbdfuse', ['-P', pidFile, mnt, uri], pidFile, log);
    // The pid file can come before the mount: wait until the file has the disk's size.
    for (let waited = 0; fs.statSync(mnt).size !== size; waited += 20) {
      if (waited > 10_000) throw new Error(`nbdfuse did not mount ${uri}\n${readLog(log)}`);
      await sleep(20);
    }
    loop = attachLoop(mnt, {});
    return { loop, detach };
  } catch (err) {
    detach();
    throw err;
  }
}
