// One GET, with Node's own http and https: redirects followed (at most 10, never from
// https down to http), certificates checked against the trusted authorities (trust.ts),
// through the environment's proxy (proxy.ts), the response's bytes as they are sent (no
// content encoding). A server that sends nothing for `timeoutMs` while it is waited for
// fails (ESTALLED); a reader that stops reading (a paused job) is not one.

import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { DownloadError } from './errors';
import { proxyAuthorization, proxyFor, tunnel } from './proxy';
import { trustedContext } from './trust';

const MAX_REDIRECTS = 10;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const USER_AGENT = 'DriveTwin (+https://drivetwin.invalid/)';

export interface Answer {
  status: number;
  statusText: string | undefined;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
  /** Where the file was found, after redirects. */
  url: string;
}

/** A GET of `url`, redirects followed; any status but a redirect is the caller's to judge. */
export async function get(
  url: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<Answer> {
  let at = parse(url);
  for (let hops = 0; ; hops++) {
    const body = await once(at, headers, timeoutMs);
    const status = body.statusCode ?? 0;
    if (!REDIRECTS.has(status)) {
      return { status, statusText: body.statusMessage, headers: body.headers, body, url: at.href };
    }
    body.destroy();
    const fail = (code: string, why: string): never => {
      throw new DownloadError('open', url, 0, code, why, status);
    };
    if (hops === MAX_REDIRECTS) fail('EREDIRECT', `more than ${MAX_REDIRECTS} redirects`);
    const location = body.headers.location;
    if (!location) fail('EREDIRECT', `a redirect (HTTP ${status}) that says nowhere to go`);
    const next = new URL(location!, at);
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      fail('EREDIRECT', `redirected to ${next.protocol}// (only http and https are followed)`);
    }
    if (at.protocol === 'https:' && next.protocol === 'http:') {
      fail('EREDIRECT', `redirected from https to plain http (${next.href}): refused`);
    }
    at = next;
  }
}

function parse(url: string): URL {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === 'http:' || parsed.protocol === 'https:') return parsed;
  } catch {
    // said below
  }
  throw new DownloadError('open', url, 0, 'EURL', 'not an http:// or https:// URL');
}

async function once(
  url: URL,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<http.IncomingMessage> {
  const proxy = proxyFor(url);
  const secure = url.protocol === 'https:';
  const all = {
    'User-Agent': USER_AGENT,
    'Accept-Encoding': 'identity',
    ...headers,
    ...(proxy && !secure ? proxyAuthorization(proxy) : {}),
  };
  const options: https.RequestOptions = { method: 'GET', headers: all, agent: false };
  if (proxy && !secure) {
    // A plain http request is asked of the proxy by the full URL.
    Object.assign(options, { host: proxy.hostname, port: proxy.port || 80, path: url.href });
  } else {
    Object.assign(options, {
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || (secure ? 443 : 80),
      path: `${url.pathname}${url.search}`,
      secureContext: secure ? trustedContext() : undefined,
    });
  }
  // The tunnel under a proxied https request: not closed with it, it would keep the process up.
  let tunnelled: net.Socket | null = null;
  if (proxy && secure) {
    const socket = await tunnel(proxy, url, timeoutMs);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const secured = tls.connect({
      socket,
      host,
      // An address is no server name (RFC 6066): the certificate is checked against it all the same.
      ...(net.isIP(host) ? {} : { servername: host }),
      secureContext: trustedContext(),
    });
    options.createConnection = () => secured;
    tunnelled = socket;
  }
  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).request(options);
    let answered: http.IncomingMessage | null = null;
    req.setTimeout(timeoutMs, () => {
      if (!answered) req.destroy(stalled());
    });
    req.once('response', (res) => {
      // From here the body's reader watches (bodyOf): a paused reader is no stalled server.
      req.setTimeout(0);
      answered = res;
      res.once('close', () => tunnelled?.destroy());
      resolve(res);
    });
    req.once('error', (e) => {
      tunnelled?.destroy();
      reject(e);
    });
    req.end();
  });
}

function stalled(): Error {
  return Object.assign(new Error('nothing came for too long'), { code: 'ESTALLED' });
}

/**
 * The answer's body, chunk by chunk. Waiting more than `timeoutMs` for a chunk fails
 * (ESTALLED); the time the reader takes between chunks does not count. (One watchdog
 * for the whole body: a timer per chunk cost more than the chunk.)
 */
export async function* bodyOf(answer: Answer, timeoutMs: number): AsyncGenerator<Buffer> {
  const chunks = (answer.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let waitingSince: number | null = null;
  const watchdog = setInterval(
    () => {
      if (waitingSince !== null && performance.now() - waitingSince > timeoutMs) {
        answer.body.destroy(stalled());
      }
    },
    Math.max(10, Math.min(1000, timeoutMs / 4)),
  ).unref();
  try {
    for (;;) {
      waitingSince = performance.now();
      const next = await chunks.next();
      waitingSince = null;
      if (next.done) return;
      yield next.value;
    }
  } finally {
    clearInterval(watchdog);
    await chunks.return?.();
  }
}
