// What a download is checked against, and what is said when it can't be had: --sha256
// (or a .sha256 file next to the URL) hashes the whole download — right: verified, wrong:
// failed, never done, even after a resume; redirects followed within limits; 404 and 500
// said plainly with nothing written; an untrusted certificate refused; the environment's
// proxy used. All on 127.0.0.1.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { expectExit, only, runCli, spawnCli } from '../helpers/cli';
import { sha256, tempDir, writeMixedFile } from '../helpers/files';
import { startProxy, startServer, testCertificate, type TestServer } from '../helpers/http-server';

const MIB = 1024 * 1024;
const SIZE = 48 * MIB + 512;

let dir = '';
let cleanup = (): void => undefined;
let server: TestServer;
let plain: TestServer;
let want = '';
let xzHash = '';
let env: Record<string, string> = {};

const file = (name: string): string => path.join(dir, name);
const NO_PROXY_ENV = { HTTPS_PROXY: '', HTTP_PROXY: '', https_proxy: '', http_proxy: '' };

before(async () => {
  ({ dir, cleanup } = tempDir('drivetwin-download-checks-'));
  writeMixedFile(file('disk.img'), SIZE, 31);
  want = sha256(file('disk.img'));
  execFileSync('sh', ['-c', 'xz -T2 -0 -c disk.img > disk.img.xz'], { cwd: dir });
  xzHash = createHash('sha256')
    .update(fs.readFileSync(file('disk.img.xz')))
    .digest('hex');
  fs.writeFileSync(file('right.sha256'), `${xzHash}  checked.img.xz\n`);
  fs.writeFileSync(file('wrong.sha256'), `${'0'.repeat(64)} *lying.img.xz\n`);
  server = await startServer({ tls: testCertificate(dir) });
  plain = await startServer();
  for (const name of ['disk.img.xz', 'checked.img.xz', 'lying.img.xz']) {
    server.serve(name, file('disk.img.xz'));
  }
  server.serve('checked.img.xz.sha256', file('right.sha256'));
  server.serve('lying.img.xz.sha256', file('wrong.sha256'));
  server.redirect('latest.img.xz', '/mirror/a');
  server.redirect('mirror/a', server.url('disk.img.xz'), 301);
  server.redirect('loop-a', '/loop-b');
  server.redirect('loop-b', '/loop-a');
  plain.serve('disk.img.xz', file('disk.img.xz'));
  server.redirect('downgrade.img.xz', plain.url('disk.img.xz'));
  server.fail('missing.img.xz', 404);
  server.fail('broken.img.xz', 500);
  env = {
    ...NO_PROXY_ENV,
    NODE_EXTRA_CA_CERTS: server.certificate!,
    DRIVETWIN_HTTP_RETRY_DELAY: '0.1',
  };
});

after(async () => {
  await server?.close();
  await plain?.close();
  cleanup();
});

let runs = 0;
function paths() {
  runs += 1;
  return { dest: file(`out-${runs}.img`), db: file(`jobs-${runs}.db`) };
}

type Download = { sha256: { hex: string; from: string } | null; sha256Matched: boolean | null };

test('--sha256 right: the whole download hashed as it passes, verified', async () => {
  const { dest, db } = paths();
  const r = await runCli(
    ['clone', server.url('disk.img.xz'), dest, '--json', '--sha256', xzHash.toUpperCase()],
    { db, env },
  );
  expectExit(r, 0);
  assert.equal(sha256(dest), want);
  const download = only(r, 'done').download as Download;
  assert.deepEqual(download.sha256, { hex: xzHash, from: 'given' });
  assert.equal(download.sha256Matched, true);
});

test('--sha256 wrong: failed for good — never done, a resume refused saying why', async () => {
  const { dest, db } = paths();
  const wrong = 'ab'.repeat(32);
  const r = await runCli(['clone', server.url('disk.img.xz'), dest, '--json', '--sha256', wrong], {
    db,
    env,
  });
  expectExit(r, 1);
  const done = only(r, 'done');
  assert.equal(done.state, 'failed');
  assert.match(String(done.error), new RegExp(`SHA-256 is ${xzHash}, not ${wrong}`));
  assert.equal((done.download as Download).sha256Matched, false);
  // What was written is not the file expected: a resume would keep it. Nothing to offer.
  assert.equal(done.resumable, false);
  const again = await runCli(['resume', String(done.job), '--json'], { db, env });
  expectExit(again, 2);
  assert.match(again.stderr + again.stdout, /can.t be resumed: .*SHA-256/);
  const jobs = await runCli(['jobs', '--json'], { db, env });
  assert.equal(only(jobs, 'job').state, 'failed');
});

