// The used-space case of the bench: a 4 GiB disk (GPT, four partitions — ext4, NTFS,
// exFAT, FAT32 — each about a quarter used, made by their own tools over random bytes
// so free space holds stale data), loop device to loop device: `clone --used-only`
// against the engine's full copy and against Debian's partclone (the table copied by
// sgdisk, then partclone.<fs> -b per partition, as a partclone-based tool does).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  MiB,
  engine,
  loops,
  makeSource,
  refuse,
  rows,
  scenario,
  sh,
  work,
  type Spec,
} from './bench-lib';

const GiB = 1024 * MiB;
const DISK = 4 * GiB;
const PART = 1000 * MiB;
const KINDS = ['ext4', 'ntfs', 'exfat', 'fat32'] as const;
const PARTCLONE: Record<(typeof KINDS)[number], string> = {
  ext4: 'partclone.ext4',
  ntfs: 'partclone.ntfs',
  exfat: 'partclone.exfat',
  fat32: 'partclone.fat32',
};
export const USED_CASE = 'used space, 4 partitions';

/** The kernel reads `dev`'s table again; waits for its partitions' nodes. */
function partitions(dev: string): string[] {
  sh('blockdev', ['--flushbufs', dev]);
  spawnSync('partx', ['--update', dev]);
  const nodes = KINDS.map((_, i) => `${dev}p${i + 1}`);
  for (let i = 0; i < 200 && nodes.some((n) => !fs.existsSync(n)); i++)
    spawnSync('sleep', ['0.05']);
  return nodes;
}

/** A quarter of a partition in files: a few big ones and many small. */
function fill(dir: string, seed: number): void {
  const bytes = PART / 4;
  const file = (name: string, size: number): void => {
    sh('dd', [
      'if=/dev/urandom',
      `of=${path.join(dir, name)}`,
      `bs=${size}`,
      'count=1',
      'status=none',
    ]);
  };
  fs.mkdirSync(path.join(dir, 'small'), { recursive: true });
  for (let i = 0; i < 3; i++) file(`big${seed}-${i}.bin`, Math.floor(bytes / 4));
  for (let i = 0; i < 64; i++) file(`small/f${seed}-${i}.dat`, Math.floor(bytes / 4 / 64));
}

/** The source disk; returns the bytes of files put on it. */
function makeDisk(file: string): number {
  process.stderr.write(`preparing the ${USED_CASE} source (${DISK / GiB} GiB)…\n`);
  makeSource(file, false, DISK);
  const layout = KINDS.flatMap((_, i) => ['-n', `${i + 1}:0:+${PART / MiB}M`]);
  sh('sgdisk', ['-Z', '-o', ...layout, '-t', '2:0700', '-t', '3:0700', '-t', '4:0700', file]);
  const dev = sh('losetup', ['-f', '--show', '-P', file]);
  try {
    const nodes = partitions(dev);
    const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
    KINDS.forEach((kind, i) => {
      const node = nodes[i];
      const files = fs.mkdtempSync(path.join(work, 'files-'));
      fill(files, i);
      const top = fs.readdirSync(files).map((f) => path.join(files, f));
      if (kind === 'ext4') sh('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', files, node]);
      else if (kind === 'fat32') {
        sh('mkfs.vfat', ['-F', '32', node]);
        sh('mcopy', ['-s', '-i', node, ...top, '::/']);
      } else {
        if (kind === 'ntfs') sh('mkntfs', ['-Q', '-F', '-q', node]);
        else sh('mkfs.exfat', [node]);
        sh(kind === 'ntfs' ? 'ntfs-3g' : 'mount.exfat-fuse', [node, mnt]);
        sh('cp', ['-r', ...top, mnt]);
        // A FUSE file system may still be busy a moment after its last write.
        for (let i = 0; spawnSync('umount', [mnt]).status !== 0; i++) {
          if (i === 50) refuse(`can't unmount ${mnt}`);
          spawnSync('sleep', ['0.1']);
        }
      }
      fs.rmSync(files, { recursive: true });
    });
    fs.rmdirSync(mnt);
  } finally {
    sh('losetup', ['-d', dev]);
  }
  return KINDS.length * (PART / 4);
}

