// A proxy from the environment, read as curl reads it (and Node itself, from 24, with
// NODE_USE_ENV_PROXY): HTTPS_PROXY for https URLs, HTTP_PROXY for http ones (lower case
// first), NO_PROXY the hosts reached directly — a name matches itself and its subdomains,
// "*" every host. An https download goes through an http proxy's CONNECT tunnel, so the
// proxy sees only the host's name; an http one is asked of the proxy by its full URL.

import http from 'node:http';
import type net from 'node:net';
import { DownloadError, statusError } from './errors';

/** The proxy `url` is fetched through, or null: directly. */
export function proxyFor(url: URL, env: NodeJS.ProcessEnv = process.env): URL | null {
  const name = url.protocol === 'https:' ? 'https_proxy' : 'http_proxy';
  const value = env[name] || env[name.toUpperCase()];
  if (!value || bypassed(url, env.no_proxy || env.NO_PROXY || '')) return null;
  let proxy: URL;
  try {
    proxy = new URL(value.includes('://') ? value : `http://${value}`);
  } catch {
    throw new DownloadError('open', url.href, 0, 'EPROXY', `the proxy ${value} is not a URL`);
  }
  if (proxy.protocol !== 'http:') {
    throw new DownloadError(
      'open',
      url.href,
      0,
      'EPROXY',
      `only http:// proxies can be used, not ${proxy.protocol}// (${name.toUpperCase()})`,
    );
  }
  return proxy;
}

/** NO_PROXY says to go directly to `url`'s host. */
function bypassed(url: URL, list: string): boolean {
  if (list.trim() === '*') return true;
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return list
    .split(/[\s,]+/)
    .filter(Boolean)
    .some((entry) => {
      const at = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry.toLowerCase());
      if (!at) return false;
      if (at[2] && at[2] !== port) return false;
      const name = at[1].replace(/^\[|\]$/g, '').replace(/^\*?\./, '');
      return host === name || host.endsWith(`.${name}`);
    });
}

/** The proxy's credentials, as a header, where its URL carries them. */
export function proxyAuthorization(proxy: URL): Record<string, string> {
  if (!proxy.username) return {};
  const user = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'Proxy-Authorization': `Basic ${Buffer.from(user).toString('base64')}` };
}

/** A connection to `target`'s host and port through the proxy's CONNECT. */
export function tunnel(proxy: URL, target: URL, timeoutMs: number): Promise<net.Socket> {
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  const hostPort = `${target.hostname}:${port}`;
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: proxy.hostname,
      port: proxy.port || 80,
      method: 'CONNECT',
      path: hostPort,
      headers: { Host: hostPort, ...proxyAuthorization(proxy) },
      agent: false,
    });
    req.setTimeout(timeoutMs, () =>
      req.destroy(Object.assign(new Error('the proxy did not answer'), { code: 'ESTALLED' })),
    );
    req.once('connect', (res, socket) => {
      req.setTimeout(0);
      if (res.statusCode === 200) return resolve(socket);
      socket.destroy();
      const { code, detail, status } = statusError(
        target.href,
        0,
        res.statusCode ?? 0,
        res.statusMessage,
      );
      const why = `the proxy ${proxy.host} refused to connect: ${detail}`;
      reject(new DownloadError('open', target.href, 0, code ?? 'EPROXY', why, status));
    });
    req.once('error', reject);
    req.end();
  });
}
