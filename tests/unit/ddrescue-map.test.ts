import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import {
  finishedRegions,
  MapfileError,
  parseMapfile,
  type RescueMap,
} from '../../engine/store/ddrescue-map';
import { ddrescueMapfile, type MapReport } from '../../engine/store/map-export';
import { readRange, tempDir, writeRandomFile } from '../helpers/files';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const noDdrescue =
  spawnSync('ddrescue', ['--version']).status === 0 &&
  spawnSync('ddrescuelog', ['--version']).status === 0
    ? false
    : 'GNU ddrescue is not installed';

const tmp = tempDir('drivetwin-ddmap-');
after(() => tmp.cleanup());
const at = (name: string): string => path.join(tmp.dir, name);

function report(
  size: number,
  regionSize: number,
  hydrated: Array<[number, number]>,
  unreadable: MapReport['unreadable'] = [],
): MapReport {
  return {
    type: 'map',
    job: 1,
    size,
    regionSize,
    regionsTotal: Math.ceil(size / regionSize),
    regionsHydrated: hydrated.reduce((n, [, c]) => n + c, 0),
    hydrated: hydrated.map(([first, count]) => ({ first, count })),
    unreadable,
  };
}

/** Region indices, expanded from runs. */
const indices = (runs: Array<{ first: number; count: number }>): number[] =>
  runs.flatMap((r) => Array.from({ length: r.count }, (_, i) => r.first + i));

/** The map covers [0, size) without gaps, in order. */
function assertCovers(map: RescueMap, size: number): void {
  let pos = 0;
  for (const b of map.blocks) {
    assert.equal(b.pos, pos);
    pos += b.size;
  }
  assert.equal(pos, size);
}

test('round trip: our exported mapfile parses back to the same regions', () => {
  const cases: Array<[string, MapReport, number[]]> = [
    ['nothing hydrated', report(16 * MiB, MiB, []), []],
    ['everything hydrated', report(16 * MiB, MiB, [[0, 16]]), indices([{ first: 0, count: 16 }])],
    [
      'runs, short last region',
      report(10 * MiB + 1536, MiB, [
        [0, 3],
        [5, 1],
        [8, 3],
      ]),
      [0, 1, 2, 5, 8, 9, 10],
    ],
    [
      // A region holding an unreadable extent is not rescued: it must not come back finished.
      'unreadable extents',
      report(
        8 * MiB,
        MiB,
        [[0, 8]],
        [
          { offset: 2 * MiB - 512, length: 1024 },
          { offset: 6 * MiB + 4096, length: 512 },
        ],
      ),
      [0, 3, 4, 5, 7],
    ],
    [
      'past 4 GiB',
      report(6 * GiB + 512, 64 * MiB, [[80, 17]]),
      indices([{ first: 80, count: 17 }]),
    ],
  ];
  for (const [name, r, expected] of cases) {
    const map = parseMapfile(ddrescueMapfile(r));
    assertCovers(map, r.size!);
    assert.equal(map.currentStatus, r.regionsHydrated === r.regionsTotal ? '+' : '?', name);
    assert.equal(map.currentPass, 1);
    assert.deepEqual(indices(finishedRegions(map, r.size!, r.regionSize)), expected, name);
    // The same map read at a finer region size gives the same bytes.
    const fine = indices(finishedRegions(map, r.size!, r.regionSize / 4)).map((i) =>
      Math.floor(i / 4),
    );
    for (const i of expected) assert.ok(fine.includes(i), `${name}: region ${i} at 1/4 size`);
  }
});