/** Runs the case; its rows join the table; `notes` gets the bytes read and partclone's caveat. */
export async function usedSpaceCase(notes: string[]): Promise<void> {
  for (const tool of [...Object.values(PARTCLONE), 'sgdisk', 'mkntfs', 'ntfs-3g', 'mkfs.exfat'])
    if (spawnSync(tool, ['--version']).error) refuse(`${tool} not found`);
  if (fs.statfsSync('/dev/shm').bavail * fs.statfsSync('/dev/shm').bsize < 2.2 * DISK)
    refuse(
      `/dev/shm needs about ${Math.ceil((2.2 * DISK) / MiB)} MiB free for the used-space case`,
    );
  const src = path.join(work, 'disk.img');
  const dst = path.join(work, 'disk-copy.img');
  const used = makeDisk(src);
  fs.writeFileSync(dst, '');
  fs.truncateSync(dst, DISK);
  const from = sh('losetup', ['-f', '--show', '-P', '-r', src]);
  const to = sh('losetup', ['-f', '--show', '-P', dst]);
  loops.push(from, to);
  const srcParts = partitions(from);

  // Between rounds the copy is emptied: a contender that wrote nothing can't pass.
  const reset = (): void => {
    fs.truncateSync(dst, 0);
    fs.truncateSync(dst, DISK);
    sh('blockdev', ['--flushbufs', to]);
    spawnSync('partx', ['--update', to]);
  };
  const ntfsNotes = new Set<string>();
  const check = (who: string) => (): void => {
    const nodes = partitions(to);
    sh('e2fsck', ['-fn', nodes[0]]);
    sh('fsck.exfat', ['-n', nodes[2]]);
    sh('fsck.vfat', ['-n', nodes[3]]);
    const ntfs = spawnSync('ntfsfix', ['-n', nodes[1]], { encoding: 'utf8' });
    if (ntfs.status !== 0) {
      // partclone copies an NTFS's clusters only: not the backup boot sector past them.
      if (!/alternate boot sector/.test(ntfs.stdout))
        throw new Error(`${who}: ntfsfix -n: ${ntfs.stdout}`);
      ntfsNotes.add(`${who}: ntfsfix -n finds the NTFS copy's alternate (backup) boot sector BAD`);
    }
  };
  const script = [
    `sgdisk -R=${to} ${from} >/dev/null`,
    `partx --update ${to}`,
    ...KINDS.map(
      (kind, i) =>
        `${PARTCLONE[kind]} -q -b -s ${srcParts[i]} -o ${to}p${i + 1} -L ${path.join(work, 'partclone.log')} >/dev/null 2>&1`,
    ),
  ].join(' && ');
  const specs: [Spec, Spec, Spec] = [
    { name: 'full copy (engine)', cmd: () => engine(from, to), reset, check: check('full copy') },
    {
      name: 'engine --used-only',
      cmd: () => engine(from, to, '--used-only'),
      reset,
      check: check('--used-only'),
    },
    {
      name: 'partclone -b × 4',
      cmd: () => ['sh', ['-c', script]],
      reset,
      check: check('partclone'),
    },
  ];
  await scenario(USED_CASE, specs, used);
  const medians = rows
    .filter((r) => r[0] === USED_CASE)
    .map((r) => `${r[1]} ${r[3]} s`)
    .join(', ');
  notes.push(
    `${USED_CASE}: a ${DISK / GiB} GiB GPT disk, ${KINDS.join(', ')} of ${PART / MiB} MiB each, ` +
      `${(used / MiB).toFixed(0)} MiB of files on them (bytesRead: the engine's done event above); ` +
      `medians: ${medians}`,
    ...ntfsNotes,
  );
}
