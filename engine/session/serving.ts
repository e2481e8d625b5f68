// The destination served while its job hydrates (`--serve SOCKET`, the app's "Use it
// now"): what may be served, checked with the plan before anything is written; the
// export's life beside the job's — up when the copy starts, kept after a finished copy
// until its last client leaves, closed as soon as the job stops — and its events.

import type { ErrorEvent, ServeEvent } from '../events';
import { type Geometry, type Range, regionRange } from '../geometry';
import type { OnDemand } from '../hydration/on-demand';
import { isStream } from '../io/device';
import { Refused } from '../io/open';
import { tableWrites } from '../partitions/rewrite';
import { NbdExport, socketProblem } from '../serve/export';
import type { Plan } from './plan';
import type { RegionMap } from '../store/region-map';

export interface ServeRequest {
  /** The Unix socket to listen on: nbd+unix:///?socket=SOCKET. */
  socket: string;
  /** Who may connect, when not this process's user (an elevated engine serves its user). */
  owner?: { uid: number; gid: number };
}

/** The URI a client attaches: nbd+unix:///?socket=PATH (RFC 3986, the path percent-encoded). */
export function serveUri(socket: string): string {
  const path = socket.replace(/[^A-Za-z0-9/._~-]/g, (c) =>
    [...Buffer.from(c, 'utf8')]
      .map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)
      .join(''),
  );
  return `nbd+unix:///?socket=${path}`;
}

/** Refused (nothing written yet) when this plan's destination can't be served while it hydrates. */
export async function checkServing(p: Plan, request: ServeRequest): Promise<void> {
  const why = planProblem(p) ?? (await socketProblem(request.socket));
  if (why) throw new Refused(`--serve: ${why}`);
}

/** The regions a client wrote, in bytes (a verify's `written`); undefined when none. */
export function writtenRanges(written: RegionMap, g: Geometry): Range[] | undefined {
  if (written.count === 0) return undefined;
  return written.runs().map((r) => regionRange(g, r.first, r.count));
}

function planProblem(p: Plan): string | null {
  if (p.verifyOnly) {
    return `job ${p.record?.id} is already copied: there is nothing to serve while it hydrates`;
  }
  if (isStream(p.source)) {
    return (
      `${p.sourcePath} is read as a stream (compressed, or a source that can't be read at ` +
      'random), and a served disk is read anywhere at any time: decompress it first'
    );
  }
  const backup = p.destinations.find((d) => d.probe.kind === 'zst');
  if (backup) {
    return `${backup.probe.path} is a compressed backup, written in order; a served disk is written anywhere`;
  }
  if (p.options.sequential) {
    return '--sequential writes in order (zoned drives); a served disk is written anywhere';
  }
  const t = p.tables;
  const rewritten = p.destinations.find((d) => {
    if (!t) return false;
    const size = d.probe.kind === 'block' ? d.probe.size : t.imageSize;
    const writes = tableWrites(t.table, t.copyEnd, size, p.options.newIds);
    return writes.inCopy.length > 0 || writes.pastCopy.length > 0;
  });
  if (rewritten) {
    return (
      `the partition table of ${rewritten.probe.path} is rewritten for its own size when the ` +
      'copy ends, which would change the disk under its user: serve a destination of the ' +
      "source's size, without --fit or --new-ids"
    );
  }
  return null;
}

/** The export of one job's destination, and the events that tell a user where and how it is. */
export class Serving {
  private served: NbdExport | null = null;
  private stopping = false;
  private wakeStop: () => void = () => undefined;
  private readonly stopped = new Promise<void>((resolve) => (this.wakeStop = resolve));
  private readonly errorsSeen = new Set<string>();

  constructor(
    private readonly job: number,
    private readonly request: ServeRequest,
    private readonly emit: (event: ServeEvent | ErrorEvent) => void,
  ) {}

  /** Listens; the copy starts next. */
  async start(disk: OnDemand, source: string): Promise<void> {
    this.served = await NbdExport.listen(this.request.socket, disk, {
      name: `job-${this.job}`,
      description: `DriveTwin job ${this.job}: ${source} as it is being copied`,
      owner: this.request.owner,
      onClients: (n) => this.say('serving', n),
      onError: (message) => this.failed(message),
    });
    this.say('listening', 0);
  }

  /**
   * The copy ended: when it is done, the disk is still served until its last client
   * leaves (a mounted file system goes on); otherwise it is closed now.
   */
  async end(done: boolean): Promise<void> {
    const served = this.served;
    if (!served) return;
    if (done && !this.stopping && served.clients > 0) {
      this.say('waiting', served.clients);
      await Promise.race([served.noClients(), this.stopped]);
    }
    this.served = null;
    await served.close();
    this.say('closed', 0);
  }

  /** Stopping the job: the clients' requests in flight finish, new ones are refused. */
  stop(): void {
    this.stopping = true;
    this.wakeStop();
    void this.served?.close();
  }

  private say(state: ServeEvent['state'], clients: number): void {
    const { socket } = this.request;
    this.emit({ type: 'serve', job: this.job, state, socket, uri: serveUri(socket), clients });
  }

  /** A client's request failed: said once per reason (a mounted file system retries). */
  private failed(message: string): void {
    if (this.errorsSeen.has(message)) return;
    this.errorsSeen.add(message);
    this.emit({
      type: 'error',
      job: this.job,
      message: `the served disk answered a request with an error: ${message}`,
      fatal: false,
    });
  }
}
