// A small NBD client for tests: the fixed newstyle handshake ending in NBD_OPT_GO (or
// the older EXPORT_NAME), then requests with simple replies, several in flight at once.
// Debian's clients (nbdinfo, nbdcopy, nbdfuse) prove the protocol; this one sends the
// exact requests a test needs (a write of one whole region, a FLUSH, then a kill).

import net from 'node:net';
import { CMD, FrameReader, IHAVEOPT, NBDMAGIC, OPT } from '../../engine/serve/nbd-protocol';

const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;

export class NbdError extends Error {
  constructor(
    readonly errno: number,
    what: string,
  ) {
    super(`${what}: NBD error ${errno}`);
  }
}

export interface Handshake {
  size: number;
  flags: number;
  /** Every option reply seen: [option, reply type, data]. */
  replies: Array<[number, number, Buffer]>;
}

export class NbdClient {
  private cookie = 1n;
  private readonly pending = new Map<
    bigint,
    { length: number; resolve: (b: Buffer) => void; reject: (e: Error) => void; what: string }
  >();
  private closed: Error | null = null;

  private constructor(
    private readonly socket: net.Socket,
    private readonly reader: FrameReader,
    readonly handshake: Handshake,
  ) {
    void this.receive();
  }

  static async connect(
    socketPath: string,
    how: { name?: string; exportName?: boolean; before?: Array<[number, Buffer]> } = {},
  ): Promise<NbdClient> {
    const socket = net.connect(socketPath);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const reader = new FrameReader(socket);
    const hello = await reader.read(18);
    if (hello.readBigUInt64BE(0) !== NBDMAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT) {
      throw new Error('not an NBD newstyle server');
    }
    const noZeroes = (hello.readUInt16BE(16) & 2) !== 0;
    socket.write(u32(1 | (noZeroes ? 2 : 0)));
    const replies: Array<[number, number, Buffer]> = [];
    const name = Buffer.from(how.name ?? '', 'utf8');
    for (const [option, data] of how.before ?? []) {
      socket.write(option_(option, data));
      for (;;) {
        const [type, body] = await optionReply(reader);
        replies.push([option, type, body]);
        if (type !== 2 && type !== 3) break; // SERVER and INFO come before the final reply
      }
    }
    if (how.exportName) {
      socket.write(option_(OPT.EXPORT_NAME, name));
      const b = await reader.read(noZeroes ? 10 : 134);
      const handshake = { size: Number(b.readBigUInt64BE(0)), flags: b.readUInt16BE(8), replies };
      return new NbdClient(socket, reader, handshake);
    }
    const go = Buffer.concat([u32(name.length), name, u16(0)]);
    socket.write(option_(OPT.GO, go));
    let size = -1;
    let flags = 0;
    for (;;) {
      const [type, body] = await optionReply(reader);
      replies.push([OPT.GO, type, body]);
      if (type === 3 && body.readUInt16BE(0) === 0) {
        size = Number(body.readBigUInt64BE(2));
        flags = body.readUInt16BE(10);
      } else if (type === 1) break;
      else if (type !== 3) throw new Error(`GO refused: reply ${type} ${body.toString()}`);
    }
    return new NbdClient(socket, reader, { size, flags, replies });
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.send(CMD.READ, 0, offset, length, null);
  }

  async write(data: Buffer, offset: number, flags = 0): Promise<void> {
    await this.send(CMD.WRITE, flags, offset, data.length, data);
  }

  async flush(): Promise<void> {
    await this.send(CMD.FLUSH, 0, 0, 0, null);
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.send(CMD.TRIM, 0, offset, length, null);
  }

  async zero(offset: number, length: number): Promise<void> {
    await this.send(CMD.WRITE_ZEROES, 0, offset, length, null);
  }

  /** Any request, as it is given (for requests a client should not send). */
  async raw(type: number, flags: number, offset: number, length: number): Promise<Buffer> {
    return this.send(type, flags, offset, length, null);
  }

  /** A soft disconnect (NBD_CMD_DISC), then waits for the server to hang up. */
  async disconnect(): Promise<void> {
    this.socket.write(request(CMD.DISC, 0, 0n, 0, 0));
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) resolve();
      else this.socket.once('close', () => resolve());
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private send(
    type: number,
    flags: number,
    offset: number,
    length: number,
    data: Buffer | null,
  ): Promise<Buffer> {
    if (this.closed) return Promise.reject(this.closed);
    const cookie = this.cookie++;
    const what = `command ${type} at ${offset}+${length}`;
    const reply = new Promise<Buffer>((resolve, reject) =>
      this.pending.set(cookie, {
        length: type === CMD.READ ? length : 0,
        resolve,
        reject,
        what,
      }),
    );
    this.socket.write(request(type, flags, cookie, offset, length));
    if (data) this.socket.write(data);
    return reply;
  }

  private async receive(): Promise<void> {
    try {
      for (;;) {
        const header = await this.reader.read(16);
        if (header.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error('bad reply magic');
        const error = header.readUInt32BE(4);
        const cookie = header.readBigUInt64BE(8);
        const waiter = this.pending.get(cookie);
        if (!waiter) throw new Error(`a reply to no request (cookie ${cookie})`);
        this.pending.delete(cookie);
        if (error !== 0) waiter.reject(new NbdError(error, waiter.what));
        else
          waiter.resolve(
            waiter.length > 0 ? await this.reader.read(waiter.length) : Buffer.alloc(0),
          );
      }
    } catch (e) {
      this.closed = e as Error;
      for (const w of this.pending.values()) w.reject(e as Error);
      this.pending.clear();
    }
  }
}

async function optionReply(reader: FrameReader): Promise<[number, Buffer]> {
  const h = await reader.read(20);
  const length = h.readUInt32BE(16);
  return [h.readUInt32BE(12), await reader.read(length)];
}

function option_(option: number, data: Buffer): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(data.length, 12);
  return Buffer.concat([b, data]);
}

function request(type: number, flags: number, cookie: bigint, offset: number, length: number) {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}
