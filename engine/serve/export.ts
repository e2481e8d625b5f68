// One export per job on a Unix socket (nbd+unix:///?socket=PATH): each connection goes
// through the fixed newstyle handshake (options answered until GO or EXPORT_NAME), then
// its requests are served against a ServedDisk — several at once, each answered with a
// simple reply when it is done (the protocol lets replies come in any order). Closing
// the export answers new requests with ESHUTDOWN, lets those in flight finish, then ends
// every connection.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  CMD,
  CMD_FLAG,
  ERR,
  FLAG_NO_ZEROES,
  FrameReader,
  INFO,
  OPT,
  OPTION_HEADER_BYTES,
  REP,
  REQUEST_BYTES,
  type Request,
  TFLAG,
  blockSizeInfo,
  clientFlags,
  exportInfo,
  exportNameReply,
  greeting,
  infoRequest,
  optionError,
  optionHeader,
  optionReply,
  request,
  serverEntry,
  simpleReply,
  textInfo,
} from './nbd-protocol';

/** The disk an export serves: byte ranges within [0, size). */
export interface ServedDisk {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  write(data: Buffer, offset: number): Promise<void>;
  /** Reads as zeros afterwards. */
  zero(offset: number, length: number): Promise<void>;
  /** The client no longer needs these bytes (TRIM): their content is unspecified afterwards. */
  discard(offset: number, length: number): Promise<void>;
  /** Every write answered so far is durable once this resolves. */
  flush(): Promise<void>;
}

export interface ExportOptions {
  /** The export's name (the default export, "", is the same one). */
  name: string;
  /** Shown by clients (nbdinfo). */
  description: string;
  /** The socket's owner, when it is not this process's user (an elevated engine). */
  owner?: { uid: number; gid: number };
  /** Connections came or went: how many are open now. */
  onClients?(count: number): void;
  /** A request failed; the client gets only an error code, this says why. */
  onError?(message: string): void;
}

const MIB = 1024 * 1024;
/** The largest read or write one request may carry (the protocol's portable maximum). */
export const MAX_PAYLOAD = 32 * MIB;
/** Requests' payloads and replies not yet sent, over every connection: the memory bound. */
const IN_FLIGHT_BYTES = 32 * MIB;
/** Options are small: a longer one is not a client's. */
const MAX_OPTION_BYTES = 64 * 1024;
const FLAGS =
  TFLAG.HAS_FLAGS |
  TFLAG.SEND_FLUSH |
  TFLAG.SEND_FUA |
  TFLAG.SEND_TRIM |
  TFLAG.SEND_WRITE_ZEROES |
  // A flush flushes the destinations themselves, whichever connection wrote.
  TFLAG.CAN_MULTI_CONN;

/** A failure with the protocol's own error value. */
export class ServeError extends Error {
  constructor(
    readonly nbdError: number,
    message: string,
  ) {
    super(message);
  }
}

interface Connection {
  socket: net.Socket;
  /** Requests being served. */
  inFlight: Set<Promise<void>>;
  transmitting: boolean;
}

export class NbdExport {
  private readonly connections = new Set<Connection>();
  private closing = false;
  private budget = IN_FLIGHT_BYTES;
  private budgetWaiters: Array<() => void> = [];
  private emptied: Array<() => void> = [];

  private constructor(
    private readonly server: net.Server,
    readonly socketPath: string,
    private readonly disk: ServedDisk,
    private readonly options: ExportOptions,
  ) {
    server.on('connection', (socket) => this.accept(socket));
  }

