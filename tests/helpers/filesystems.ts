// Partitioned disk images holding every file system a used-only copy reads, made by
// their own tools on a loop device's partitions (mkfs.ext4 -d; mkntfs, then ntfs-3g;
// mkfs.exfat, then mount.exfat-fuse; mkfs.vfat, then mcopy) over random bytes, so
// free space holds stale data; some files are deleted after, leaving more. Then what
// those tools say of a copy: each file system's checker, its files mounted (the
// kernel for ext4, FUSE for NTFS and exFAT; mtools for FAT, which this kernel can't
// mount) and hashed, and how much each one uses by its own count.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { sha256, writeRandomFile } from './files';
import { partsOf, rescan, run } from './partitioned';
import type { Workspace } from './workspace';

const MIB = 1024 * 1024;

export type FsName = 'ext4' | 'ntfs' | 'exfat' | 'fat32' | 'fat16' | 'swap' | 'raw';

/** `size` bytes for a partition holding `fs`, `fill` bytes of files on it (a third more deleted). */
export interface PartSpec {
  fs: FsName;
  size: number;
  fill: number;
}

export interface MadePartition {
  number: number;
  offset: number;
  length: number;
  fs: FsName;
  /** Relative path → sha256 of the files left on it. */
  files: Map<string, string>;
}

const TOOLS = ['mkfs.ext4', 'mkntfs', 'ntfs-3g', 'ntfsfix', 'mkfs.exfat', 'mount.exfat-fuse'];
const MORE = ['fsck.exfat', 'dump.exfat', 'mkfs.vfat', 'mcopy', 'mdir', 'mkswap', 'sgdisk'];

/** The file system tools are there; else skipped (failed under CI=true). */
export function requireFsTools(t: TestContext): boolean {
  const missing = [...TOOLS, ...MORE].filter(
    (c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).error !== undefined,
  );
  if (missing.length === 0) return true;
  if (process.env.CI === 'true') throw new Error(`CI requires ${missing.join(', ')}`);
  t.skip(`${missing.join(', ')} not installed`);
  return false;
}

/** Files of `total` bytes in all (a few big ones, several small), under `dir`. */
function makeFiles(dir: string, total: number, seed: number): void {
  fs.mkdirSync(path.join(dir, 'sub', 'deeper'), { recursive: true });
  const sizes = [0.5, 0.25, 0.1].map((f) => Math.floor(total * f));
  const rest = total - sizes.reduce((a, b) => a + b, 0);
  for (let i = 0; i < 20; i++) sizes.push(Math.floor(rest / 20) - i * 11);
  sizes.forEach((size, i) => {
    const where = i < 3 ? `big${i}.bin` : i % 2 ? `sub/f${i}.dat` : `sub/deeper/g${i}.dat`;
    writeRandomFile(path.join(dir, where), size, seed * 100 + i);
  });
  fs.writeFileSync(path.join(dir, 'sub', 'empty'), '');
}

/** Relative path → sha256 of every file under `dir`. */
export function hashTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) out.set(r, sha256(path.join(dir, r)));
    }
  };
  walk('');
  return out;
}

/** `dev` mounted at a fresh folder: by the kernel (ext4) or FUSE (NTFS, exFAT). */
export function mount(
  env: Workspace,
  dev: string,
  fsName: FsName,
  ro: boolean,
): { dir: string; unmount(): void } {
  const dir = fs.mkdtempSync(path.join(env.dir, 'mnt-'));
  const opts = ro ? ['-o', 'ro'] : [];
  if (fsName === 'ext4') run('mount', ['-t', 'ext4', '-o', ro ? 'ro,noload' : 'rw', dev, dir]);
  else if (fsName === 'ntfs') run('ntfs-3g', [...opts, dev, dir]);
  else if (fsName === 'exfat') run('mount.exfat-fuse', [...opts, dev, dir]);
  else throw new Error(`${fsName} can't be mounted here`);
  return {
    dir,
    unmount() {
      // A FUSE file system may still be busy a moment after its last write.
      for (let tries = 0; ; tries++) {
        const r = spawnSync('umount', [dir], { encoding: 'utf8' });
        if (r.status === 0) break;
        if (tries === 50) throw new Error(`umount ${dir}: ${r.stderr}`);
        spawnSync('sleep', ['0.1']);
      }
      fs.rmdirSync(dir);
    },
  };
}

