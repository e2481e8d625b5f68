import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ddrescueMapfile, regionMapReport, type MapReport } from '../../engine/store/map-export';
import type { JobRecord } from '../../engine/store/job-record';
import { RegionMap } from '../../engine/store/region-map';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Block {
  pos: number;
  size: number;
  status: string;
}

/** Parses a mapfile, checking every line's shape on the way. */
function parse(text: string): {
  current: { pos: number; status: string; pass: string };
  blocks: Block[];
} {
  const lines = text.split('\n');
  assert.equal(lines[lines.length - 1], '', 'ends with a newline');
  const data = lines.slice(0, -1).filter((l) => !l.startsWith('#'));
  const hex = /^0x[0-9A-F]{8,}$/;
  const [pos, status, pass] = data[0].trim().split(/\s+/);
  assert.match(pos, hex);
  const blocks = data.slice(1).map((line) => {
    const fields = line.trim().split(/\s+/);
    assert.equal(fields.length, 3, line);
    assert.match(fields[0], hex, line);
    assert.match(fields[1], hex, line);
    assert.match(fields[2], /^[?+-]$/, line);
    return { pos: parseInt(fields[0], 16), size: parseInt(fields[1], 16), status: fields[2] };
  });
  return { current: { pos: parseInt(pos, 16), status, pass }, blocks };
}

/** Blocks cover [0, size) in order, without gaps or overlaps, and no two neighbours share a status. */
function assertCovers(blocks: Block[], size: number): void {
  let at = 0;
  blocks.forEach((b, i) => {
    assert.equal(b.pos, at, `block ${i} starts at ${b.pos}, expected ${at}`);
    assert.ok(b.size > 0, `block ${i} is empty`);
    if (i > 0)
      assert.notEqual(blocks[i - 1].status, b.status, `blocks ${i - 1} and ${i} should be merged`);
    at += b.size;
  });
  assert.equal(at, size);
}

function report(
  size: number,
  regionSize: number,
  set: Array<[number, number]>,
  unreadable: MapReport['unreadable'] = [],
): MapReport {
  const regionsTotal = Math.ceil(size / regionSize);
  const map = new RegionMap(regionsTotal);
  for (const [first, count] of set) map.setRange(first, count);
  const job = { id: 7, sourceSize: size, regionSize, regionsTotal } as JobRecord;
  return regionMapReport(job, map, unreadable);
}

const hasDdrescuelog = spawnSync('ddrescuelog', ['--version']).status === 0;

