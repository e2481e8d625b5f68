// A file at an http(s) URL, read as a SourceFile: small reads (headers, indexes) with
// Range requests, streams that survive a dropped connection — tried again after a
// growing pause, from the byte they reached, with If-Range so that a file changed on the
// server is never mixed with the old one — and, where a SHA-256 is expected, every stream
// read from the file's start and hashed whole as it passes: a mismatch fails its end.
// A server that ignores Range still works: what comes before the byte wanted is dropped.

import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import type { Download, ExpectedHash, RetryNotice, SourceFile } from '../source-file';
import { DownloadError, downloadError, isTransient, statusError } from './errors';
import { type Answer, bodyOf, get } from './request';
import { type Tuning, tuning } from './tuning';

/** The first bytes, fetched on opening: enough to recognise any format by. */
export const HEAD_BYTES = 64 * 1024;
/** Small reads are fetched in windows of this, and the last few kept. */
const WINDOW = 64 * 1024;
const WINDOWS_KEPT = 32;

/** What the server says of the file, and of this version of it. */
interface Version {
  size: number | null;
  etag: string | null;
  lastModified: string | null;
}

export class RemoteFile extends EventEmitter implements SourceFile, Download {
  readonly localPath = null;
  received = 0;
  retries = 0;
  checked: boolean | null = null;
  /** Set once the server answered a Range request with the whole file. */
  private rangesIgnored = false;
  /** Set when the job stops: failures are no longer tried again, pauses end now. */
  private givenUp = false;
  private readonly sleepers = new Set<() => void>();
  private readonly windows = new Map<number, Buffer>();

  private constructor(
    readonly url: string,
    /** Where the server had it, after redirects (each request follows them afresh). */
    readonly foundAt: string,
    private readonly version: Version,
    private readonly ranges: boolean,
    private readonly head: Buffer,
    readonly headSha256: string,
    private expected: ExpectedHash | null,
    private readonly settings: Tuning,
  ) {
    super();
    this.received = head.length;
  }

  /**
   * Asks for the file's first HEAD_BYTES: what the answer says is the file (its size, its
   * version, whether ranges are served), and its first bytes. A status that is not the file
   * throws a DownloadError in words; nothing is tried again here: the user is there to see.
   */
  static async open(url: string, sha256: ExpectedHash | null): Promise<RemoteFile> {
    const settings = tuning();
    let answer: Answer;
    try {
      answer = await get(url, { Range: `bytes=0-${HEAD_BYTES - 1}` }, settings.timeoutMs);
    } catch (e) {
      throw opening(downloadError(url, 0, e));
    }
    try {
      const { status, headers } = answer;
      if (status === 416 && /\/0$/.test(headers['content-range'] ?? '')) {
        const none = Buffer.alloc(0);
        const version = { size: 0, ...validators(answer) };
        return new RemoteFile(url, answer.url, version, false, none, hash(none), sha256, settings);
      }
      if (status !== 200 && status !== 206) {
        throw opening(statusError(url, 0, status, answer.statusText));
      }
      const total = status === 206 ? rangeTotal(headers['content-range']) : contentLength(answer);
      const head = await firstBytes(answer, HEAD_BYTES, settings.timeoutMs);
      const ranges = status === 206 && total !== null && headers['accept-ranges'] !== 'none';
      const version = { size: total, ...validators(answer) };
      return new RemoteFile(url, answer.url, version, ranges, head, hash(head), sha256, settings);
    } catch (e) {
      throw opening(downloadError(url, 0, e));
    } finally {
      answer.body.destroy();
    }
  }

  get name(): string {
    return this.url;
  }

  get download(): Download {
    return this;
  }

  get size(): number | null {
    return this.version.size;
  }

  get etag(): string | null {
    return this.version.etag;
  }

  get lastModified(): string | null {
    return this.version.lastModified;
  }

  /** The first bytes, as the opening request had them. */
  get firstBytes(): Buffer {
    return this.head;
  }

  get sha256(): ExpectedHash | null {
    return this.expected;
  }

  /** The hash the file must have, found after opening it (a .sha256 file): before any stream. */
  expect(hash: ExpectedHash): void {
    this.expected = hash;
  }

  get seekable(): boolean {
    return this.ranges && !this.rangesIgnored;
  }

  get restartable(): boolean {
    return this.seekable && this.sha256 === null;
  }

  giveUp(): void {
    this.givenUp = true;
    for (const wake of this.sleepers) wake();
  }

