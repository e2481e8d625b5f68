// A test's own folder, job database and loop devices, all removed when the test ends.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir, writeRandomFile } from './files';
import { attachLoop, type LoopDevice } from './loop';

export interface Workspace {
  dir: string;
  db: string;
  file(name: string): string;
  /** A loop device over `file`, detached when the test ends. */
  attach(file: string, opts?: Parameters<typeof attachLoop>[1]): LoopDevice;
  /** A loop device over a new file of `size` bytes: random from `seed`, else zeros. */
  loop(name: string, size: number, opts?: { seed?: number; sectorSize?: 512 | 4096 }): LoopDevice;
}

export function workspace(t: TestContext, prefix: string): Workspace {
  const tmp = tempDir(`drivetwin-${prefix}-`);
  const loops: LoopDevice[] = [];
  t.after(() => {
    for (const l of loops.reverse()) l.detach();
    tmp.cleanup();
  });
  const file = (name: string): string => path.join(tmp.dir, name);
  const attach: Workspace['attach'] = (f, opts) => {
    const l = attachLoop(f, opts);
    loops.push(l);
    return l;
  };
  return {
    dir: tmp.dir,
    db: file('jobs.db'),
    file,
    attach,
    loop(name, size, opts = {}) {
      const f = file(name);
      if (opts.seed === undefined) {
        fs.writeFileSync(f, '');
        fs.truncateSync(f, size);
      } else writeRandomFile(f, size, opts.seed);
      return attach(f, { sectorSize: opts.sectorSize });
    },
  };
}