/** ddrescuelog -t accepts the mapfile and its summary agrees with ours. */
function checkWithDdrescuelog(
  text: string,
  expect: { rescued: number; nonTried: number; bad: number },
): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-map-'));
  try {
    const file = path.join(dir, 'job.map');
    fs.writeFileSync(file, text);
    const out = execFileSync('ddrescuelog', ['-t', file], { encoding: 'utf8' });
    // ddrescuelog prints sizes with units; compare its percentages instead of parsing units.
    const pct = (label: string): number => {
      const m = new RegExp(`${label}:.*\\(\\s*([\\d.]+)%\\)`).exec(out);
      assert.ok(m, `no "${label}" in ddrescuelog output:\n${out}`);
      return Number(m[1]);
    };
    const total = expect.rescued + expect.nonTried + expect.bad;
    assert.ok(Math.abs(pct('rescued') - (100 * expect.rescued) / total) < 0.006, out);
    assert.ok(Math.abs(pct('non-tried') - (100 * expect.nonTried) / total) < 0.006, out);
    assert.ok(Math.abs(pct('bad-sector') - (100 * expect.bad) / total) < 0.006, out);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('a partly hydrated map becomes finished and non-tried blocks covering the whole source', () => {
  const r = report(16 * MiB, MiB, [
    [0, 3],
    [5, 1],
    [10, 6],
  ]);
  const text = ddrescueMapfile(r);
  const { current, blocks } = parse(text);
  assertCovers(blocks, 16 * MiB);
  assert.deepEqual(
    blocks.map((b) => [b.pos / MiB, b.size / MiB, b.status]),
    [
      [0, 3, '+'],
      [3, 2, '?'],
      [5, 1, '+'],
      [6, 4, '?'],
      [10, 6, '+'],
    ],
  );
  // Unfinished: the current position is not the end and the status is non-tried.
  assert.equal(current.status, '?');
  assert.equal(current.pass, '1');
  assert.ok(text.startsWith('# Mapfile. Created by DriveTwin (job 7)\n'));
  assert.ok(
    text.includes('\n0x00300000  0x00200000  ?\n'),
    'positions and sizes as 0x + 8 upper-case hex digits',
  );
});

test('a map with nothing hydrated is one non-tried block', () => {
  const { blocks, current } = parse(ddrescueMapfile(report(10 * MiB, MiB, [])));
  assert.deepEqual(blocks, [{ pos: 0, size: 10 * MiB, status: '?' }]);
  assert.equal(current.status, '?');
  assert.equal(current.pos, 0);
});

test('a finished map is one finished block and the current status says finished', () => {
  const { blocks, current } = parse(ddrescueMapfile(report(10 * MiB, MiB, [[0, 10]])));
  assert.deepEqual(blocks, [{ pos: 0, size: 10 * MiB, status: '+' }]);
  assert.equal(current.status, '+');
});

test('a size that is not a multiple of the region ends the last block at the size', () => {
  const size = 5 * MiB + 3 * 512;
  const partial = parse(ddrescueMapfile(report(size, MiB, [[4, 2]]))).blocks;
  assertCovers(partial, size);
  assert.deepEqual(partial[partial.length - 1], { pos: 4 * MiB, size: MiB + 1536, status: '+' });
  const tail = parse(ddrescueMapfile(report(size, MiB, [[0, 2]]))).blocks;
  assertCovers(tail, size);
  assert.deepEqual(tail[1], { pos: 2 * MiB, size: 3 * MiB + 1536, status: '?' });
  const done = parse(ddrescueMapfile(report(size, MiB, [[0, 6]])));
  assert.deepEqual(done.blocks, [{ pos: 0, size, status: '+' }]);
  assert.equal(done.current.status, '+');
});

test('unreadable extents inside hydrated regions become bad blocks', () => {
  const r = report(
    8 * MiB,
    MiB,
    [[0, 8]],
    [
      { offset: 6 * MiB + 4096, length: 512 },
      { offset: 2 * MiB - 512, length: 1024 }, // straddles two regions; given out of order
      { offset: 7 * MiB + 1024, length: MiB - 1024 }, // runs to the end
    ],
  );
  const { blocks } = parse(ddrescueMapfile(r));
  assertCovers(blocks, 8 * MiB);
  assert.deepEqual(blocks, [
    { pos: 0, size: 2 * MiB - 512, status: '+' },
    { pos: 2 * MiB - 512, size: 1024, status: '-' },
    { pos: 2 * MiB + 512, size: 4 * MiB + 4096 - 512, status: '+' },
    { pos: 6 * MiB + 4096, size: 512, status: '-' },
    { pos: 6 * MiB + 4608, size: MiB - 4608 + 1024, status: '+' },
    { pos: 7 * MiB + 1024, size: MiB - 1024, status: '-' },
  ]);
});

test('an unreadable extent across the edge of a hydrated run is bad only inside the run', () => {
  const r = report(
    4 * MiB,
    MiB,
    [[1, 2]],
    [
      { offset: MiB - 512, length: 1024 },
      { offset: 3 * MiB - 512, length: 4096 },
    ],
  );
  const { blocks } = parse(ddrescueMapfile(r));
  assertCovers(blocks, 4 * MiB);
  assert.deepEqual(blocks, [
    { pos: 0, size: MiB, status: '?' },
    { pos: MiB, size: 512, status: '-' },
    { pos: MiB + 512, size: 2 * MiB - 1024, status: '+' },
    { pos: 3 * MiB - 512, size: 512, status: '-' },
    { pos: 3 * MiB, size: MiB, status: '?' },
  ]);
});

test('positions past 4 GiB use more than 8 hex digits', () => {
  const size = 6 * 1024 * MiB + 512;
  const { blocks } = parse(ddrescueMapfile(report(size, 64 * MiB, [[80, 16]])));
  assertCovers(blocks, size);
  assert.deepEqual(blocks[1], { pos: 80 * 64 * MiB, size: 16 * 64 * MiB, status: '+' });
});

test(
  'ddrescuelog accepts the generated mapfiles and counts what we count',
  { skip: !hasDdrescuelog && 'ddrescuelog is not installed' },
  () => {
    const size = 5 * MiB + 3 * 512;
    checkWithDdrescuelog(
      ddrescueMapfile(
        report(size, MiB, [
          [1, 2],
          [4, 2],
        ]),
      ),
      {
        rescued: MiB * 2 + MiB + 1536,
        nonTried: 2 * MiB,
        bad: 0,
      },
    );
    checkWithDdrescuelog(ddrescueMapfile(report(size, MiB, [])), {
      rescued: 0,
      nonTried: size,
      bad: 0,
    });
    checkWithDdrescuelog(
      ddrescueMapfile(report(size, MiB, [[0, 6]], [{ offset: 3 * MiB, length: 4096 }])),
      { rescued: size - 4096, nonTried: 0, bad: 4096 },
    );
    checkWithDdrescuelog(
      ddrescueMapfile(report(8 * MiB, MiB, [[0, 8]], [{ offset: 2 * MiB - 512, length: 1024 }])),
      { rescued: 8 * MiB - 1024, nonTried: 0, bad: 1024 },
    );
  },
);

test('a job whose source size is unknown (a stream that failed before its end): the map shows what was copied', () => {
  const map = new RegionMap(Infinity);
  map.setRange(0, 24);
  const job = { id: 8, sourceSize: 0, regionSize: MiB, regionsTotal: 0 } as JobRecord;
  const r = regionMapReport(job, map, []);
  assert.equal(r.size, null);
  assert.equal(r.regionsTotal, null);
  assert.equal(r.regionsHydrated, 24);
  const { blocks, current } = parse(ddrescueMapfile(r));
  assert.deepEqual(blocks, [{ pos: 0, size: 24 * MiB, status: '+' }]);
  assert.equal(current.status, '?', 'not finished');
});
