// The drive list, classification and target verdicts on this machine's own loop
// devices (the captured machines are tests/unit/drives.test.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { imageFileDrive } from '../../engine/drives/classify';
import { describeBlockDevice, devnoOf } from '../../engine/drives/linux';
import { listDrives } from '../../engine/drives/list';
import { destinationProblems, verdictFor } from '../../engine/drives/safety';
import { parseMountinfo } from '../../engine/drives/topology';
import { byPath } from '../helpers/drives';

// ---------------------------------------------------------------------------
// Live, on this machine: loop devices need root. Under CI=true a machine that can't
// make them fails the test instead of skipping it.

function whyNoLoopDevices(): string | null {
  if (process.platform !== 'linux') return `loop devices need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'needs root (loop devices, mount)';
  if (!fs.existsSync('/dev/loop-control')) return 'no /dev/loop-control';
  try {
    execFileSync('losetup', ['--find'], { stdio: 'pipe' });
  } catch (err) {
    return `losetup unusable: ${(err as Error).message.split('\n')[0]}`;
  }
  return null;
}

const noLoopDevices = whyNoLoopDevices();

function loopDevicesOr(t: TestContext): boolean {
  if (noLoopDevices === null) return true;
  if (process.env.CI === 'true') assert.fail(`CI=true and this test can't run: ${noLoopDevices}`);
  t.skip(noLoopDevices);
  return false;
}

