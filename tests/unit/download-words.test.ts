// What a user gives a download, read as they mean it: the environment's proxy and
// NO_PROXY, a sha256sum listing, --sha256, the patience settings, the format of a URL's
// first bytes, and the errors said in words.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compressionOfHead } from '../../engine/io/compressed/index';
import { hashFor, urlFileName } from '../../engine/io/http/checksum-file';
import { downloadError, isTransient, statusError } from '../../engine/io/http/errors';
import { proxyFor } from '../../engine/io/http/proxy';
import { tuning } from '../../engine/io/http/tuning';
import { isUrl, parseSha256 } from '../../engine/io/http/url';

const at = (url: string) => new URL(url);

test('HTTPS_PROXY for https, HTTP_PROXY for http, lower case first; NO_PROXY names hosts and their subdomains', () => {
  const env = { HTTPS_PROXY: 'http://proxy:3128', http_proxy: 'proxy:8080' };
  assert.equal(proxyFor(at('https://example.org/a.img'), env)?.href, 'http://proxy:3128/');
  assert.equal(proxyFor(at('http://example.org/a.img'), env)?.href, 'http://proxy:8080/');
  assert.equal(proxyFor(at('https://example.org/'), {}), null);
  const bypass = { ...env, NO_PROXY: 'example.org, .internal,10.0.0.1,mirror.net:8443' };
  assert.equal(proxyFor(at('https://example.org/'), bypass), null);
  assert.equal(proxyFor(at('https://dl.example.org/'), bypass), null, 'a subdomain');
  assert.equal(proxyFor(at('https://host.internal/'), bypass), null, 'a leading dot');
  assert.equal(proxyFor(at('https://10.0.0.1/'), bypass), null);
  assert.equal(proxyFor(at('https://mirror.net:8443/'), bypass), null, 'its port');
  assert.notEqual(proxyFor(at('https://mirror.net/'), bypass), null, 'another port');
  assert.notEqual(proxyFor(at('https://notexample.org/'), bypass), null, 'not a suffix of a label');
  assert.equal(proxyFor(at('https://anything/'), { ...env, no_proxy: '*' }), null);
  assert.throws(
    () => proxyFor(at('https://a/'), { HTTPS_PROXY: 'socks5://p:1080' }),
    /only http:\/\/ proxies/,
  );
});

test('a sha256sum listing: the line naming the file, or its only hash', () => {
  const a = 'a'.repeat(64);
  const b = 'B'.repeat(64);
  assert.equal(hashFor(`${a}  other.img.xz\n${b} *disk.img.xz\n`, 'disk.img.xz'), 'b'.repeat(64));
  assert.equal(hashFor(`${a}  2024-raspios.img.xz\n`, 'latest'), a, 'the only one');
  assert.equal(hashFor(`${a}\n`, 'disk.img'), a, 'a bare hash');
  assert.equal(hashFor(`${a}  x\n${b}  y\n`, 'z'), null, 'several, none named');
  assert.equal(hashFor('<html>not found</html>', 'disk.img'), null);
  assert.equal(urlFileName('https://h/dir/My%20Disk.img.xz?x=1'), 'My Disk.img.xz');
});

test('--sha256 takes 64 hexadecimal digits, any case; a URL is http(s) only', () => {
  assert.equal(parseSha256(` ${'Ab'.repeat(32)} `), 'ab'.repeat(32));
  assert.equal(parseSha256('ab'.repeat(31)), null);
  assert.equal(parseSha256('g'.repeat(64)), null);
  assert.ok(isUrl('https://h/a') && isUrl('HTTP://h/a'));
  assert.ok(!isUrl('ftp://h/a') && !isUrl('/tmp/https:/x'));
});

test('patience: defaults, and the environment in seconds', () => {
  assert.deepEqual(tuning({}), { timeoutMs: 30_000, attempts: 8, firstDelayMs: 1000 });
  assert.deepEqual(
    tuning({
      DRIVETWIN_HTTP_TIMEOUT: '2.5',
      DRIVETWIN_HTTP_RETRIES: '0',
      DRIVETWIN_HTTP_RETRY_DELAY: '0.1',
    }),
    { timeoutMs: 2500, attempts: 0, firstDelayMs: 100 },
  );
  assert.equal(tuning({ DRIVETWIN_HTTP_TIMEOUT: 'soon' }).timeoutMs, 30_000);
});

test("a URL's format by its first bytes; by its name only for a zip", () => {
  const xz = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 4]);
  assert.equal(compressionOfHead('https://h/download', 'download', xz), 'xz');
  assert.equal(compressionOfHead('https://h/disk.img', 'disk.img', Buffer.alloc(16)), null);
  assert.equal(compressionOfHead('https://h/a.zip', 'a.zip', Buffer.alloc(16)), 'zip');
  assert.throws(
    () => compressionOfHead('https://h/a.img.xz', 'a.img.xz', Buffer.alloc(16)),
    /named like a xz file, but it does not start like one/,
  );
});

test('what is tried again, and what is said', () => {
  assert.ok(isTransient(statusError('u', 0, 503, 'Service Unavailable')));
  assert.ok(isTransient(statusError('u', 0, 429, undefined)));
  assert.ok(!isTransient(statusError('u', 0, 404, 'Not Found')));
  assert.ok(isTransient(Object.assign(new Error('x'), { code: 'ECONNRESET' })));
  assert.ok(!isTransient(Object.assign(new Error('x'), { code: 'CERT_HAS_EXPIRED' })));
  const cert = downloadError(
    'https://h/a',
    0,
    Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' }),
  );
  assert.match(
    cert.message,
    /^https:\/\/h\/a: the server's certificate can't be trusted \(CERT_HAS_EXPIRED/,
  );
  const dns = downloadError(
    'https://nowhere.invalid/a',
    0,
    Object.assign(new Error('x'), { code: 'ENOTFOUND' }),
  );
  assert.match(dns.message, /no server named nowhere\.invalid can be found/);
});