test(
  'GNU ddrescue stopped part way: its mapfile parses, and its finished regions are on the destination',
  { skip: noDdrescue },
  () => {
    const src = at('src.img');
    const dst = at('dst.img');
    const map = at('rescue.map');
    const size = 8 * MiB;
    writeRandomFile(src, size, 1);
    // Three partial runs: the first MiB, 2.5 MiB at 3 MiB, then 640 KiB at 7 MiB.
    execFileSync('ddrescue', ['-q', '-s', '1MiB', src, dst, map]);
    execFileSync('ddrescue', ['-q', '-i', '3MiB', '-s', '2560KiB', src, dst, map]);
    execFileSync('ddrescue', ['-q', '-i', '7MiB', '-s', '640KiB', src, dst, map]);
    const text = fs.readFileSync(map, 'utf8');
    assert.match(text, /Created by GNU ddrescue/);
    const m = parseMapfile(text);
    assert.deepEqual(
      m.blocks.map((b) => [b.pos / KiB, b.size / KiB, b.status]),
      [
        [0, 1024, '+'],
        [1024, 2048, '?'],
        [3072, 2560, '+'],
        [5632, 1536, '?'],
        [7168, 640, '+'],
        [7808, 384, '?'],
      ],
    );
    assert.equal(m.currentStatus, '+');
    const regionSize = 512 * KiB;
    const finished = indices(finishedRegions(m, size, regionSize));
    // 3 MiB..5.5 MiB holds 5 whole 512 KiB regions; 7 MiB..7.625 MiB only one.
    assert.deepEqual(finished, [0, 1, 6, 7, 8, 9, 10, 14]);
    for (const i of finished) {
      assert.ok(
        readRange(src, i * regionSize, regionSize).equals(
          readRange(dst, i * regionSize, regionSize),
        ),
        `region ${i} is rescued on the destination`,
      );
    }
    // Our own export of those regions is accepted by ddrescuelog, which agrees on what is rescued.
    const ours = at('ours.map');
    fs.writeFileSync(
      ours,
      ddrescueMapfile(
        report(size, regionSize, [
          [0, 2],
          [6, 5],
          [14, 1],
        ]),
      ),
    );
    const out = execFileSync('ddrescuelog', ['-t', ours], { encoding: 'utf8' });
    assert.match(out, /rescued:\s+4194\s*kB/);
  },
);

test(
  'mapfiles made by ddrescuelog: every block status, annotations, an open-ended last block',
  { skip: noDdrescue },
  () => {
    const list = at('blocks.txt');
    const map = at('made.map');
    fs.writeFileSync(list, '0\n1\n2\n5\n9\n');
    for (const types of ['+-', '*/', '?-']) {
      fs.rmSync(map, { force: true });
      execFileSync('ddrescuelog', ['-b', '64KiB', `--create-mapfile=${types}`, map], {
        input: fs.readFileSync(list),
      });
      // -A adds a human-readable comment after every line.
      const annotated = execFileSync('ddrescuelog', ['-A', map], { encoding: 'utf8' });
      for (const text of [fs.readFileSync(map, 'utf8'), annotated]) {
        const m = parseMapfile(text);
        const [listed, other] = types;
        assert.deepEqual(
          m.blocks.slice(0, 5).map((b) => [b.pos / (64 * KiB), b.size / (64 * KiB), b.status]),
          [
            [0, 3, listed],
            [3, 2, other],
            [5, 1, listed],
            [6, 3, other],
            [9, 1, listed],
          ],
        );
        // ddrescuelog ends a map of unknown size with a block running to 2^63 - 1.
        const last = m.blocks[m.blocks.length - 1];
        assert.equal(last.status, other, types);
        assert.equal(last.pos + last.size, Number.MAX_SAFE_INTEGER);
        if (listed === '+')
          assert.deepEqual(indices(finishedRegions(m, 16 * 64 * KiB, 64 * KiB)), [0, 1, 2, 5, 9]);
      }
    }
    // A finished block running to 2^63 - 1 can't be of any device we hold.
    fs.rmSync(map, { force: true });
    execFileSync('ddrescuelog', ['-b', '64KiB', '--create-mapfile=-+', map], { input: '0\n' });
    assert.throws(
      () => parseMapfile(fs.readFileSync(map, 'utf8')),
      (e: unknown) => e instanceof MapfileError && /finished block ends past/.test(e.message),
    );
  },
);

