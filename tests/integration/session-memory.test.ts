// Memory stays bounded in bytes: the CLI at any region size, and the engine host over a
// session of ten verified copies of every kind, back down when idle.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { listDrives } from '../../engine/drives/list';
import { sleep, startBackend } from '../helpers/backend';
import { sha256, tempDir, writeMixedFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'drivetwin.js');

/** VmHWM (peak resident set) and VmRSS of a process, in MiB. */
function memoryOf(pid: number): { peak: number; now: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
  return { peak: kib('VmHWM') / 1024, now: kib('VmRSS') / 1024 };
}

/** Runs the CLI to the end; its peak RSS, read from /proc until it exits. */
async function cliPeak(args: string[], db: string): Promise<{ code: number | null; peak: number }> {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, DRIVETWIN_DB: db },
    stdio: 'ignore',
  });
  let peak = 0;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, memoryOf(child.pid!).peak);
    } catch {
      // exited between two reads
    }
  }, 20);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(timer);
  return { code, peak };
}

test('the CLI stays under 200 MiB resident at every region size, 4K to 1G, copy and verify', async (t) => {
  const env = workspace(t, 'mem-cli');
  const src = env.file('src.img');
  // 1.5 GiB: random data at a few places, holes elsewhere (reads as zeros).
  fs.writeFileSync(src, '');
  fs.truncateSync(src, 1536 * MIB);
  const fd = fs.openSync(src, 'r+');
  for (const at of [0, 700 * MIB, 1500 * MIB]) {
    const chunk = Buffer.alloc(8 * MIB);
    for (let i = 0; i < chunk.length; i += 4096) chunk.writeUInt32LE((at + i) >>> 0, i);
    fs.writeSync(fd, chunk, 0, chunk.length, at);
  }
  fs.closeSync(fd);
  for (const size of ['4K', '1M', '128M', '1G']) {
    const dst = env.file(`dst-${size}.img`);
    const r = await cliPeak(['clone', src, dst, '--region-size', size, '--verify'], env.db);
    t.diagnostic(`--region-size ${size}: peak RSS ${r.peak.toFixed(0)} MiB`);
    assert.equal(r.code, 0, `--region-size ${size} exited ${r.code}`);
    assert.equal(sha256(dst), sha256(src));
    assert.ok(r.peak < 200, `--region-size ${size}: ${r.peak.toFixed(0)} MiB resident`);
    fs.rmSync(dst);
  }
});

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
    peak = Math.max(peak, memoryOf(pid).peak);
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
