// The NBD protocol's framing (NetworkBlockDevice/nbd doc/proto.md): the fixed newstyle
// handshake, the options we answer, transmission requests and simple replies. Bytes in,
// bytes out; what a request does to the disk is export.ts's business. Integers are big
// endian; 64-bit offsets past Number.MAX_SAFE_INTEGER are refused as invalid.

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;

/** Handshake flags (server) and client flags: the same two bits. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

/** Transmission flags. */
export const TFLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  CAN_MULTI_CONN: 1 << 8,
} as const;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  INFO: 6,
  GO: 7,
} as const;

export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: 2 ** 31 + 1,
  ERR_INVALID: 2 ** 31 + 3,
  ERR_UNKNOWN: 2 ** 31 + 6,
  ERR_SHUTDOWN: 2 ** 31 + 7,
} as const;

export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  WRITE_ZEROES: 6,
} as const;

export const CMD_FLAG = { FUA: 1 << 0, NO_HOLE: 1 << 1 } as const;

/** Error values of a reply (the protocol's own, errno-like). */
export const ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** A request header's bytes: magic, flags, type, cookie, offset, length. */
export const REQUEST_BYTES = 28;
/** An option header's bytes: IHAVEOPT, option, length. */
export const OPTION_HEADER_BYTES = 16;

/** The server's first bytes: NBDMAGIC, IHAVEOPT, the handshake flags. */
export function greeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  return b;
}

/** The client's flags, or null when it sets one we did not offer (the session must end). */
export function clientFlags(bytes: Buffer): number | null {
  const flags = bytes.readUInt32BE(0);
  return (flags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) === 0 ? flags : null;
}

export interface OptionHeader {
  option: number;
  length: number;
}

/** An option's header, or null when its magic is wrong. */
export function optionHeader(bytes: Buffer): OptionHeader | null {
  if (bytes.readBigUInt64BE(0) !== IHAVEOPT) return null;
  return { option: bytes.readUInt32BE(8), length: bytes.readUInt32BE(12) };
}

export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** An error reply carries a message for the human at the client. */
export function optionError(option: number, type: number, message: string): Buffer {
  return optionReply(option, type, Buffer.from(message, 'utf8'));
}

/** NBD_REP_SERVER's data: the export's name (as LIST gives it). */
export function serverEntry(name: string): Buffer {
  const text = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + text.length);
  b.writeUInt32BE(text.length, 0);
  text.copy(b, 4);
  return b;
}

/** INFO and GO: the export asked for and the information items wanted; null when malformed. */
export function infoRequest(data: Buffer): { name: string; items: number[] } | null {
  if (data.length < 6) return null;
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6) return null;
  const name = data.toString('utf8', 4, 4 + nameLength);
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 6 + nameLength + 2 * count) return null;
  const items: number[] = [];
  for (let i = 0; i < count; i++) items.push(data.readUInt16BE(6 + nameLength + 2 * i));
  return { name, items };
}

export function exportInfo(size: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(INFO.EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

export function textInfo(type: typeof INFO.NAME | typeof INFO.DESCRIPTION, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(2 + bytes.length);
  b.writeUInt16BE(type, 0);
  bytes.copy(b, 2);
  return b;
}

export function blockSizeInfo(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(INFO.BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum, 10);
  return b;
}

/** The end of NBD_OPT_EXPORT_NAME: size and flags, and the old zero padding unless refused. */
export function exportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

export interface Request {
  flags: number;
  type: number;
  /** Opaque: sent back as it came. */
  cookie: Buffer;
  /** NaN when the client's offset is past what a number holds exactly. */
  offset: number;
  length: number;
}

/** A request's header, or null when its magic is wrong (the session must end). */
export function request(bytes: Buffer): Request | null {
  if (bytes.readUInt32BE(0) !== REQUEST_MAGIC) return null;
  const offset = bytes.readBigUInt64BE(16);
  return {
    flags: bytes.readUInt16BE(4),
    type: bytes.readUInt16BE(6),
    cookie: Buffer.from(bytes.subarray(8, 16)),
    offset: offset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(offset) : NaN,
    length: bytes.readUInt32BE(24),
  };
}

/** A simple reply's header; a successful read's data follows it. */
export function simpleReply(error: number, cookie: Buffer): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  cookie.copy(b, 8);
  return b;
}

/**
 * Exact-length reads from a socket: the handshake and the transmission phase read
 * frames of known sizes. The socket flows while a read waits for bytes or while fewer
 * than `highWater` bytes are held, and is paused otherwise: a client that sends faster
 * than its requests are served fills no memory of ours.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiting: {
    bytes: number;
    resolve: (b: Buffer) => void;
    reject: (e: Error) => void;
  } | null = null;
  private ended: Error | null = null;

  constructor(
    private readonly socket: NodeJS.ReadableStream & { pause(): void; resume(): void },
    private readonly highWater = 1024 * 1024,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.serve();
    });
    const end = (e?: Error): void => {
      this.ended ??= e ?? new Error('the client closed the connection');
      this.serve();
    };
    socket.on('end', () => end());
    socket.on('close', () => end());
    socket.on('error', end);
  }

  /** Exactly `bytes` bytes; rejects once the connection ends short of them. */
  read(bytes: number): Promise<Buffer> {
    if (this.waiting) throw new Error('one read at a time');
    return new Promise<Buffer>((resolve, reject) => {
      this.waiting = { bytes, resolve, reject };
      this.serve();
    });
  }

  private serve(): void {
    const w = this.waiting;
    if (w && this.buffered >= w.bytes) {
      this.waiting = null;
      w.resolve(this.take(w.bytes));
    } else if (w && this.ended) {
      this.waiting = null;
      w.reject(this.ended);
    }
    if (this.waiting || this.buffered < this.highWater) this.socket.resume();
    else this.socket.pause();
  }

  private take(bytes: number): Buffer {
    const whole = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = whole.subarray(0, bytes);
    const rest = whole.subarray(bytes);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}
