// The handlers reject hundreds of generated malformed and unsafe calls with a clear
// error, and none of them reaches the engine: no job is created, nothing is written.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { METHODS } from '../../preload/api';
import { startBackend } from '../helpers/backend';
import { sha256, tempDir, writeRandomFile } from '../helpers/files';

const MIB = 1024 * 1024;

/** mulberry32: a tiny seeded generator, so a failure can be replayed. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  return { next, int, pick };
}

type Rng = ReturnType<typeof random>;

const SCALARS: unknown[] = [
  undefined,
  null,
  true,
  false,
  0,
  -1,
  1.5,
  NaN,
  Infinity,
  -Infinity,
  2 ** 60,
  '',
  '1',
  'x',
  '\0',
  'a'.repeat(5000),
  '../../etc/passwd',
  'dst.img',
  '/dev/null\0/x',
  '🙂',
];

function anyValue(rng: Rng, depth = 0): unknown {
  const kind = depth > 2 ? 0 : rng.int(4);
  if (kind === 0 || kind === 1) return rng.pick(SCALARS);
  if (kind === 2) return Array.from({ length: rng.int(4) }, () => anyValue(rng, depth + 1));
  const keys = [
    'source',
    'targets',
    'options',
    'path',
    'confirmed',
    '__proto__',
    'constructor',
    'job',
    'x',
  ];
  const o: Record<string, unknown> = {};
  for (let i = rng.int(4); i > 0; i--) {
    Object.defineProperty(o, rng.pick(keys), {
      value: anyValue(rng, depth + 1),
      enumerable: true,
      configurable: true,
      writable: true,
    });
  }
  return o;
}

const BAD_JOB_IDS: unknown[] = [0, -1, 1.5, '1', null, NaN, 2 ** 60, {}, [], true, Infinity];

/** A valid request with one thing made wrong; every mutation here must be refused. */
function badClone(rng: Rng, src: string, dst: string, dir: string): unknown {
  const request: Record<string, unknown> = {
    source: src,
    targets: [{ path: dst }],
    options: { threshold: 8, batch: 4 },
  };
  const mutations: Array<() => void> = [
    () => delete request.source,
    () => (request.source = rng.pick(['', 5, null, '\0x', 'a'.repeat(5000), 'src.img', {}, []])),
    () => (request.source = path.join(dir, 'missing.img')),
    () => (request.source = dir), // a folder
    () => delete request.targets,
    () =>
      (request.targets = rng.pick([
        [],
        'x',
        null,
        [{}],
        [{ path: 5 }],
        [{ path: dst, extra: 1 }],
        [{ path: dst, confirmed: 'yes' }],
        [{ path: dst, allowMounted: 1 }],
        [{ path: dst, confirmSystemName: 7 }],
        [{ path: dst }, { path: dst }],
        [{ path: src }],
        [{ path: 'relative.img' }],
        [{ path: path.join(dir, 'no-such-folder', 'x.img') }],
        [{ path: dir }],
        Array.from({ length: 17 }, (_, i) => ({ path: path.join(dir, `t${i}.img`) })),
      ])),
    () => (request.targets = [{ path: dst, confirmSystemName: 'not a system drive' }]),
    () =>
      (request.options = rng.pick([
        { threshold: 0 },
        { threshold: 4097 },
        { threshold: 1.5 },
        { batch: 64 },
        { threshold: 4, batch: 8 },
        { regionSize: 3000 },
        { regionSize: 2048 },
        { regionSize: 2 ** 31 },
        { throttle: 0 },
        { throttle: 101 },
        { throttle: '50' },
        { maxRate: -1 },
        { maxRate: 1.5 },
        { maxRate: 2 ** 60 },
        { sparse: 'yes' },
        { verify: 1 },
        { ignoreErrors: null },
        { unknown: true },
        null,
        'fast',
        [],
      ])),
    () => (request[rng.pick(['extra', 'job', 'confirmed'])] = anyValue(rng)),
  ];
  rng.pick(mutations)();
  const args = [request];
  if (rng.int(8) === 0) args.push(anyValue(rng) as Record<string, unknown>);
  return args;
}