function run(command: string, args: string[], input?: string): string {
  return execFileSync(command, args, { encoding: 'utf8', input, stdio: 'pipe' }).trim();
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function hasCommand(command: string): boolean {
  return (process.env.PATH ?? '')
    .split(':')
    .concat('/usr/sbin', '/sbin')
    .some((dir) => fs.existsSync(path.join(dir, command)));
}

/** Files, loop devices and mounts of one test; `cleanup` undoes them, newest first. */
class Rig {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-drives-'));
  private readonly loops: Array<{ dev: string; file: string }> = [];
  private readonly mounts: string[] = [];

  file(name: string, bytes: number): string {
    const file = path.join(this.dir, name);
    fs.writeFileSync(file, '');
    fs.truncateSync(file, bytes);
    return file;
  }

  attach(
    file: string,
    opts: { sectorSize?: number; partscan?: boolean; readOnly?: boolean } = {},
  ): string {
    const args = ['--find', '--show'];
    if (opts.sectorSize) args.push('--sector-size', String(opts.sectorSize));
    if (opts.partscan) args.push('--partscan');
    if (opts.readOnly) args.push('--read-only');
    const dev = run('losetup', [...args, file]);
    this.loops.push({ dev, file: fs.realpathSync(file) });
    return dev;
  }

  /**
   * The partitions of a loop device attached with `partscan`. A kernel built without
   * partition-table parsers (CONFIG_MSDOS_PARTITION unset, as on this machine kind)
   * finds none: then partx reads the table and adds them (BLKPG), as the kernel would.
   */
  partitions(dev: string, count: number): string[] {
    const wanted = Array.from({ length: count }, (_, i) => `${dev}p${i + 1}`);
    const appeared = (ms: number): boolean => {
      for (let waited = 0; waited < ms && !wanted.every((p) => fs.existsSync(p)); waited += 50)
        sleep(50);
      return wanted.every((p) => fs.existsSync(p));
    };
    if (!appeared(1000)) run('partx', ['--add', dev]);
    assert.ok(appeared(5000), `${wanted.join(', ')} appeared`);
    return wanted;
  }

  mount(dev: string): string {
    const dir = fs.mkdtempSync(path.join(this.dir, 'mnt-'));
    run('mount', [dev, dir]);
    this.mounts.push(dir);
    return dir;
  }

  cleanup(): void {
    const errors: string[] = [];
    for (const dir of this.mounts.reverse()) {
      try {
        run('umount', [dir]);
      } catch (err) {
        errors.push(`umount ${dir}: ${(err as Error).message}`);
        try {
          run('umount', ['--lazy', dir]);
        } catch {
          // reported above
        }
      }
    }
    for (const { dev, file } of this.loops.reverse()) {
      // Only our own binding: once detached, the number may serve someone else's file.
      if (backingFileOf(dev) !== file) continue;
      try {
        run('losetup', ['--detach', dev]);
      } catch (err) {
        errors.push(`losetup --detach ${dev}: ${(err as Error).message}`);
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(errors.join('\n'));
  }
}

function backingFileOf(dev: string): string {
  try {
    return fs.readFileSync(`/sys/block/${path.basename(dev)}/loop/backing_file`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** A test's body with a Rig that is cleaned up however the body ends. */
async function withRig(body: (rig: Rig) => void | Promise<void>): Promise<void> {
  const rig = new Rig();
  try {
    await body(rig);
  } finally {
    rig.cleanup();
  }
}

/** Two primary partitions: 8 MiB from sector 2048, the rest after it (sfdisk if present). */
function partition(file: string): void {
  if (hasCommand('sfdisk')) {
    run(
      'sfdisk',
      ['--quiet', file],
      'label: dos\nstart=2048, size=16384, type=83\nstart=18432, type=83\n',
    );
    return;
  }
  const sectors = fs.statSync(file).size / 512;
  const mbr = Buffer.alloc(512);
  const entries = [
    [2048, 16384],
    [18432, sectors - 18432],
  ];
  entries.forEach(([start, count], i) => {
    const entry = 446 + i * 16;
    mbr[entry + 4] = 0x83; // Linux
    mbr.writeUInt32LE(start, entry + 8);
    mbr.writeUInt32LE(count, entry + 12);
  });
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, mbr, 0, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
}

describe('live: this machine', () => {
  test('listDrives includes an attached loop device: backing file, size, 4096-byte sectors', async (t) => {
    if (!loopDevicesOr(t)) return;
    await withRig(async (rig) => {
      const image = rig.file('sectors4k.img', 8 * 2 ** 20);
      const dev = rig.attach(image, { sectorSize: 4096 });
      const drive = byPath(await listDrives(), dev);
      assert.deepEqual(drive, {
        path: dev,
        name: `${path.basename(fs.realpathSync(image))} (loop device)`,
        size: 8 * 2 ** 20,
        logicalBlockSize: 4096,
        bus: 'loop',
        removable: false,
        readOnly: false,
        mountpoints: [],
        holders: [],
        system: false,
        kind: 'block',
        serial: null,
        backingFile: fs.realpathSync(image),
      });
      assert.equal(verdictFor(drive, 'target').level, 'confirm');
      const info = describeBlockDevice(dev);
      assert.equal(info.logicalBlockSize, 4096);
      assert.equal(info.backingFile, fs.realpathSync(image));
      assert.equal(info.wholeDisk, dev);
      assert.deepEqual(destinationProblems(rig.file('source.img', 2 ** 20), dev), []);
    });
  });

  test('the disk holding / is the system drive; loop devices are not', async (t) => {
    const root = parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')).find(
      (u) => u.mountpoint === '/',
    );
    let devno = root?.devno ?? '0:0';
    if (devno.startsWith('0:') && root?.source.startsWith('/dev/')) {
      devno = devnoOf(fs.statSync(root.source, { bigint: true }).rdev);
    }
    if (devno.startsWith('0:')) {
      t.skip(`/ is ${root?.fstype} from ${root?.source}: on no block device here`);
      return;
    }
    const sysDir = fs.realpathSync(`/sys/dev/block/${devno}`);
    const disk = fs.existsSync(path.join(sysDir, 'partition')) ? path.dirname(sysDir) : sysDir;
    const diskPath = `/dev/${path.basename(disk)}`;
    const drives = await listDrives();
    assert.equal(byPath(drives, diskPath).system, true);
    assert.ok(byPath(drives, diskPath).mountpoints.includes('/'));
    assert.ok(drives.filter((d) => d.bus === 'loop').every((d) => !d.system));
    assert.equal(describeBlockDevice(diskPath).system, true);
    const problems = destinationProblems('/nonexistent-source.img', diskPath);
    assert.ok(problems.includes(`${diskPath} holds the running system`), problems.join(' | '));
  });

  test('destinationProblems: the same image file, by its path, a symlink or a hard link', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-same-'));
    try {
      const image = path.join(dir, 'a.img');
      fs.writeFileSync(image, Buffer.alloc(65536));
      fs.symlinkSync(image, path.join(dir, 'link.img'));
      fs.linkSync(image, path.join(dir, 'hard.img'));
      assert.deepEqual(destinationProblems(image, image), [`${image} is the source`]);
      for (const other of ['link.img', 'hard.img']) {
        const dest = path.join(dir, other);
        assert.deepEqual(destinationProblems(image, dest), [
          `${dest} is the source (same file as ${image})`,
        ]);
      }
      assert.deepEqual(destinationProblems(image, path.join(dir, 'b.img')), []);
      assert.deepEqual(destinationProblems(image, dir), [`${dir} is a folder`]);
      const nowhere = path.join(dir, 'no', 'such.img');
      assert.deepEqual(destinationProblems(image, nowhere), [
        `${nowhere} can't be created: folder ${path.join(dir, 'no')} does not exist`,
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('destinationProblems: the same device through a symlink; a loop over the source image', async (t) => {
    if (!loopDevicesOr(t)) return;
    await withRig(async (rig) => {
      const image = rig.file('source.img', 4 * 2 ** 20);
      const dev = rig.attach(image);
      const link = path.join(rig.dir, 'by-id-link');
      fs.symlinkSync(dev, link);
      assert.deepEqual(destinationProblems(link, dev), [
        `${dev} is the source (same device as ${link})`,
      ]);
      assert.deepEqual(destinationProblems(dev, link), [
        `${link} is the source (same device as ${dev})`,
      ]);
      assert.deepEqual(destinationProblems(image, dev), [
        `${dev} is a loop device backed by the source image ${image}`,
      ]);
      assert.deepEqual(destinationProblems(dev, image), [
        `the source ${dev} is a loop device backed by ${image}`,
      ]);
      const second = rig.attach(image);
      assert.match(destinationProblems(dev, second)[0], /are loop devices backed by the same file/);
      const drive = byPath(await listDrives(), dev);
      assert.equal(verdictFor(drive, 'target', { sourcePath: image }).level, 'refused');
      assert.equal(verdictFor(drive, 'target', { sourcePath: link }).level, 'refused');
    });
  });

  test('destinationProblems: a partition of the source, and the source a partition of the destination', async (t) => {
    if (!loopDevicesOr(t)) return;
    await withRig((rig) => {
      const image = rig.file('partitioned.img', 32 * 2 ** 20);
      partition(image);
      const dev = rig.attach(image, { partscan: true });
      const [p1, p2] = rig.partitions(dev, 2);
      const info = describeBlockDevice(dev);
      assert.deepEqual(info.partitions, [p1, p2]);
      assert.equal(describeBlockDevice(p1).wholeDisk, dev);
      assert.equal(describeBlockDevice(p1).size, 8 * 2 ** 20);
      assert.deepEqual(destinationProblems(dev, p1), [`${p1} is a partition of the source ${dev}`]);
      assert.deepEqual(destinationProblems(p2, dev), [`the source ${p2} is a partition of ${dev}`]);
      assert.deepEqual(destinationProblems(image, p1), [
        `${p1} is a partition of ${dev}, a loop device backed by the source ${image}`,
      ]);
      assert.match(
        destinationProblems(p1, image)[0],
        new RegExp(`^the source ${p1} is a partition of ${dev}`),
      );
      assert.deepEqual(
        destinationProblems(p1, p2),
        [],
        'two partitions of one disk do not overlap',
      );
    });
  });

  test('destinationProblems: a mounted loop device (or partition), its backing file, a file on the source', async (t) => {
    if (!loopDevicesOr(t)) return;
    await withRig(async (rig) => {
      const other = rig.file('other.img', 2 ** 20);
      const image = rig.file('fs.img', 32 * 2 ** 20);
      const dev = rig.attach(image);
      run('mkfs.ext4', ['-q', '-F', dev]);
      const dir = rig.mount(dev);
      assert.deepEqual(destinationProblems(other, dev), [`${dev} is mounted at ${dir}`]);
      assert.deepEqual(destinationProblems(other, dev, { allowMounted: true }), []);
      assert.deepEqual(describeBlockDevice(dev).mountpoints, [dir]);
      assert.deepEqual(destinationProblems(other, image), [
        `${image} is the backing file of ${dev}, which is mounted at ${dir}`,
      ]);
      const inside = path.join(dir, 'copy.img');
      assert.deepEqual(destinationProblems(dev, inside), [
        `${inside} is a file on the source ${dev}`,
      ]);
      assert.deepEqual(verdictFor(imageFileDrive(inside), 'target', { sourcePath: dev }), {
        level: 'refused',
        reasons: [`${inside} is a file on the source ${dev}`],
      });
      const drive = byPath(await listDrives(), dev);
      assert.deepEqual(drive.mountpoints, [dir]);
      assert.equal(verdictFor(drive, 'target').level, 'refused');
      assert.equal(verdictFor(drive, 'target', { allowMounted: true }).level, 'confirm');

      const disk = rig.file('disk.img', 32 * 2 ** 20);
      partition(disk);
      const whole = rig.attach(disk, { partscan: true });
      const [p1] = rig.partitions(whole, 2);
      run('mkfs.ext4', ['-q', '-F', p1]);
      const partDir = rig.mount(p1);
      assert.deepEqual(destinationProblems(other, whole), [`${whole} is mounted at ${partDir}`]);
    });
  });

  test('destinationProblems: a read-only loop device', async (t) => {
    if (!loopDevicesOr(t)) return;
    await withRig((rig) => {
      const dev = rig.attach(rig.file('ro.img', 2 ** 20), { readOnly: true });
      assert.deepEqual(destinationProblems(rig.file('src.img', 2 ** 20), dev), [
        `${dev} is read-only`,
      ]);
      assert.equal(describeBlockDevice(dev).readOnly, true);
    });
  });
});