test('kill -9 mid-download with --sha256, then resume: identical and verified', async (t) => {
  server.misbehave({ rate: 8 * MIB });
  t.after(() => server.misbehave({}));
  const { dest, db } = paths();
  const args = ['clone', server.url('disk.img.xz'), dest, '--json', '--sha256', xzHash];
  const run = spawnCli(args, { db, env });
  const start = await run.waitEvent((e) => e.type === 'start');
  await run.waitEvent((e) => e.type === 'progress' && (e.regionsHydrated as number) > 8);
  run.child.kill('SIGKILL');
  await run.done;
  server.misbehave({});
  const r = await runCli(['resume', String(start.job), '--json'], { db, env });
  expectExit(r, 0);
  assert.ok((only(r, 'start').regionsHydrated as number) > 8);
  assert.equal(sha256(dest), want);
  assert.equal((only(r, 'done').download as Download).sha256Matched, true);
});

test('a .sha256 next to the URL is found and checked: right verified, wrong failed', async () => {
  const right = paths();
  const ok = await runCli(['clone', server.url('checked.img.xz'), right.dest, '--json'], {
    db: right.db,
    env,
  });
  expectExit(ok, 0);
  const checked = only(ok, 'done').download as Download;
  assert.deepEqual(checked.sha256, { hex: xzHash, from: server.url('checked.img.xz.sha256') });
  assert.equal(checked.sha256Matched, true);
  const lying = paths();
  const bad = await runCli(['clone', server.url('lying.img.xz'), lying.dest, '--json'], {
    db: lying.db,
    env,
  });
  expectExit(bad, 1);
  assert.match(
    String(only(bad, 'done').error),
    /from https:\/\/127\.0\.0\.1:\d+\/lying\.img\.xz\.sha256/,
  );
});

test('redirects are followed, and the job keeps the URL it was given', async () => {
  const { dest, db } = paths();
  const r = await runCli(['clone', server.url('latest.img.xz'), dest, '--json'], { db, env });
  expectExit(r, 0);
  assert.equal(sha256(dest), want);
  assert.equal(only(r, 'start').source, server.url('latest.img.xz'));
});

for (const [name, words] of [
  ['loop-a', /more than 10 redirects/],
  ['downgrade.img.xz', /redirected from https to plain http .*refused/],
  ['missing.img.xz', /there is no file at this address \(check the URL\) \(HTTP 404 Not Found\)/],
  ['broken.img.xz', /the server failed \(an error on its side\): try again later \(HTTP 500/],
] as const) {
  test(`${name}: refused in plain words, nothing written`, async () => {
    const { dest, db } = paths();
    const r = await runCli(['clone', server.url(name), dest, '--json'], { db, env });
    expectExit(r, 2);
    assert.match(r.stderr, words);
    assert.equal(fs.existsSync(dest), false, 'no destination made');
  });
}

test('a certificate nobody vouches for is refused, nothing written', async () => {
  const { dest, db } = paths();
  const untrusting = { ...NO_PROXY_ENV, NODE_EXTRA_CA_CERTS: '' };
  const r = await runCli(['clone', server.url('disk.img.xz'), dest], { db, env: untrusting });
  expectExit(r, 2);
  assert.match(r.stderr, /certificate can't be trusted \(DEPTH_ZERO_SELF_SIGNED_CERT/);
  assert.equal(fs.existsSync(dest), false);
});

test("the environment's proxy is used (CONNECT), except for NO_PROXY hosts", async (t) => {
  const proxy = await startProxy();
  t.after(() => proxy.close());
  const through = paths();
  const viaProxy = { ...env, HTTPS_PROXY: proxy.url, NO_PROXY: '' };
  // A tunnel left open would keep the command up long after the copy (it did, 90 s).
  const r = await runCli(['clone', server.url('disk.img.xz'), through.dest], {
    db: through.db,
    env: viaProxy,
    timeoutMs: 30_000,
  });
  expectExit(r, 0);
  assert.equal(sha256(through.dest), want);
  const port = new URL(server.url('x')).port;
  assert.ok(proxy.connects.length > 0 && proxy.connects.every((c) => c === `127.0.0.1:${port}`));
  const seen = proxy.connects.length;
  const direct = paths();
  const bypass = await runCli(['clone', server.url('disk.img.xz'), direct.dest], {
    db: direct.db,
    env: { ...viaProxy, NO_PROXY: 'localhost,127.0.0.1' },
  });
  expectExit(bypass, 0);
  assert.equal(proxy.connects.length, seen, 'NO_PROXY: straight to the server');
});

test('bad requests are refused: a malformed --sha256, --sha256 for a file, a URL destination', async () => {
  const { dest, db } = paths();
  const cases: Array<[string[], RegExp]> = [
    [['clone', server.url('disk.img.xz'), dest, '--sha256', 'xyz'], /64 hexadecimal digits/],
    [['clone', file('disk.img'), dest, '--sha256', xzHash], /--sha256 checks a download/],
    [['clone', file('disk.img'), server.url('out.img')], /a destination can't be a URL/],
  ];
  for (const [args, words] of cases) {
    const r = await runCli(args, { db, env });
    expectExit(r, 2);
    assert.match(r.stderr, words);
  }
  assert.equal(fs.existsSync(dest), false);
});
