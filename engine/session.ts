// What every front end does around a job: announce it, and verify it at the end.

import { isStream } from './io/device';
import type { DoneEvent, StartEvent } from './protocol';
import { type PreparedJob, openReadable } from './setup';
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
  // A stream was read to its end: compare against a fresh one.
  const source = isStream(prepared.source)
    ? await openReadable(prepared.record.source)
    : prepared.source;
  const result = await verify(
    source,
    prepared.destinations.filter((d) => !done.failedDestinations.includes(d.path)),
    prepared.job.currentGeometry(),
    { unreadable: done.unreadable, onProgress, skipRegion: (r) => prepared.free?.has(r) ?? false },
  );
  if (source !== prepared.source) await source.close();
  done.mismatches = Object.values(result.mismatches).flat();
  done.verified = done.mismatches.length === 0;
  return result;
}
