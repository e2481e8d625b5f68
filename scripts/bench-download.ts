// The bench's download case (bench.ts runs it): a .img.xz (xz -T2, many blocks) of the
// bench size, served on 127.0.0.1 by Node's own http (the tests' file server: Range, ETag),
// its URL cloned onto a loop device against `curl -s URL | xz -dc | dd` onto the same one.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { startServer } from '../tests/helpers/http-server';
import {
  CHUNK,
  MiB,
  SIZE,
  VERIFY,
  engine,
  loops,
  makeSource,
  scenario,
  sh,
  work,
} from './bench-lib';

export const DOWNLOAD_CASE = 'URL .img.xz → loop';

/** Adds the case's rows; returns a note on the file served. */
export async function downloadCase(src: string): Promise<string> {
  process.stderr.write(`preparing the ${DOWNLOAD_CASE} source (${SIZE / MiB} MiB)…\n`);
  makeSource(src, true, SIZE);
  const packed = path.join(work, 'disk.img.xz');
  sh('sh', ['-c', `xz -T2 -0 -c '${src}' > '${packed}'`]);
  // What is served is all that is needed: the image goes, and the copies are checked
  // against the .xz decompressed again (untimed), which keeps /dev/shm within bounds.
  fs.rmSync(src);
  const dst = path.join(work, 'download-dst.img');
  fs.writeFileSync(dst, '');
  fs.truncateSync(dst, SIZE);
  const loop = sh('losetup', ['-f', '--show', dst]);
  loops.push(loop);
  const server = await startServer();
  server.serve('disk.img.xz', packed);
  const url = server.url('disk.img.xz');
  const scrub = (): void => {
    if (VERIFY)
      sh('dd', [
        'if=/dev/zero',
        `of=${loop}`,
        'bs=4M',
        'oflag=direct',
        `count=${SIZE / CHUNK}`,
        'status=none',
      ]);
  };
  const check = (): void => {
    if (VERIFY) sh('sh', ['-c', `xz -dc -T2 '${packed}' | cmp - '${loop}'`]);
  };
  const dd = `dd of='${loop}' bs=4M iflag=fullblock oflag=direct conv=fsync status=none`;
  try {
    await scenario(DOWNLOAD_CASE, [
      {
        name: 'curl | xz -dc | dd',
        cmd: () => ['sh', ['-c', `curl -sSf '${url}' | xz -dc | ${dd}`]],
        reset: scrub,
        check,
      },
      { name: 'engine', cmd: () => engine(url, loop), reset: scrub, check },
    ]);
  } finally {
    await server.close();
  }
  const share = ((fs.statSync(packed).size / SIZE) * 100).toFixed(1);
  fs.rmSync(packed);
  return `${DOWNLOAD_CASE}: ${SIZE / MiB} MiB image compressed to ${share}%, served over http on 127.0.0.1 (Node's http, Range and ETag)`;
}
