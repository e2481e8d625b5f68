// The renderer's Content Security Policy, in one place: the renderer's build writes it
// into index.html as a <meta> tag — what holds in Electron, where the page is loaded from
// file:// and gets no response headers — and the web bridge sends it as a header too.
//
// No imports: the renderer's Vite config can import this file as it is.
//
// Only our own files: no remote origin anywhere, no inline or evaluated script, no
// plugins, no <base>, no forms, no framing. Styles are 'self' too: Svelte sets dynamic
// styles through the CSSOM (element.style), which a CSP does not restrict; what it
// does restrict is a static `style="…"` attribute in markup — use a class instead.

export const CSP_DIRECTIVES: ReadonlyArray<readonly [string, string]> = [
  ['default-src', "'self'"],
  ['script-src', "'self'"],
  ['style-src', "'self'"],
  ['connect-src', "'self'"],
  ['img-src', "'self' data:"],
  ['font-src', "'self'"],
  ['frame-src', "'none'"],
  ['object-src', "'none'"],
  ['base-uri', "'none'"],
  ['form-action', "'none'"],
  ['frame-ancestors', "'none'"],
];

/** Directives a <meta> tag can't carry (browsers ignore them there, with a warning). */
const HEADER_ONLY = new Set(['frame-ancestors', 'report-uri', 'sandbox']);

/** The policy as a response header. */
export const CONTENT_SECURITY_POLICY = CSP_DIRECTIVES.map(([d, v]) => `${d} ${v}`).join('; ');

/** The same policy for `<meta http-equiv="Content-Security-Policy" content="…">`. */
export const CSP_META_POLICY = CSP_DIRECTIVES.filter(([d]) => !HEADER_ONLY.has(d))
  .map(([d, v]) => `${d} ${v}`)
  .join('; ');

/** The whole tag, ready to put first in <head>. */
export const CSP_META_TAG = `<meta http-equiv="Content-Security-Policy" content="${CSP_META_POLICY}">`;

/** The policy of a page's CSP <meta> tag, or null when it has none. */
export function cspMetaOf(html: string): string | null {
  for (const tag of html.match(/<meta\b[^>]*>/gi) ?? []) {
    if (!/http-equiv\s*=\s*["']?content-security-policy["']?/i.test(tag)) continue;
    const content = /\bcontent\s*=\s*"([^"]*)"|\bcontent\s*=\s*'([^']*)'/i.exec(tag);
    const value = content ? (content[1] ?? content[2]) : '';
    return value
      .replace(/&#39;|&#x27;|&apos;/gi, "'")
      .replace(/&quot;/gi, '"')
      .replace(/&amp;/gi, '&');
  }
  return null;
}