/** `dev` mounted while `fn` runs. */
export function withMounted<T>(
  env: Workspace,
  dev: string,
  fsName: FsName,
  ro: boolean,
  fn: (dir: string) => T,
): T {
  const m = mount(env, dev, fsName, ro);
  try {
    return fn(m.dir);
  } finally {
    m.unmount();
  }
}

/** The files of a FAT partition, copied out with mtools (this kernel has no vfat). */
function fatFiles(env: Workspace, dev: string): Map<string, string> {
  const dir = fs.mkdtempSync(path.join(env.dir, 'fat-'));
  run('mcopy', ['-s', '-n', '-i', dev, '::/*', dir]);
  const files = hashTree(dir);
  fs.rmSync(dir, { recursive: true });
  return files;
}

/** The files on a partition, as its file system gives them back. */
export function filesOn(env: Workspace, dev: string, fsName: FsName): Map<string, string> {
  if (fsName === 'fat32' || fsName === 'fat16') return fatFiles(env, dev);
  return withMounted(env, dev, fsName, true, hashTree);
}

/** Makes `fs` on `dev` and puts `fill` bytes of files on it; a third more are deleted after. */
function makeFilesystem(
  env: Workspace,
  dev: string,
  spec: PartSpec,
  seed: number,
): Map<string, string> {
  if (spec.fs === 'raw') return new Map();
  if (spec.fs === 'swap') {
    run('mkswap', ['-q', dev]);
    return new Map();
  }
  const keep = env.file(`files-${seed}`);
  const drop = env.file(`drop-${seed}`);
  makeFiles(keep, spec.fill, seed);
  makeFiles(drop, Math.floor(spec.fill / 3), seed + 50);
  const dropped = [...hashTree(drop).keys()].map((r) => `gone/${r}`);
  fs.renameSync(drop, path.join(keep, 'gone'));
  if (spec.fs === 'ext4') {
    run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', keep, dev]);
    for (const r of dropped) run('debugfs', ['-w', '-R', `rm /${r}`, dev]);
  } else if (spec.fs === 'ntfs' || spec.fs === 'exfat') {
    if (spec.fs === 'ntfs') run('mkntfs', ['-Q', '-F', '-q', dev]);
    else run('mkfs.exfat', [dev]);
    withMounted(env, dev, spec.fs, false, (dir) => {
      run('cp', ['-r', `${keep}/.`, dir]);
      fs.rmSync(path.join(dir, 'gone'), { recursive: true });
    });
  } else {
    run('mkfs.vfat', ['-F', spec.fs === 'fat32' ? '32' : '16', dev]);
    const top = fs.readdirSync(keep).map((n) => path.join(keep, n));
    run('mcopy', ['-s', '-i', dev, ...top, '::/']);
    run('mdeltree', ['-i', dev, '::/gone']);
  }
  fs.rmSync(path.join(keep, 'gone'), { recursive: true });
  const files = hashTree(keep);
  fs.rmSync(keep, { recursive: true });
  return files;
}

/** The kernel reads `disk`'s table again; waits for the node of every partition in `numbers`. */
export function partitionNodes(disk: string, numbers: number[]): void {
  rescan(disk);
  const until = Date.now() + 10_000;
  const missing = (): string[] =>
    numbers.map((n) => `${disk}p${n}`).filter((node) => !fs.existsSync(node));
  while (missing().length > 0 && Date.now() < until) spawnSync('sleep', ['0.05']);
  assert.deepEqual(missing(), [], `the partitions of ${disk} appear`);
}

/** GPT (or MBR) partition types, by what they hold. */
const TYPES: Record<FsName, [string, string]> = {
  ext4: ['8300', '83'],
  ntfs: ['0700', '7'],
  exfat: ['0700', '7'],
  fat32: ['0700', 'c'],
  fat16: ['0700', 'e'],
  swap: ['8200', '82'],
  raw: ['8300', '83'],
};

/**
 * A disk image of `size` random bytes with a GPT (or an MBR, its fourth partition and
 * on logical ones) of `specs` from 1 MiB, each partition made and filled as it says.
 */
