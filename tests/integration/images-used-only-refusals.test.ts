// `clone --used-only` of a partitioned disk refuses, naming the partition and writing
// nothing, when one of its file systems can't be trusted: an NTFS marked dirty, one
// Windows hibernated onto (ntfs-3g refuses to mount it read-write too), an exFAT
// whose allocation bitmap lies past its partition, an NTFS whose $Bitmap does, an
// ext4 bigger than its partition — and when a partition is mounted.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli, explain, only } from '../helpers/cli';
import { readRange, sha256, writeRandomFile } from '../helpers/files';
import {
  type MadePartition,
  type PartSpec,
  mount,
  multiFsImage,
  partitionNodes,
  requireFsTools,
  withMounted,
} from '../helpers/filesystems';
import { requireRoot } from '../helpers/loop';
import { run } from '../helpers/partitioned';
import { markNtfsDirty, ntfsAttribute, patch } from '../helpers/used-space';
import { type Workspace, workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const SPECS: PartSpec[] = [
  { fs: 'ext4', size: 96 * MIB, fill: 20 * MIB },
  { fs: 'ntfs', size: 96 * MIB, fill: 20 * MIB },
  { fs: 'exfat', size: 64 * MIB, fill: 10 * MIB },
];
const SIZE = 260 * MIB;

function disk(
  env: Workspace,
  name: string,
  seed: number,
): { file: string; parts: MadePartition[] } {
  return multiFsImage(env, name, SIZE, 'gpt', SPECS, seed);
}

test('refused with the partition named, nothing written', async (t) => {
  if (!requireRoot(t) || !requireFsTools(t)) return;
  const env = workspace(t, 'used-parts-refuse');
  const dst = env.file('dst.img');
  writeRandomFile(dst, SIZE, 2500);
  const before = sha256(dst);
  const refused = async (source: string, why: RegExp, db = env.db): Promise<string> => {
    const r = await runCli(['clone', source, dst, '--used-only', '--json'], { db });
    assert.equal(r.code, 2, explain(r));
    assert.match(r.stderr, why, explain(r));
    assert.ok(!r.events.some((e) => e.type === 'start'), 'no job started');
    assert.equal(only(r, 'error').fatal, true);
    assert.equal(sha256(dst), before, 'the destination was written');
    return r.stderr.trim();
  };

  await t.test('an NTFS marked dirty (and its mirror): ntfsclone refuses it too', async (st) => {
    const { file, parts } = disk(env, 'dirty.img', 2510);
    markNtfsDirty(file, parts[1].offset);
    const loop = env.attach(file, { partscan: true, readOnly: true });
    partitionNodes(loop.path, [1, 2, 3]);
    const theirs = spawnSync('ntfsclone', ['--save-image', '-O', env.file('x'), `${loop.path}p2`], {
      encoding: 'utf8',
    });
    loop.detach();
    assert.match(`${theirs.stdout}${theirs.stderr}`, /scheduled for a check or it was shutdown/);
    st.diagnostic(await refused(file, /partition 2 of .*dirty.img: ntfs .*marked dirty/));
  });

  await t.test('an NTFS Windows hibernated onto (hiberfil.sys begins "hibr")', async (st) => {
    const { file } = disk(env, 'hiber.img', 2520);
    const loop = env.attach(file, { partscan: true });
    partitionNodes(loop.path, [1, 2, 3]);
    const p2 = `${loop.path}p2`;
    withMounted(env, p2, 'ntfs', false, (dir) => {
      const header = Buffer.alloc(64 * 1024);
      header.write('hibr');
      fs.writeFileSync(path.join(dir, 'hiberfil.sys'), header);
    });
    const mnt = fs.mkdtempSync(path.join(env.dir, 'mnt-'));
    const ntfs3g = spawnSync('ntfs-3g', [p2, mnt], { encoding: 'utf8' });
    if (ntfs3g.status === 0) run('umount', [mnt]);
    assert.match(`${ntfs3g.stdout}${ntfs3g.stderr}`, /hibernated/, 'ntfs-3g refuses it read-write');
    loop.detach();
    st.diagnostic(await refused(file, /partition 2 of .*hiber.img: ntfs .*hibernated/));
  });

  await t.test('an exFAT whose allocation bitmap lies past its partition', async (st) => {
    const { file, parts } = disk(env, 'exfat.img', 2530);
    const p = parts[2];
    const boot = readRange(file, p.offset, 512);
    const sector = 2 ** boot[108];
    const cluster = sector * 2 ** boot[109];
    const root = p.offset + boot.readUInt32LE(88) * sector + (boot.readUInt32LE(96) - 2) * cluster;
    const dir = readRange(file, root, cluster);
    let at = 0;
    while (dir[at] !== 0x81) at += 32;
    const first = Buffer.alloc(4);
    first.writeUInt32LE(boot.readUInt32LE(92) + 1000);
    patch(file, root + at + 20, first);
    st.diagnostic(
      await refused(
        file,
        /partition 3 of .*exfat.img: exfat .*allocation bitmap at cluster \d+ lies outside/,
      ),
    );
  });

  await t.test('an NTFS whose $Bitmap points past its partition', async (st) => {
    const { file, parts } = disk(env, 'bitmap.img', 2540);
    const data = ntfsAttribute(file, parts[1].offset, 6, 0x80);
    const pairs = data + readRange(file, data + 32, 2).readUInt16LE(0);
    const header = readRange(file, pairs, 1)[0];
    const lcnAt = pairs + 1 + (header & 0x0f);
    const lcnBytes = header >> 4;
    const far = Buffer.alloc(lcnBytes);
    far.writeUIntLE(2 ** (8 * lcnBytes - 1) - 1, 0, lcnBytes); // the largest forward jump it holds
    patch(file, lcnAt, far);
    st.diagnostic(
      await refused(
        file,
        /partition 2 of .*bitmap.img: ntfs .*\$Bitmap points at clusters .* past the volume/,
      ),
    );
  });

  await t.test('an ext4 bigger than its partition', async (st) => {
    const { file } = disk(env, 'ext4.img', 2550);
    run('sgdisk', ['-d', '1', '-n', '1:2048:+64M', '-t', '1:8300', file]);
    st.diagnostic(
      await refused(
        file,
        /partition 1 of .*ext4.img: ext4 .*says it is \d+ bytes but its space holds only \d+/,
      ),
    );
  });

  await t.test(
    'a mounted partition: of the drive, or of the loop device over the image',
    async (st) => {
      const { file } = disk(env, 'mounted.img', 2560);
      const loop = env.attach(file, { partscan: true });
      partitionNodes(loop.path, [1, 2, 3]);
      for (const [p, fsName] of [
        [1, 'ext4'],
        [2, 'ntfs'],
      ] as const) {
        const m = mount(env, `${loop.path}p${p}`, fsName, true);
        try {
          const named = new RegExp(`${loop.path}p${p} is mounted at ${m.dir}`);
          st.diagnostic(await refused(loop.path, named));
          st.diagnostic(await refused(file, named));
        } finally {
          m.unmount();
        }
      }
    },
  );
});
