// A compressed source is read forwards only: when a batch is copied in several pieces —
// under a rate cap, or with regions bigger than one I/O — no other batch's read may make
// the stream skip the rest of it. Both copies end identical (both failed with "a
// compressed image is read forwards only" before).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { explain, expectExit, only, runCli } from '../helpers/cli';
import { sha256, writeRandomFile } from '../helpers/files';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

for (const [label, compress, flags] of [
  ['.xz, 16 MiB regions (two I/Os each)', ['xz', '-T2', '-0', '-k'], ['--region-size', '16M']],
  [
    '.gz under a 4 MiB/s cap (a tenth of a second per I/O)',
    ['gzip', '-1', '-k'],
    ['--max-rate', '4M'],
  ],
] as const) {
  test(`${label}: identical`, async (t) => {
    const env = workspace(t, 'compressed-order');
    const image = env.file('image.img');
    writeRandomFile(image, 24 * MIB, 101);
    execFileSync(compress[0], [...compress.slice(1), image]);
    const src = `${image}.${compress[0] === 'xz' ? 'xz' : 'gz'}`;
    const dst = env.file('dst.img');
    const r = await runCli(['clone', src, dst, ...flags, '--json'], { db: env.db });
    expectExit(r, 0);
    assert.equal(only(r, 'done').state, 'done', explain(r));
    assert.equal(sha256(dst), sha256(image));
  });
}
