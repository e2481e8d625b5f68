// The region map as others read it: our JSON report, and GNU ddrescue's mapfile
// (finished '+', non-tried '?', bad '-').

import type { Range } from '../geometry';
import type { JobRecord } from './job-record';
import type { RegionMap } from './region-map';

export interface MapReport {
  type: 'map';
  job: number;
  /** Null while the source's size is unknown (a compressed image whose end was not read). */
  size: number | null;
  regionSize: number;
  regionsTotal: number | null;
  regionsHydrated: number;
  /** Runs of hydrated regions, by region index. */
  hydrated: Array<{ first: number; count: number }>;
  /** Unreadable source extents, in bytes. */
  unreadable: Range[];
}

export function regionMapReport(job: JobRecord, map: RegionMap, unreadable: Range[]): MapReport {
  return {
    type: 'map',
    job: job.id,
    size: job.sourceSize || null,
    regionSize: job.regionSize,
    regionsTotal: job.regionsTotal || null,
    regionsHydrated: map.count,
    hydrated: map.runs(),
    unreadable,
  };
}

type Status = '+' | '?' | '-';

export function ddrescueMapfile(report: MapReport): string {
  const blocks: Array<{ pos: number; size: number; status: Status }> = [];
  const push = (pos: number, end: number, status: Status): void => {
    if (end <= pos) return;
    const last = blocks[blocks.length - 1];
    if (last && last.status === status && last.pos + last.size === pos) last.size += end - pos;
    else blocks.push({ pos, size: end - pos, status });
  };
  // Of a source whose size is unknown, the map covers what was copied: ddrescue reads
  // what lies past a mapfile's last block as not tried.
  const lastRun = report.hydrated[report.hydrated.length - 1];
  const size = report.size ?? (lastRun ? (lastRun.first + lastRun.count) * report.regionSize : 0);
  // Hydrated runs are finished except where the source was unreadable.
  const bad = [...report.unreadable].sort((a, b) => a.offset - b.offset);
  let pos = 0;
  for (const run of report.hydrated) {
    const start = run.first * report.regionSize;
    const end = Math.min((run.first + run.count) * report.regionSize, size);
    push(pos, start, '?');
    let at = start;
    for (const b of bad) {
      const bEnd = b.offset + b.length;
      if (bEnd <= at || b.offset >= end) continue;
      push(at, Math.max(at, b.offset), '+');
      push(Math.max(at, b.offset), Math.min(end, bEnd), '-');
      at = Math.min(end, bEnd);
    }
    push(at, end, '+');
    pos = end;
  }
  push(pos, size, '?');
  const hex = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(8, '0')}`;
  const finished = report.size !== null && report.regionsHydrated === report.regionsTotal;
  return [
    `# Mapfile. Created by DriveTwin (job ${report.job})`,
    ...(report.size === null
      ? ['# the source’s size is not known: past the last block, not tried']
      : []),
    '# current_pos  current_status  current_pass',
    `${hex(finished ? size : pos)}     ${finished ? '+' : '?'}               1`,
    '#      pos        size  status',
    ...blocks.map((b) => `${hex(b.pos)}  ${hex(b.size)}  ${b.status}`),
    '',
  ].join('\n');
}