  /** Listens on `socketPath` (a stale socket there is replaced), readable and writable by its owner only. */
  static async listen(
    socketPath: string,
    disk: ServedDisk,
    options: ExportOptions,
  ): Promise<NbdExport> {
    const problem = await socketProblem(socketPath);
    if (problem) throw new ServeError(ERR.EINVAL, problem);
    fs.rmSync(socketPath, { force: true });
    const server = net.createServer({ pauseOnConnect: true });
    // The socket is created by bind(), inside listen(): with this umask nobody else may
    // connect, not even between its creation and the chmod below.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => resolve());
      });
    } finally {
      process.umask(umask);
    }
    fs.chmodSync(socketPath, 0o600);
    if (options.owner) fs.chownSync(socketPath, options.owner.uid, options.owner.gid);
    return new NbdExport(server, socketPath, disk, options);
  }

  get clients(): number {
    return this.connections.size;
  }

  /** Resolves once no client is connected. */
  noClients(): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptied.push(resolve));
  }

  /** New requests get ESHUTDOWN, those in flight finish, then every connection ends. */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.server.close();
      fs.rmSync(this.socketPath, { force: true });
      for (const c of this.connections) {
        // Still haggling: nothing of the disk is in use there.
        if (!c.transmitting) c.socket.destroy();
        else void Promise.allSettled([...c.inFlight]).then(() => c.socket.destroy());
      }
    }
    await this.noClients();
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const c: Connection = { socket, inFlight: new Set(), transmitting: false };
    this.connections.add(c);
    this.options.onClients?.(this.connections.size);
    socket.on('error', () => undefined); // a client gone mid-reply: 'close' follows
    socket.on('close', () => {
      this.connections.delete(c);
      this.options.onClients?.(this.connections.size);
      if (this.connections.size === 0) for (const done of this.emptied.splice(0)) done();
    });
    void this.converse(c).catch(() => socket.destroy());
  }

  private async converse(c: Connection): Promise<void> {
    const reader = new FrameReader(c.socket);
    c.socket.write(greeting());
    const flags = clientFlags(await reader.read(4));
    if (flags === null) return void c.socket.destroy();
    if (!(await this.haggle(c.socket, reader, (flags & FLAG_NO_ZEROES) !== 0))) return;
    c.transmitting = true;
    await this.transmit(c, reader);
  }

  /** Option haggling; true once the client chose the export and transmission begins. */
  private async haggle(socket: net.Socket, reader: FrameReader, noZeroes: boolean) {
    for (;;) {
      const header = optionHeader(await reader.read(OPTION_HEADER_BYTES));
      if (!header || header.length > MAX_OPTION_BYTES) return void socket.destroy();
      const data = await reader.read(header.length);
      const { option } = header;
      if (option === OPT.ABORT) {
        socket.end(optionReply(option, REP.ACK));
        return false;
      }
      if (this.closing) {
        socket.write(optionError(option, REP.ERR_SHUTDOWN, 'the copy is ending'));
        continue;
      }
      if (option === OPT.EXPORT_NAME) {
        // No way to say no here but hanging up.
        if (!this.isOurs(data.toString('utf8'))) return void socket.destroy();
        socket.write(exportNameReply(this.disk.size, FLAGS, noZeroes));
        return true;
      }
      if (option === OPT.LIST) {
        if (data.length > 0)
          socket.write(optionError(option, REP.ERR_INVALID, 'LIST takes no data'));
        else socket.write(Buffer.concat([this.serverReply(), optionReply(option, REP.ACK)]));
        continue;
      }
      if (option === OPT.INFO || option === OPT.GO) {
        const asked = infoRequest(data);
        if (!asked) {
          socket.write(optionError(option, REP.ERR_INVALID, 'malformed INFO/GO request'));
        } else if (!this.isOurs(asked.name)) {
          socket.write(optionError(option, REP.ERR_UNKNOWN, `no export "${asked.name}" here`));
        } else {
          socket.write(this.infoReplies(option, asked.items));
          if (option === OPT.GO) return true;
        }
        continue;
      }
      socket.write(optionError(option, REP.ERR_UNSUP, `option ${option} is not supported`));
    }
  }

  private isOurs(name: string): boolean {
    return name === '' || name === this.options.name;
  }

  private serverReply(): Buffer {
    return optionReply(OPT.LIST, REP.SERVER, serverEntry(this.options.name));
  }

  private infoReplies(option: number, items: number[]): Buffer {
    const infos = [
      exportInfo(this.disk.size, FLAGS),
      // Any alignment is served (read-modify-write inside a region); 4 KiB is efficient.
      blockSizeInfo(1, 4096, MAX_PAYLOAD),
    ];
    if (items.includes(INFO.NAME)) infos.push(textInfo(INFO.NAME, this.options.name));
    if (items.includes(INFO.DESCRIPTION)) {
      infos.push(textInfo(INFO.DESCRIPTION, this.options.description));
    }
    return Buffer.concat([
      ...infos.map((info) => optionReply(option, REP.INFO, info)),
      optionReply(option, REP.ACK),
    ]);
  }

  /** Reads requests until the client disconnects; each is served as soon as it arrives. */
  private async transmit(c: Connection, reader: FrameReader): Promise<void> {
    for (;;) {
      let header: Request | null;
      try {
        header = request(await reader.read(REQUEST_BYTES));
      } catch {
        break; // the client went away
      }
      if (!header) return void c.socket.destroy();
      if (header.type === CMD.DISC) break;
      let data: Buffer | null = null;
      if (header.type === CMD.WRITE) {
        // Its payload can't be skipped safely: a client sending this much is not one.
        if (header.length > MAX_PAYLOAD) return void c.socket.destroy();
        data = await reader.read(header.length);
      }
      const cost = header.type === CMD.READ ? header.length : (data?.length ?? 0);
      await this.take(cost);
      const served: Promise<void> = this.serve(c.socket, header, data)
        .finally(() => this.give(cost))
        .finally(() => c.inFlight.delete(served));
      c.inFlight.add(served);
    }
    // Every reply was handed to the system: hanging up loses none of them.
    await Promise.allSettled([...c.inFlight]);
    c.socket.destroy();
  }

  /** Waits until `bytes` more may be in flight (one request is let through whatever its size). */
  private async take(bytes: number): Promise<void> {
    while (this.budget <= 0) await new Promise<void>((r) => this.budgetWaiters.push(r));
    this.budget -= bytes;
  }

  private give(bytes: number): void {
    this.budget += bytes;
    for (const wake of this.budgetWaiters.splice(0)) wake();
  }

  /** One request, answered with a simple reply (and a read's data) once the socket took it. */
  private async serve(socket: net.Socket, r: Request, data: Buffer | null): Promise<void> {
    let payload: Buffer | null = null;
    let error = 0;
    try {
      payload = await this.perform(r, data);
    } catch (e) {
      error = e instanceof ServeError ? e.nbdError : errnoOf(e);
      if (!(e instanceof ServeError && e.nbdError === ERR.ESHUTDOWN)) {
        this.options.onError?.((e as Error).message);
      }
    }
    if (socket.destroyed) return;
    await new Promise<void>((resolve) => {
      socket.cork();
      // Resolved once the last part was handed to the system.
      socket.write(simpleReply(error, r.cookie), payload ? undefined : () => resolve());
      if (payload) socket.write(payload, () => resolve());
      socket.uncork();
    });
  }

  private async perform(r: Request, data: Buffer | null): Promise<Buffer | null> {
    if (this.closing) throw new ServeError(ERR.ESHUTDOWN, 'the copy is ending');
    const allowed = CMD_FLAG.FUA | (r.type === CMD.WRITE_ZEROES ? CMD_FLAG.NO_HOLE : 0);
    if ((r.flags & ~allowed) !== 0) {
      throw new ServeError(ERR.EINVAL, `flags ${r.flags} are not valid for command ${r.type}`);
    }
    if (r.type === CMD.FLUSH) {
      await this.disk.flush();
      return null;
    }
    const inside = Number.isFinite(r.offset) && r.offset + r.length <= this.disk.size;
    if (!inside) {
      const code = r.type === CMD.WRITE ? ERR.ENOSPC : ERR.EINVAL;
      throw new ServeError(code, `bytes ${r.offset}+${r.length} are past the disk's end`);
    }
    switch (r.type) {
      case CMD.READ:
        if (r.length > MAX_PAYLOAD) {
          throw new ServeError(ERR.EINVAL, `a read of ${r.length} bytes is over ${MAX_PAYLOAD}`);
        }
        return this.disk.read(r.offset, r.length);
      case CMD.WRITE:
        await this.disk.write(data!, r.offset);
        break;
      case CMD.WRITE_ZEROES:
        await this.disk.zero(r.offset, r.length);
        break;
      case CMD.TRIM:
        await this.disk.discard(r.offset, r.length);
        break;
      default:
        throw new ServeError(ERR.EINVAL, `command ${r.type} is not supported`);
    }
    // Forced unit access: this write is durable before it is answered.
    if (r.flags & CMD_FLAG.FUA) await this.disk.flush();
    return null;
  }
}

/** The protocol's error for a failed read, write or flush of the disk. */
function errnoOf(e: unknown): number {
  const code = (e as { code?: string }).code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') return ERR.ENOSPC;
  if (code === 'ESHUTDOWN') return ERR.ESHUTDOWN;
  return ERR.EIO;
}

/**
 * Why an export can't listen at `socketPath`, or null: its folder must exist, and
 * anything there must be a socket nobody answers on (a stale one, replaced).
 */
export async function socketProblem(socketPath: string): Promise<string | null> {
  // sockaddr_un holds 108 bytes with the terminating zero.
  if (Buffer.byteLength(socketPath) > 107) {
    return `the socket path ${socketPath} is too long for a Unix socket (at most 107 bytes)`;
  }
  let stat: fs.Stats;
  try {
    stat = fs.statSync(socketPath);
  } catch {
    const dir = path.dirname(socketPath);
    return fs.existsSync(dir) ? null : `the folder of the socket ${socketPath} does not exist`;
  }
  if (!stat.isSocket()) return `${socketPath} exists and is not a socket: nothing was written`;
  const answered = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath, () => {
      probe.destroy();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
  });
  return answered ? `${socketPath} is in use: another program listens there` : null;
}
