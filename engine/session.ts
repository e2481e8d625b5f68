// What every front end does around a job: announce it, and verify it at the end.

import { makeGeometry } from './geometry';
import type { DoneEvent, StartEvent } from './protocol';
import type { PreparedJob } from './setup';
import { verify, type VerifyResult } from './verify';

export function startEvent(prepared: PreparedJob): StartEvent {
  const { job, record, resumed } = prepared;
  const now = job.progress();
  return {
    type: 'start',
    job: job.id,
    resumed,
    source: record.source,
    destinations: prepared.destinations.map((d) => d.path),
    regionSize: record.regionSize,
    regionsTotal: now.regionsTotal,
    regionsHydrated: now.regionsHydrated,
    bytesTotal: now.bytesTotal,
    ...(prepared.delta !== null ? { delta: prepared.delta } : {}),
  };
}

/** Compares the destinations that are left with the source; fills done.verified and done.mismatches. */
export async function verifyClone(
  prepared: PreparedJob,
  done: DoneEvent,
  onProgress?: (bytesDone: number) => void,
): Promise<VerifyResult> {
  const { record } = prepared;
  const result = await verify(
    prepared.source,
    prepared.destinations.filter((d) => !done.failedDestinations.includes(d.path)),
    makeGeometry(record.sourceSize, record.regionSize),
    { unreadable: done.unreadable, onProgress, skipRegion: (r) => prepared.free?.has(r) ?? false },
  );
  done.mismatches = Object.values(result.mismatches).flat();
  done.verified = done.mismatches.length === 0;
  return result;
}
