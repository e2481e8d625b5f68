// What can go wrong with a download, in words a user can act on, and which of it is
// worth trying again (a dropped connection, a server that failed for a moment) and
// which is not (no such file, an untrusted certificate, a file that changed).

import { DeviceError } from '../device';

/** A download that failed: `code` says how (ours, Node's or the HTTP status's). */
export class DownloadError extends DeviceError {
  constructor(
    op: DeviceError['op'],
    url: string,
    offset: number,
    code: string,
    /** What happened, in words (the message is the URL and this). */
    readonly detail: string,
    /** The HTTP status, where the server answered with one. */
    readonly status: number | null = null,
  ) {
    super(op, url, offset, 0, Object.assign(new Error(detail), { code }));
    this.message = `${url}: ${detail}`;
  }
}

/** Codes of failures that may pass: the connection, the name lookup, a stalled server. */
const TRANSIENT = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESTALLED',
  'ESHORT',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'HPE_INVALID_CHUNK_SIZE',
  'HPE_UNEXPECTED_CONTENT_LENGTH',
]);

/** Statuses that say "later": the server failed, is busy, or took too long. */
export function transientStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

/** True: the same request may well work if tried again. */
export function isTransient(e: unknown): boolean {
  if (e instanceof DownloadError && e.status !== null) return transientStatus(e.status);
  const code = (e as NodeJS.ErrnoException).code;
  return code !== undefined && TRANSIENT.has(code);
}

const STATUS_WORDS: Record<number, string> = {
  400: 'the server did not understand the request',
  401: 'the server wants a user name and password for it',
  403: 'the server refuses to give it',
  404: 'there is no file at this address (check the URL)',
  407: 'the proxy wants a user name and password (put them in the proxy URL)',
  408: 'the server gave up waiting',
  410: 'the file was taken away for good',
  429: 'the server is asked too often: try again later',
  500: 'the server failed (an error on its side): try again later',
  502: 'a gateway before the server failed: try again later',
  503: 'the server is unavailable for now: try again later',
  504: 'a gateway before the server gave up waiting for it: try again later',
};

/** An HTTP status that is not the file, in words. */
export function statusError(
  url: string,
  offset: number,
  status: number,
  statusText: string | undefined,
): DownloadError {
  const words =
    STATUS_WORDS[status] ??
    (status >= 500 ? 'the server failed: try again later' : 'the server did not give the file');
  const detail = `${words} (HTTP ${status}${statusText ? ` ${statusText}` : ''})`;
  return new DownloadError('read', url, offset, `HTTP_${status}`, detail, status);
}

/** TLS codes that mean the server's certificate can't be trusted. */
const CERTIFICATE = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME/;

/** Node's error (or ours) as a DownloadError in words, at byte `offset` of `url`. */
export function downloadError(url: string, offset: number, e: unknown): DownloadError {
  if (e instanceof DownloadError) return e;
  const err = e as NodeJS.ErrnoException & { hostname?: string };
  const code = err.code ?? 'EDOWNLOAD';
  const host = safeHost(url);
  let detail: string;
  if (CERTIFICATE.test(code)) {
    detail =
      `the server's certificate can't be trusted (${code}: ${err.message}); nothing was ` +
      'downloaded. A certificate of your own: add it to the system (or NODE_EXTRA_CA_CERTS)';
  } else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    detail = `no server named ${host} can be found (${code}): check the address and the network`;
  } else if (code === 'ECONNREFUSED') {
    detail = `nothing answers at ${host} (${code})`;
  } else if (code === 'ESTALLED' || code === 'ETIMEDOUT') {
    detail = `the server sent nothing for too long (${code})`;
  } else if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE') {
    detail = `the connection was cut (${code})`;
  } else {
    detail = `${err.message}${err.code ? ` (${err.code})` : ''}`;
  }
  return new DownloadError('read', url, offset, code, detail);
}

function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}
