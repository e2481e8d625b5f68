// Windows' answer to "where does this file hold data" (engine/io/holes-win32.ts), against
// a fake kernel32 that answers FSCTL_QUERY_ALLOCATED_RANGES the way NTFS documents it:
// FILE_ALLOCATED_RANGE_BUFFER pairs (offset, length: little-endian int64) for the ranges
// that intersect the one asked, as many as fit; ERROR_MORE_DATA (a failure having written
// what fit) when more remain. No Windows machine runs here: the real calls' C declarations
// are only parsed by koffi.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import koffi from 'koffi';
import type { Range } from '../../engine/geometry';
import { widened } from '../../engine/io/holes';
import {
  DECLARATIONS,
  FSCTL_QUERY_ALLOCATED_RANGES,
  allocatedRanges,
  type Kernel32,
} from '../../engine/io/holes-win32';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

interface FakeNtfs extends Kernel32 {
  calls: string[];
}

/** A file whose allocated ranges are `ranges`; `answer` overrides an answer (ReFS: fails). */
function ntfs(
  ranges: Range[],
  answer?: (call: number) => { ok: boolean; bytes: number } | null,
): FakeNtfs {
  const calls: string[] = [];
  let n = 0;
  return {
    calls,
    open(file) {
      calls.push(`CreateFileW ${file} = 7`);
      return 7;
    },
    queryAllocatedRanges(handle, input, output) {
      const at = Number(input.readBigInt64LE(0));
      const length = Number(input.readBigInt64LE(8));
      calls.push(
        `DeviceIoControl ${handle} 0x${FSCTL_QUERY_ALLOCATED_RANGES.toString(16)} ${at}+${length}`,
      );
      const forced = answer?.(n++);
      if (forced) return forced;
      const hits = ranges.filter((r) => r.offset < at + length && r.offset + r.length > at);
      const fit = Math.min(hits.length, Math.floor(output.length / 16));
      hits.slice(0, fit).forEach((r, i) => {
        output.writeBigInt64LE(BigInt(r.offset), i * 16);
        output.writeBigInt64LE(BigInt(r.length), i * 16 + 8);
      });
      return { ok: fit === hits.length, bytes: fit * 16 };
    },
    close(handle) {
      calls.push(`CloseHandle ${handle}`);
    },
  };
}

const FILE = path.resolve('disk.img');

test('a sparse file: its allocated ranges, asked once over the whole file, then the handle closed', () => {
  const ranges = [
    { offset: 0, length: MIB },
    { offset: 3 * GIB, length: 64 * 1024 },
    { offset: 63 * GIB, length: MIB },
  ];
  const k = ntfs(ranges);
  assert.deepEqual(allocatedRanges('disk.img', 64 * GIB, k), ranges);
  assert.deepEqual(k.calls, [
    `CreateFileW ${path.toNamespacedPath(FILE)} = 7`,
    `DeviceIoControl 7 0x940cf 0+${64 * GIB}`,
    'CloseHandle 7',
  ]);
});

test('more ranges than one answer holds: asked again from the end of the last one given', () => {
  // 5000 allocated 4 KiB clusters, a cluster's hole between each: 4096 fit in one answer.
  const ranges = Array.from({ length: 5000 }, (_, i) => ({ offset: i * 8192, length: 4096 }));
  const k = ntfs(ranges);
  assert.deepEqual(allocatedRanges(FILE, 5000 * 8192, k), ranges);
  assert.deepEqual(k.calls.slice(1), [
    `DeviceIoControl 7 0x940cf 0+${5000 * 8192}`,
    `DeviceIoControl 7 0x940cf ${4095 * 8192 + 4096}+${5000 * 8192 - (4095 * 8192 + 4096)}`,
    'CloseHandle 7',
  ]);
});

test('an answer asked again that repeats the end of the one before: nothing counted twice', () => {
  const ranges = Array.from({ length: 4100 }, (_, i) => ({ offset: i * 8192, length: 4096 }));
  const k = ntfs(ranges);
  const ask = k.queryAllocatedRanges.bind(k);
  // As NTFS does: the offset asked is rounded down (here to 64 KiB) before the walk.
  k.queryAllocatedRanges = (h, input, output) => {
    const at = Number(input.readBigInt64LE(0));
    const end = at + Number(input.readBigInt64LE(8));
    const rounded = at - (at % 65536);
    input.writeBigInt64LE(BigInt(rounded), 0);
    input.writeBigInt64LE(BigInt(end - rounded), 8);
    return ask(h, input, output);
  };
  assert.deepEqual(allocatedRanges(FILE, 4100 * 8192, k), ranges);
});

test('a file with nothing allocated is all hole; a range past the size is clipped', () => {
  assert.deepEqual(allocatedRanges(FILE, GIB, ntfs([])), []);
  // NTFS rounds the range it walks to its clusters: an answer may run past the end.
  assert.deepEqual(allocatedRanges(FILE, 10_000, ntfs([{ offset: 8192, length: 4096 }])), [
    { offset: 8192, length: 10_000 - 8192 },
  ]);
});

test('a file system that does not answer (ReFS), or an answer that goes nowhere: null, read it all', () => {
  const refs = ntfs([], () => ({ ok: false, bytes: 0 }));
  assert.equal(allocatedRanges(FILE, GIB, refs), null);
  assert.equal(refs.calls.at(-1), 'CloseHandle 7', 'the handle is closed');
  // "More data" whose last range ends where the question began would ask the same forever.
  const stuck = ntfs([]);
  stuck.queryAllocatedRanges = (_h, _input, output) => {
    output.writeBigInt64LE(0n, 0);
    output.writeBigInt64LE(0n, 8);
    return { ok: false, bytes: 16 };
  };
  assert.equal(allocatedRanges(FILE, GIB, stuck), null);
  const unopened = ntfs([]);
  unopened.open = () => null;
  assert.equal(allocatedRanges(FILE, GIB, unopened), null);
  assert.deepEqual(unopened.calls, [], 'nothing asked, nothing to close');
});

test('the ranges are widened to whole I/O blocks and merged as on Linux', () => {
  const k = ntfs([
    { offset: 100, length: 10 },
    { offset: 5000, length: 100 },
    { offset: 20_000, length: 5000 },
  ]);
  const spans = allocatedRanges(FILE, 30_000, k);
  assert.ok(spans);
  assert.deepEqual(widened(spans, 30_000, 4096), [
    { offset: 0, length: 8192 },
    { offset: 16_384, length: 28_672 - 16_384 },
  ]);
});

test("kernel32's declarations are valid koffi prototypes", () => {
  for (const [name, declaration] of Object.entries(DECLARATIONS)) {
    assert.doesNotThrow(() => koffi.proto(declaration), name);
    assert.match(declaration, new RegExp(`__stdcall ${name}\\(`));
  }
});