  onRetry(listener: (notice: RetryNotice) => void): () => void {
    this.on('retry', listener);
    return () => this.off('retry', listener);
  }

  async read(position: number, length: number): Promise<Buffer> {
    const end = this.size === null ? position + length : Math.min(position + length, this.size);
    if (end <= position) return Buffer.alloc(0);
    if (end <= this.head.length) return this.head.subarray(position, end);
    // Larger reads go straight to the server; small ones through the windows kept.
    if (end - position > 4 * WINDOW) return this.fetch(position, end);
    const first = Math.floor(position / WINDOW);
    const last = Math.floor((end - 1) / WINDOW);
    const missing: number[] = [];
    for (let w = first; w <= last; w++) if (!this.windows.has(w)) missing.push(w);
    if (missing.length > 0) {
      const from = missing[0] * WINDOW;
      const to = Math.min((missing[missing.length - 1] + 1) * WINDOW, this.size ?? Infinity);
      const got = await this.fetch(from, to);
      for (let w = missing[0]; w * WINDOW < from + got.length; w++) {
        this.keep(w, got.subarray(w * WINDOW - from, (w + 1) * WINDOW - from));
      }
    }
    const parts: Buffer[] = [];
    for (let w = first; w <= last; w++) {
      const window = this.windows.get(w);
      if (!window) break;
      parts.push(window);
    }
    const joined = Buffer.concat(parts);
    return joined.subarray(position - first * WINDOW, end - first * WINDOW);
  }

  stream(counter: { bytes: number }, start = 0, end?: number): Readable {
    const chunks = this.chunks(counter, start, end ?? this.size, this.sha256 !== null);
    return Readable.from(chunks, { objectMode: false, highWaterMark: 1 });
  }

  private keep(index: number, bytes: Buffer): void {
    this.windows.delete(index);
    this.windows.set(index, Buffer.from(bytes));
    if (this.windows.size > WINDOWS_KEPT) this.windows.delete(this.windows.keys().next().value!);
  }