export function multiFsImage(
  env: Workspace,
  name: string,
  size: number,
  table: 'gpt' | 'mbr',
  specs: PartSpec[],
  seed: number,
): { file: string; parts: MadePartition[] } {
  const file = env.file(name);
  writeRandomFile(file, size, seed);
  if (table === 'gpt') {
    const args = specs.flatMap((s, i) => [
      '-n',
      `${i + 1}:0:+${s.size / MIB}M`,
      '-t',
      `${i + 1}:${TYPES[s.fs][0]}`,
    ]);
    run('sgdisk', ['-Z', '-o', ...args, file]);
  } else {
    const line = (s: PartSpec): string => `size=${s.size / 512}, type=${TYPES[s.fs][1]}\n`;
    const primaries = specs.length > 4 ? specs.slice(0, 3) : specs;
    const logicals = specs.length > 4 ? specs.slice(3) : [];
    const script =
      primaries.map(line).join('') +
      (logicals.length ? 'type=5\n' + logicals.map(line).join('') : '');
    run('sfdisk', ['--quiet', file], `label: dos\n${script}`);
  }
  const found = partsOf(file).filter((p) => table === 'gpt' || specs.length <= 4 || p.number !== 4);
  assert.equal(found.length, specs.length, 'every partition made');
  const loop = env.attach(file, { partscan: true });
  try {
    partitionNodes(
      loop.path,
      found.map((p) => p.number),
    );
    const parts = found.map((p, i) => {
      const files = makeFilesystem(env, `${loop.path}p${p.number}`, specs[i], seed + i + 1);
      return { ...p, fs: specs[i].fs, files };
    });
    run('blockdev', ['--flushbufs', loop.path]);
    return { file, parts };
  } finally {
    loop.detach();
  }
}

/** Bytes a file system on `dev` uses, by its own tools' count. */
export function usedByTools(dev: string, fsName: FsName, length: number): number {
  const num = (text: string, re: RegExp): number => Number(re.exec(text)![1]);
  switch (fsName) {
    case 'ext4': {
      const h = run('dumpe2fs', ['-h', dev]);
      const bs = num(h, /^Block size:\s+(\d+)/m);
      return (num(h, /^Block count:\s+(\d+)/m) - num(h, /^Free blocks:\s+(\d+)/m)) * bs;
    }
    case 'ntfs':
      return length - num(run('ntfscluster', ['-i', dev]), /bytes of free space\s*:\s*(\d+)/);
    case 'exfat': {
      const d = run('dump.exfat', [dev]);
      return length - num(d, /Free Clusters:\s*(\d+)/) * num(d, /Cluster size:\s*(\d+)/);
    }
    case 'fat32':
    case 'fat16':
      return length - num(run('mdir', ['-i', dev, '::/']).replace(/ /g, ''), /(\d+)bytesfree/);
    case 'swap':
      return 4096;
    case 'raw':
      return length;
  }
}

/** Its checker, in no-change mode, passes. */
export function checkFilesystem(dev: string, fsName: FsName): void {
  const checker: Partial<Record<FsName, [string, string[]]>> = {
    ext4: ['e2fsck', ['-fn', dev]],
    ntfs: ['ntfsfix', ['-n', dev]],
    exfat: ['fsck.exfat', ['-n', dev]],
    fat32: ['fsck.vfat', ['-n', dev]],
    fat16: ['fsck.vfat', ['-n', dev]],
  };
  const c = checker[fsName];
  if (!c) return;
  const r = spawnSync(c[0], c[1], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${c[0]} ${c[1].join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
}

/**
 * Every partition of `copy` (a file, attached here, or a drive) passes its checker and
 * holds the source's files; the same partitions at the same places.
 */
export function assertCopied(
  env: Workspace,
  copy: string,
  parts: MadePartition[],
  log: (m: string) => void,
): void {
  const dev = fs.statSync(copy).isBlockDevice()
    ? null
    : env.attach(copy, { partscan: true, readOnly: true });
  const disk = dev?.path ?? copy;
  try {
    partitionNodes(
      disk,
      parts.map((p) => p.number),
    );
    for (const p of parts) {
      const node = `${disk}p${p.number}`;
      checkFilesystem(node, p.fs);
      if (p.files.size === 0) continue;
      assert.deepEqual(
        filesOn(env, node, p.fs),
        p.files,
        `partition ${p.number} (${p.fs}): its files`,
      );
      log(`partition ${p.number} (${p.fs}): checker clean, ${p.files.size} files equal`);
    }
  } finally {
    dev?.detach();
  }
}
