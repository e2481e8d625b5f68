// Events from the engine, as the contract (preload/events.ts) names them: the engine's
// protocol event without its type, under the renderer's event name.

import type { HostEvent } from '../engine/host/protocol';
import type {
  DriveTwinEventName,
  DriveTwinEvents,
  JobDone,
  JobError,
  JobProgress,
  JobServing,
  JobStarted,
  JobVerified,
  ModeChange,
  RegionMapChange,
  VerifyProgress,
} from '../preload/events';

/** The event without its protocol type: the payload the contract names. */
export function omitType<T extends { type: string }>(e: T): Omit<T, 'type'> {
  const rest: Partial<T> = { ...e };
  delete rest.type;
  return rest as Omit<T, 'type'>;
}

export type Emit = <E extends DriveTwinEventName>(event: E, payload: DriveTwinEvents[E]) => void;

export function forwardEngineEvent(e: HostEvent, emit: Emit): void {
  switch (e.type) {
    case 'start':
      return emit('job-started', omitType(e) satisfies JobStarted);
    case 'progress':
      return emit('progress', omitType(e) satisfies JobProgress);
    case 'region-map':
      return emit('region-map', omitType(e) satisfies RegionMapChange);
    case 'error':
      return emit('error', omitType(e) satisfies JobError);
    case 'mode':
      return emit('mode', omitType(e) satisfies ModeChange);
    case 'done':
      return emit('done', omitType(e) satisfies JobDone);
    case 'verify-progress':
      return emit('verify-progress', omitType(e) satisfies VerifyProgress);
    case 'verify':
      return emit('verified', omitType(e) satisfies JobVerified);
    case 'serve':
      return emit('serving', omitType(e) satisfies JobServing);
  }
}