  /** Bytes [from, to), whole (fewer at the file's end), not hashed. */
  private async fetch(from: number, to: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const chunk of this.chunks({ bytes: 0 }, from, to, false)) parts.push(chunk);
    return Buffer.concat(parts);
  }

  /**
   * Bytes [start, end) (end null: as far as the server sends), as they come. Hashed: the
   * download runs from the file's first byte to its last whatever is handed out, and its
   * end is a ChecksumError when the hash is not the one expected.
   */
  private async *chunks(
    counter: { bytes: number },
    start: number,
    end: number | null,
    hashed: boolean,
  ): AsyncGenerator<Buffer> {
    const hasher = hashed ? crypto.createHash('sha256') : null;
    // Where the download stands, and where it stops.
    let at = hasher ? 0 : start;
    const until = hasher ? this.size : end;
    let failures = 0;
    while (until === null || at < until) {
      let answer: Answer | null = null;
      try {
        answer = await get(this.url, this.rangeHeaders(at, until), this.settings.timeoutMs);
        let drop = this.check(answer, at);
        for await (const raw of bodyOf(answer, this.settings.timeoutMs)) {
          this.received += raw.length;
          let chunk = raw;
          if (drop > 0) {
            const n = Math.min(drop, chunk.length);
            drop -= n;
            chunk = chunk.subarray(n);
          }
          if (until !== null) chunk = chunk.subarray(0, Math.max(0, until - at));
          if (chunk.length === 0) continue;
          hasher?.update(chunk);
          const from = Math.max(0, start - at);
          const to = end === null ? chunk.length : Math.min(chunk.length, end - at);
          at += chunk.length;
          failures = 0;
          if (to > from) {
            counter.bytes += to - from;
            yield chunk.subarray(from, to);
          }
          if (until !== null && at >= until) break;
        }
        if (until === null) break; // the server's end is the file's
        if (at < until) {
          const short = Object.assign(new Error('the connection ended early'), { code: 'ESHORT' });
          throw short;
        }
      } catch (e) {
        if (this.givenUp || !isTransient(e) || ++failures > this.settings.attempts) {
          throw downloadError(this.url, at, e);
        }
        await this.pause(at, failures, downloadError(this.url, at, e));
        if (this.givenUp) throw downloadError(this.url, at, e);
      } finally {
        answer?.body.destroy();
      }
    }
    if (hasher) this.verdict(hasher.digest('hex'), at);
  }

  private rangeHeaders(at: number, until: number | null): Record<string, string> {
    if (at === 0 && (until === null || until === this.size)) return {};
    const headers: Record<string, string> = {
      Range: `bytes=${at}-${until === null ? '' : until - 1}`,
    };
    // The range only from this version of the file; another answers with all of it.
    const strong = this.etag && !this.etag.startsWith('W/') ? this.etag : null;
    const ifRange = strong ?? this.lastModified;
    if (ifRange) headers['If-Range'] = ifRange;
    return headers;
  }

  /**
   * What the answer to a request from `at` holds: how many bytes to drop before byte `at`
   * (the server sent the file from its start). A changed file is an error (ECHANGED).
   */
  private check(answer: Answer, at: number): number {
    const { status, headers } = answer;
    if (status === 416) throw this.changed(at, 'it is shorter now');
    if (status !== 200 && status !== 206) {
      throw statusError(this.url, at, status, answer.statusText);
    }
    const now = validators(answer);
    const { etag, lastModified } = this.version;
    if (etag && now.etag && etag !== now.etag) {
      throw this.changed(at, `its ETag was ${etag}, now ${now.etag}`);
    }
    if (lastModified && now.lastModified && lastModified !== now.lastModified) {
      throw this.changed(at, `it was last modified ${lastModified}, now ${now.lastModified}`);
    }
    const size = status === 206 ? rangeTotal(headers['content-range']) : contentLength(answer);
    if (this.size !== null && size !== null && size !== this.size) {
      throw this.changed(at, `it was ${this.size} bytes, now ${size}`);
    }
    if (status === 206) {
      const from = rangeStart(headers['content-range']);
      if (from !== at) {
        throw new DownloadError(
          'read',
          this.url,
          at,
          'EPROTO',
          `asked for byte ${at}, the server sent byte ${from}`,
        );
      }
      return 0;
    }
    if (at > 0) this.rangesIgnored = true;
    return at;
  }

  private changed(at: number, how: string): DownloadError {
    return new DownloadError(
      'read',
      this.url,
      at,
      'ECHANGED',
      `the file changed on the server since it was first read (${how}): the two are never ` +
        'mixed; copy it again from the start (clone --fresh)',
    );
  }

  private verdict(actual: string, at: number): void {
    const expected = this.expected!;
    this.checked = actual === expected.hex;
    if (this.checked) return;
    const from = expected.from === 'given' ? 'given' : `from ${expected.from}`;
    throw new DownloadError(
      'read',
      this.url,
      at,
      'ECHECKSUM',
      `the downloaded file's SHA-256 is ${actual}, not ${expected.hex} (${from}): it is not ` +
        'the file expected, and the copy is not done',
    );
  }

  /** Said, then waited: 1 s, 2 s, 4 s… (30 s at most) after each failure in a row. */
  private async pause(at: number, failures: number, why: DownloadError): Promise<void> {
    const delayMs = Math.min(this.settings.firstDelayMs * 2 ** (failures - 1), 30_000);
    this.retries += 1;
    const notice: RetryNotice = {
      url: this.url,
      position: at,
      attempt: failures + 1,
      attempts: this.settings.attempts + 1,
      delayMs,
      reason: why.detail,
    };
    this.emit('retry', notice);
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, delayMs);
      this.sleepers.add(wake);
    });
  }
}

function opening(e: DownloadError): DownloadError {
  return new DownloadError('open', e.path, 0, e.code ?? 'EDOWNLOAD', e.detail, e.status);
}

function hash(bytes: Buffer): string {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

function validators(answer: Answer): Pick<Version, 'etag' | 'lastModified'> {
  return {
    etag: answer.headers.etag ?? null,
    lastModified: answer.headers['last-modified'] ?? null,
  };
}

/** `bytes 0-65535/1234567`: the total, or null where the server says `*`. */
function rangeTotal(header: string | undefined): number | null {
  const total = /\/(\d+)\s*$/.exec(header ?? '');
  return total ? Number(total[1]) : null;
}

function rangeStart(header: string | undefined): number | null {
  const start = /^bytes\s+(\d+)-/.exec(header ?? '');
  return start ? Number(start[1]) : null;
}

function contentLength(answer: Answer): number | null {
  const length = answer.headers['content-length'];
  return length !== undefined && /^\d+$/.test(length) ? Number(length) : null;
}

async function firstBytes(answer: Answer, limit: number, timeoutMs: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let length = 0;
  for await (const chunk of bodyOf(answer, timeoutMs)) {
    parts.push(chunk);
    length += chunk.length;
    if (length >= limit) break;
  }
  return Buffer.concat(parts).subarray(0, limit);
}
