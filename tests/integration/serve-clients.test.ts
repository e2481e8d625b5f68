// The destination served over NBD while it copies (`clone … --serve SOCKET`), used by
// Debian's own clients: nbdinfo describes it, nbdcopy reads it whole (equal to the
// source while most of it is not copied yet), and an ext4 on it is mounted through
// nbdfuse and a loop device, read, written — and the file written is on the finished
// destination, which e2fsck finds clean. Refused where it can't be served.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli, spawnCli, explain, only } from '../helpers/cli';
import { sha256, writeRandomFile } from '../helpers/files';
import { requireRoot } from '../helpers/loop';
import { attachExport } from '../helpers/nbd';
import { serveRun } from '../helpers/serve';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

/** Regions on the destination by the next progress event: at most this many were when it was asked. */
async function hydratedNow(run: ReturnType<typeof spawnCli>): Promise<number> {
  const seen = run.events.length;
  const next = await run.waitEvent((e) => e.type === 'progress' && run.events.indexOf(e) >= seen);
  return (
    (next.regionsHydrated as number) + (next.regionsWritten as number) + (next.hydrating as number)
  );
}

/** Clients count as the tools in Debian's libnbd-bin: present, or the test says what to install. */
function requireTools(t: { skip(why: string): void }, tools: string[]): boolean {
  const missing = tools.filter((tool) => {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return true;
  const why = `${missing.join(', ')} missing (Debian: apt-get install libnbd-bin nbdfuse)`;
  if (process.env.CI === 'true') throw new Error(why);
  t.skip(why);
  return false;
}

test('at --max-rate 10M, nbdinfo describes the served copy and nbdcopy of it equals the source', async (t) => {
  if (!requireTools(t, ['nbdinfo', 'nbdcopy'])) return;
  const env = workspace(t, 'serve-copy');
  const size = 48 * MIB;
  const src = env.file('src.img');
  writeRandomFile(src, size, 71);
  const dst = env.file('dst.img');
  const { run, serving, socket } = await serveRun(t, env, ['clone', src, dst, '--max-rate', '10M']);
  assert.equal(serving.uri, `nbd+unix:///?socket=${socket}`);
  const info = JSON.parse(
    execFileSync('nbdinfo', ['--json', serving.uri as string], { encoding: 'utf8' }),
  );
  const disk = info.exports[0];
  assert.equal(disk['export-size'], size);
  assert.equal(disk['export-name'], 'job-1');
  for (const can of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn']) {
    assert.equal(disk[can], true, can);
  }
  assert.equal(disk.is_read_only, false);

  const out = env.file('out.img');
  execFileSync('nbdcopy', [serving.uri as string, out]);
  const regionsThen = await hydratedNow(run);
  assert.ok(
    regionsThen < 24,
    `most of the copy is still to do when nbdcopy ends (${regionsThen}/48)`,
  );
  assert.equal(sha256(out), sha256(src), 'nbdcopy of the served disk equals the source');
  t.diagnostic(`nbdcopy read the served disk whole with ${regionsThen} of 48 regions copied`);

  const r = await run.done;
  assert.equal(r.code, 0, explain(r));
  assert.equal(only(r, 'done').state, 'done');
  assert.equal(sha256(dst), sha256(src));
  const closed = r.events.filter((e) => e.type === 'serve').pop();
  assert.equal(closed?.state, 'closed');
  assert.equal(fs.existsSync(socket), false, 'the socket is gone with the copy');
});

test('an ext4 on the served copy, mounted through nbdfuse and a loop device, reads right under 20 % copied; a file written there is on the finished destination', async (t) => {
  if (!requireRoot(t) || !requireTools(t, ['nbdfuse', 'mkfs.ext4', 'e2fsck', 'debugfs'])) return;
  const env = workspace(t, 'serve-ext4');
  const size = 256 * MIB;
  const content = env.file('content');
  fs.mkdirSync(content);
  const files = Array.from({ length: 6 }, (_, i) => path.join(content, `f${i}.bin`));
  files.forEach((f, i) => writeRandomFile(f, 3 * MIB + i * 4096, 80 + i));
  // Random bytes under the file system (not holes): every region is read and copied.
  const src = env.file('src.img');
  writeRandomFile(src, size, 79);
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', content, src]);
  const dst = env.file('dst.img');
  const { run, serving } = await serveRun(t, env, ['clone', src, dst, '--max-rate', '10M']);
  const attached = await attachExport(serving.uri as string, size);
  t.after(() => attached.detach());
  const mnt = env.file('mnt');
  fs.mkdirSync(mnt);
  execFileSync('mount', [attached.loop.path, mnt]);
  let unmounted = false;
  t.after(() => {
    if (!unmounted) execFileSync('umount', [mnt]);
  });
  for (const f of files) {
    assert.equal(sha256(path.join(mnt, path.basename(f))), sha256(f), `${f} through the mount`);
  }
  const readAt = await hydratedNow(run);
  assert.ok(readAt < 0.2 * 256, `the files were read with ${readAt} of 256 regions copied`);
  t.diagnostic(`6 files read through the mount with ${readAt}/256 regions copied`);

  const written = env.file('written.bin');
  writeRandomFile(written, 5 * MIB + 123, 90);
  fs.copyFileSync(written, path.join(mnt, 'written.bin'));
  execFileSync('sync', ['-f', path.join(mnt, 'written.bin')]);
  // The copy ends while the file system is mounted: the disk stays served until it goes.
  const waiting = await run.waitEvent((e) => e.type === 'serve' && e.state === 'waiting', 120_000);
  assert.ok((waiting.clients as number) > 0);
  const after = env.file('after.bin');
  writeRandomFile(after, 2 * MIB, 91);
  fs.copyFileSync(after, path.join(mnt, 'after.bin'));
  execFileSync('umount', [mnt]);
  unmounted = true;
  attached.detach();

  const r = await run.done;
  assert.equal(r.code, 0, explain(r));
  assert.equal(only(r, 'done').state, 'done');
  execFileSync('e2fsck', ['-fn', dst], { stdio: 'pipe' }); // exit 0: clean
  for (const [name, want] of [
    ['written.bin', written],
    ['after.bin', after],
    [path.basename(files[0]), files[0]],
  ]) {
    const got = env.file(`got-${name}`);
    execFileSync('debugfs', ['-R', `dump /${name} ${got}`, dst], { stdio: 'pipe' });
    assert.equal(sha256(got), sha256(want), `${name} on the finished destination`);
  }
});

test('what can not be served is refused before anything is written, and says why', async (t) => {
  const env = workspace(t, 'serve-refused');
  const src = env.file('src.img');
  writeRandomFile(src, 4 * MIB, 72);
  const dst = env.file('dst.img');
  const socket = env.file('disk.sock');
  execFileSync('xz', ['-k', '-0', src]);
  const cases: Array<[string[], RegExp]> = [
    [[`${src}.xz`, dst, '--serve', socket], /read as a stream .* decompress it first/],
    [[src, env.file('backup.img.zst'), '--serve', socket], /compressed backup, written in order/],
    [[src, dst, '--sequential', '--serve', socket], /--sequential writes in order/],
    [[src, dst, '--serve', env.file('no/such/dir.sock')], /folder of the socket .* does not exist/],
    [[src, dst, '--serve', src], /exists and is not a socket/],
  ];
  for (const [args, why] of cases) {
    const r = await runCli(['clone', ...args, '--json'], { db: env.db });
    assert.equal(r.code, 2, explain(r));
    assert.match(r.stderr, why);
    assert.match(r.stderr, /--serve: /);
    assert.equal(fs.existsSync(dst), false, `${args.join(' ')}: nothing written`);
    assert.equal(fs.existsSync(env.file('backup.img.zst')), false);
  }
});