function badArgs(rng: Rng, method: (typeof METHODS)[number]): unknown[] {
  switch (method) {
    case 'pause':
    case 'resume':
    case 'cancel':
    case 'forgetJob':
    case 'verify':
    case 'regionMap':
      return rng.int(4) === 0 ? [] : [rng.pick(BAD_JOB_IDS), ...(rng.int(3) === 0 ? [1] : [])];
    case 'setThrottle':
      return rng.pick([
        [rng.pick(BAD_JOB_IDS), { percent: 50 }],
        [1],
        [1, {}],
        [1, { percent: rng.pick([0, 101, 1.5, '50', null]) }],
        [1, { maxRate: rng.pick([-1, 1.5, '1M', null]) }],
        [1, { percent: 50, other: 1 }],
      ]);
    case 'resumeJob':
      return rng.pick([
        [rng.pick(BAD_JOB_IDS)],
        [1, { confirmed: 'yes' }],
        [1, { options: { sparse: true } }],
        [1, 2],
      ]);
    case 'exportMap':
      return rng.pick([[1], [1, 'xml'], [rng.pick(BAD_JOB_IDS), 'json'], [1, 'json', 3]]);
    case 'listDrives':
      return rng.pick([
        [null],
        ['/dev/sda'],
        [{ source: 5 }],
        [{ allowSystem: 'yes' }],
        [{ x: 1 }],
        [{}, {}],
      ]);
    case 'pickImageToOpen':
    case 'pickImageToSave':
      return rng.pick([[5], [null], [''], ['relative.img'], ['/x\0y'], [{}], ['/tmp', '/tmp']]);
    case 'forgetImage':
      return rng.pick([
        [5, 'source'],
        ['/x.img'],
        ['/x.img', 'both'],
        [null, 'target'],
        ['/x.img', 'source', 1],
      ]);
    case 'driveContents':
      return rng.pick([
        [5],
        [''],
        ['relative.img'],
        ['/x\0y'],
        ['/no/such/place.img'],
        ['/dev/null'],
        ['/tmp', '/tmp'],
      ]);
    case 'listFolder':
      return rng.pick([[5], ['relative'], ['/etc'], [null], ['/tmp', 1]]);
    case 'ejectDrive':
      return rng.pick([[5], [], ['relative'], ['/dev/no-such-drive'], ['/tmp']]);
    case 'usedSpace':
      return rng.pick([
        [5],
        [],
        ['relative.img'],
        ['/no/such.img'],
        ['/dev/null', 3],
        ['/tmp', 1 << 40],
      ]);
    case 'capabilities':
    case 'listJobs':
      return [anyValue(rng) ?? 0];
    case 'startClone':
    case 'planClone':
      return [anyValue(rng)];
  }
}

test('hundreds of generated malformed or unsafe calls are refused clearly, and nothing is written', async (t) => {
  const tmp = tempDir('drivetwin-backend-fuzz-');
  t.after(() => tmp.cleanup());
  const file = (name: string): string => path.join(tmp.dir, name);
  const src = file('src.img');
  const dst = file('dst.img');
  writeRandomFile(src, 4 * MIB, 10);
  writeRandomFile(dst, 4 * MIB, 11);
  const before = { src: sha256(src), dst: sha256(dst) };
  const h = startBackend(t, { dbPath: file('jobs.db') });

  const seed = Number(process.env.FUZZ_SEED ?? 20240611);
  const rng = random(seed);
  const codes = new Map<string, number>();
  let cases = 0;
  const check = async (method: string, args: unknown[]): Promise<void> => {
    cases += 1;
    const reply = await h.backend.call(method, args);
    const shown = () => `${method}(${JSON.stringify(args)?.slice(0, 300)}) [seed ${seed}]`;
    assert.equal(reply.ok, false, `accepted: ${shown()}`);
    if (reply.ok) return;
    assert.ok(
      ['invalid', 'refused', 'not-found'].includes(reply.error.code),
      `${reply.error.code}: ${shown()}`,
    );
    assert.ok(
      reply.error.message.length >= 10,
      `unclear error "${reply.error.message}": ${shown()}`,
    );
    assert.doesNotMatch(reply.error.message, /undefined|\[object Object\]|TypeError/, shown());
    codes.set(reply.error.code, (codes.get(reply.error.code) ?? 0) + 1);
  };

  for (let i = 0; i < 250; i++)
    await check('startClone', badClone(rng, src, dst, tmp.dir) as unknown[]);
  for (let i = 0; i < 200; i++) {
    const method = rng.pick(METHODS);
    await check(method, badArgs(rng, method));
  }
  for (let i = 0; i < 30; i++)
    await check(rng.pick(['', 'on', 'constructor', '__proto__', 'eval', 'toString']), [
      anyValue(rng),
    ]);
  // Well-formed but about jobs that don't run: answered without a job being made.
  for (const method of ['pause', 'resume', 'cancel'] as const) await check(method, [1]);
  await check('setThrottle', [1, { percent: 50 }]);

  t.diagnostic(`${cases} cases: ${[...codes].map(([c, n]) => `${n} ${c}`).join(', ')}`);
  assert.ok(cases >= 400);
  assert.ok((codes.get('invalid') ?? 0) >= 300);
  const reached = h.commands.filter((c) => c.type !== 'list-jobs');
  assert.deepEqual(reached, [], 'no malformed call reached the engine');
  assert.deepEqual(await h.call('listJobs'), []);
  assert.equal(sha256(dst), before.dst);
  assert.equal(sha256(src), before.src);
  assert.deepEqual(
    fs
      .readdirSync(tmp.dir)
      .filter((f) => !f.startsWith('jobs.db'))
      .sort(),
    ['dst.img', 'src.img'],
  );
});
