// Memory stays bounded in bytes in the engine host over a session of ten verified copies
// of every kind, and comes back down when idle (the CLI's bound: memory-bound.test.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { listDrives } from '../../engine/drives/list';
import { sleep, startBackend } from '../helpers/backend';
import { sha256, tempDir, writeMixedFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';

const MIB = 1024 * 1024;

/** VmHWM (peak resident set) and VmRSS of a process, in MiB. */
function memoryOf(pid: number): { peak: number; now: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
  return { peak: kib('VmHWM') / 1024, now: kib('VmRSS') / 1024 };
}

test('the engine host over ten verified copies of every kind: peak under 200 MiB, idle under 120 MiB', async (t) => {
  if (!requireRoot(t)) return;
  const tmp = tempDir('drivetwin-mem-host-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  const h = startBackend(t, { dbPath: file('jobs.db'), listDrives });
  const loops: string[] = [];
  t.after(() => loops.forEach((l) => execFileSync('losetup', ['-d', l])));
  const loop = (name: string, size: number): string => {
    fs.writeFileSync(file(name), '');
    fs.truncateSync(file(name), size);
    const dev = execFileSync('losetup', ['--find', '--show', file(name)], {
      encoding: 'utf8',
    }).trim();
    loops.push(dev);
    return dev;
  };
  writeMixedFile(file('src.img'), 96 * MIB, 31);
  execFileSync('sh', ['-c', `xz -T2 -1 -k -c ${file('src.img')} > ${file('src.img.xz')}`]);
  const [l1, l2, l3] = [loop('l1', 96 * MIB), loop('l2', 96 * MIB), loop('l3', 96 * MIB)];
  const copies: Array<{ source: string; targets: string[] }> = [
    { source: file('src.img'), targets: [l1, l2] },
    { source: file('src.img.xz'), targets: [l3] },
    { source: l1, targets: [file('backup.img.zst')] },
    { source: file('src.img'), targets: [file('a.img'), file('b.img')] },
    { source: l2, targets: [file('c.img')] },
    { source: file('backup.img.zst'), targets: [file('d.img')] },
    { source: file('src.img'), targets: [l1, l2] },
    { source: file('src.img.xz'), targets: [file('e.img')] },
    { source: l3, targets: [file('f.img.zst')] },
    { source: file('src.img'), targets: [file('g.img')] },
  ];
  let peak = 0;
  for (const copy of copies) {
    const { job } = await h.call('startClone', {
      source: copy.source,
      targets: copy.targets.map((p) => ({
        path: p,
        confirmed: p.startsWith('/dev/') ? true : undefined,
      })),
      options: { verify: true },
      fresh: true,
    });
    const pid = h.engine.jobPid(job)!;
    const done = await h.waitFor('done', (d) => d.job === job);
    assert.equal(
      done.verified,
      true,
      `${copy.source} → ${copy.targets.join(', ')}: ${JSON.stringify(done)}`,
    );
    const now = memoryOf(pid).peak;
    if (now > peak)
      t.diagnostic(`peak ${now.toFixed(0)} MiB after ${copy.source} → ${copy.targets.join(', ')}`);
    peak = Math.max(peak, now);
  }
  const pid = (await h.engine.pid())!;
  await sleep(1500);
  const idle = memoryOf(pid).now;
  t.diagnostic(
    `engine host over ten verified copies: peak ${peak.toFixed(0)} MiB, idle ${idle.toFixed(0)} MiB`,
  );
  assert.ok(peak < 200, `peak ${peak.toFixed(0)} MiB`);
  assert.ok(idle < 120, `idle ${idle.toFixed(0)} MiB`);
  assert.equal(sha256(file('g.img')), sha256(file('src.img')));
});
