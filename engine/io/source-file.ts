// The file a stream source is read from: on this machine (LocalFile, here), or at an
// http(s) URL (io/http). The formats (io/compressed) read their headers, indexes and
// data through it, so a download and a file are decoded by the same code.

import fs from 'node:fs';
import type { Readable } from 'node:stream';

/** Bytes read from a file at a time, and the largest chunk a stream hands out. */
export const INPUT_CHUNK = 1024 * 1024;

export interface SourceFile {
  /** Its path or its URL: what messages call it. */
  readonly name: string;
  /** Bytes; null while a server hasn't said (no Content-Length). */
  readonly size: number | null;
  /** Its path, for a file on this machine: decoding threads then read it themselves. */
  readonly localPath: string | null;
  /** Reading a few bytes anywhere costs only those bytes (a file; a server that honours Range). */
  readonly seekable: boolean;
  /**
   * A stream may begin anywhere for the cost of what it reads from there. False where
   * every stream is read from the file's start (to hash it whole): a decoder then reads
   * on rather than starting again further on.
   */
  readonly restartable: boolean;
  /** Up to `length` bytes at `position`; fewer only at the end. */
  read(position: number, length: number): Promise<Buffer>;
  /**
   * Bytes [start, end) (end: the file's end) in chunks of at most INPUT_CHUNK, read as
   * they are consumed; `counter.bytes` counts what it hands out.
   */
  stream(counter: { bytes: number }, start?: number, end?: number): Readable;
  /** A download: where from, and how it goes; null for a file on this machine. */
  readonly download: Download | null;
}

/** A connection that failed and is tried again. */
export interface RetryNotice {
  url: string;
  /** Where in the file the download stood. */
  position: number;
  /** This try, and how many are made before giving up. */
  attempt: number;
  attempts: number;
  delayMs: number;
  /** What went wrong, in words. */
  reason: string;
}

/** What a download is: the server's file as first seen, and what it costs so far. */
export interface Download {
  readonly url: string;
  /** What the server said names this version of the file (a changed file has others). */
  readonly etag: string | null;
  readonly lastModified: string | null;
  /** SHA-256 of its first bytes (up to 64 KiB), as first downloaded. */
  readonly headSha256: string;
  /** The SHA-256 the file must hash to (lowercase hex), and who said so; null: none. */
  readonly sha256: ExpectedHash | null;
  /** Bytes received from the server (headers and indexes, re-sent and dropped ones included). */
  readonly received: number;
  /** Connections that failed and were tried again. */
  readonly retries: number;
  /** The whole file was read and hashed: true when it matched. Null until then. */
  readonly checked: boolean | null;
  onRetry(listener: (notice: RetryNotice) => void): () => void;
  /** The job stops: a connection that failed is not tried again, a pause before one ends now. */
  giveUp(): void;
}

export interface ExpectedHash {
  hex: string;
  /** 'given' (the user), or the URL of the .sha256 file it was read from. */
  from: string;
}

/** A file on this machine. */
export class LocalFile implements SourceFile {
  readonly seekable = true;
  readonly restartable = true;
  readonly download = null;

  constructor(
    readonly name: string,
    readonly size: number,
  ) {}

  /** Throws the ErrnoException stat gives (missing, unreadable). */
  static open(file: string): LocalFile {
    return new LocalFile(file, fs.statSync(file).size);
  }

  get localPath(): string {
    return this.name;
  }

  async read(position: number, length: number): Promise<Buffer> {
    const handle = await fs.promises.open(this.name, 'r');
    try {
      const buf = Buffer.alloc(Math.max(0, Math.min(length, this.size - position)));
      let done = 0;
      while (done < buf.length) {
        const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return buf.subarray(0, done);
    } finally {
      await handle.close();
    }
  }

  stream(counter: { bytes: number }, start = 0, end?: number): Readable {
    const stream = fs.createReadStream(this.name, {
      start,
      end: end === undefined ? undefined : end - 1,
      highWaterMark: INPUT_CHUNK,
    });
    stream.on('data', (chunk) => {
      counter.bytes += chunk.length;
    });
    return stream;
  }
}
