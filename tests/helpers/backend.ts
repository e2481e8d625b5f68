// The desktop backend as the renderer sees it, under plain Node: main/api.ts's
// handlers over a real engine in a child process (main/engine-host.ts), with every
// event recorded.

import type { TestContext } from 'node:test';
import type { Drive } from '../../engine/drives/classify';
import type { HostCommand } from '../../engine/host/protocol';
import { type Backend, createBackend } from '../../main/api';
import type { ElevationInput } from '../../main/elevation';
import { EngineSupervisor, type SupervisorOptions } from '../../main/engine-host';
import type { DriveTwinMethod, MethodResult } from '../../preload/api';
import type { DriveTwinEventName, DriveTwinEvents } from '../../preload/events';

export interface Recorded<E extends DriveTwinEventName = DriveTwinEventName> {
  event: E;
  payload: DriveTwinEvents[E];
  /** performance.now() when it arrived. */
  at: number;
}

export interface Harness {
  engine: EngineSupervisor;
  backend: Backend;
  events: Recorded[];
  /** Commands that reached the engine, in order. */
  commands: HostCommand[];
  /** Calls a handler through the transport entry point; throws the failure's message. */
  call<M extends DriveTwinMethod>(method: M, ...args: unknown[]): Promise<MethodResult<M>>;
  /** The recorded events of one kind (for one job, when given). */
  of<E extends DriveTwinEventName>(event: E, job?: number): Array<Recorded<E>>;
  /** The first event, past or future, matching; rejects after `timeoutMs`. */
  waitFor<E extends DriveTwinEventName>(
    event: E,
    pred?: (payload: DriveTwinEvents[E]) => boolean,
    timeoutMs?: number,
  ): Promise<DriveTwinEvents[E]>;
}

export function startBackend(
  t: TestContext,
  opts: Omit<SupervisorOptions, 'dbPath'> & {
    dbPath: string;
    listDrives?: () => Promise<Drive[]>;
  },
): Harness {
  const engine = new EngineSupervisor(opts);
  const commands: HostCommand[] = [];
  const request = engine.request.bind(engine);
  engine.request = (command, access) => {
    commands.push(command);
    return request(command, access);
  };
  const backend = createBackend({
    engine,
    listDrives: opts.listDrives ?? (async () => []),
    dialogs: null,
    transport: 'web',
  });
  const events: Recorded[] = [];
  const waiters = new Set<(r: Recorded) => void>();
  backend.onEvent((event, payload) => {
    const r = { event, payload, at: performance.now() } as Recorded;
    events.push(r);
    for (const w of [...waiters]) w(r);
  });
  t.after(async () => {
    await engine.close();
    backend.close();
  });
  const jobOf = (p: unknown): number | null | undefined => (p as { job?: number | null }).job;
  return {
    engine,
    backend,
    events,
    commands,
    async call(method, ...args) {
      const reply = await backend.call(method, args);
      if (!reply.ok) {
        throw Object.assign(new Error(reply.error.message), { code: reply.error.code });
      }
      return reply.value as MethodResult<typeof method>;
    },
    of(event, job) {
      return events.filter(
        (r) => r.event === event && (job === undefined || jobOf(r.payload) === job),
      ) as Array<Recorded<typeof event>>;
    },
    waitFor(event, pred = () => true, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const seen = events.find(
          (r) => r.event === event && pred(r.payload as DriveTwinEvents[typeof event]),
        );
        if (seen) return resolve(seen.payload as DriveTwinEvents[typeof event]);
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no ${event} event within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = (r: Recorded): void => {
          if (r.event !== event || !pred(r.payload as DriveTwinEvents[typeof event])) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(r.payload as DriveTwinEvents[typeof event]);
        };
        waiters.add(waiter);
      });
    },
  };
}

/** Regions covered by flat runs [first, count, …]. */
export function regionsInRuns(runs: number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < runs.length; i += 2) {
    for (let r = runs[i]; r < runs[i] + runs[i + 1]; r++) out.push(r);
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * What main/engine-host.ts hands to the elevation launch for a request that needs it:
 * the launch records it and exits at once, so the supervisor gives up and nothing is elevated.
 */
export async function elevationInput(
  opts: Pick<SupervisorOptions, 'hostScript'> & {
    dbPath?: string;
    elevation?: Omit<NonNullable<SupervisorOptions['elevation']>, 'launch' | 'needed'>;
  },
): Promise<ElevationInput> {
  let launched: ElevationInput | undefined;
  const supervisor = new EngineSupervisor({
    dbPath: opts.dbPath ?? '/nonexistent/jobs.db',
    hostScript: opts.hostScript,
    elevation: {
      ...opts.elevation,
      needed: () => true,
      launch: (input) => {
        launched = input;
        return { command: process.execPath, args: ['-e', 'process.exit(3)'] };
      },
    },
  });
  try {
    await supervisor.request({ type: 'list-jobs' }, { read: [], write: [] });
    throw new Error('the launch that exits at once was answered');
  } catch (e) {
    if (!launched) throw e;
  } finally {
    await supervisor.close();
  }
  return launched;
}