test('numbers in hex, octal and decimal, comments, blank lines, CRLF, no current_pass', () => {
  const text = [
    '# Mapfile. Created by hand',
    '',
    '   # indented comment',
    '4096 ?\r',
    '0          0x1000   +   # hex size',
    '010000     4096     -',
    '8192       020000   /',
    '0x4000     0X1000   *',
    '0x5000     +4096    +',
    '',
  ].join('\n');
  const m = parseMapfile(text);
  assert.equal(m.currentPos, 4096);
  assert.equal(m.currentStatus, '?');
  assert.equal(m.currentPass, 1);
  assert.deepEqual(m.blocks, [
    { pos: 0, size: 4096, status: '+' },
    { pos: 4096, size: 4096, status: '-' },
    { pos: 8192, size: 8192, status: '/' },
    { pos: 16384, size: 4096, status: '*' },
    { pos: 20480, size: 4096, status: '+' },
  ]);
  // Only whole 4 KiB regions inside '+' blocks: 0 and 5 (region 6 lies past the size).
  assert.deepEqual(indices(finishedRegions(m, 24 * KiB, 4 * KiB)), [0, 5]);
  assert.deepEqual(indices(finishedRegions(m, 24 * KiB, 8 * KiB)), []);
  // A map that starts after 0: the gap is non-tried.
  const late = parseMapfile('0 +\n0x2000 0x2000 +\n');
  assert.deepEqual(indices(finishedRegions(late, 16 * KiB, 4 * KiB)), [2, 3]);
  // Adjacent '+' blocks join; a short last region counts when finished up to the size.
  const joined = parseMapfile('0 + 1\n0 0x800 +\n0x800 0x1800 +\n0x2000 0x800 +\n');
  assert.deepEqual(finishedRegions(joined, 10 * KiB, 4 * KiB), [{ first: 0, count: 3 }]);
  // An empty map (size 0 at 0) is allowed, as ddrescue allows it.
  assert.deepEqual(parseMapfile('0 ?\n0 0 ?\n').blocks, []);
});

test('malformed mapfiles are refused, naming the line', () => {
  const head = '# Mapfile\n0x0 ? 1\n';
  const cases: Array<[string, number, RegExp]> = [
    ['', 0, /no status line/],
    ['# only comments\n\n', 0, /no status line/],
    ['0x0\n', 1, /status line/],
    ['0x0 Q 1\n', 1, /not a current status/],
    ['zz ? 1\n', 1, /current_pos/],
    ['0 ? 0\n', 1, /current_pass/],
    [`${head}0x0 0x1000 +\n0x1000 0x1000 x\n`, 4, /not a block status/],
    [`${head}0x0 0x1000 +\n0x1000 0x1000\n`, 4, /pos size status/],
    [`${head}0x0 0x1000 + extra\n`, 3, /pos size status/],
    [`${head}0x0 0xZZ +\n`, 3, /size "0xZZ"/],
    [`${head}-5 0x10 +\n`, 3, /pos "-5"/],
    [`${head}08 0x10 +\n`, 3, /pos "08"/], // 0-prefixed: octal, and 8 is no octal digit
    [`${head}0x0 0x1000 +\n0x2000 0x1000 ?\n`, 4, /gap/],
    [`${head}0x0 0x1000 +\n\n# c\n0x800 0x1000 ?\n`, 6, /overlaps/],
    [`${head}0x0 0x1000 +\n0x1000 0 ?\n`, 4, /empty/],
    [`${head}0x0 0x7FFFFFFFFFFFFFFF ?\n0x7FFFFFFFFFFFFFFF 1 ?\n`, 4, /runs to the end/],
  ];
  for (const [text, line, message] of cases) {
    assert.throws(
      () => parseMapfile(text),
      (e: unknown) =>
        e instanceof MapfileError &&
        e.line === line &&
        message.test(e.message) &&
        (line === 0 || e.message.startsWith(`mapfile line ${line}: `)),
      JSON.stringify(text),
    );
  }
});

test('finished data past the source size is refused: the map is of another device', () => {
  const m = parseMapfile('0 +\n0 0x200000 +\n');
  assert.throws(() => finishedRegions(m, MiB, 64 * KiB), /past the source's 1048576 bytes/);
  // Non-finished blocks past the size are fine (ddrescue's maps of unknown size).
  const open = parseMapfile('0 ?\n0 0x80000 +\n0x80000 0x7FFFFFFFFFF80000 ?\n');
  assert.deepEqual(finishedRegions(open, MiB, 64 * KiB), [{ first: 0, count: 8 }]);
});
