// The web bridge's static files: the built renderer (dist/renderer), read-only, never
// anything outside it, and a placeholder page while it is not built. No secret is
// served here: the page gets its token from the URL fragment the bridge printed, which
// the browser never sends.

import fs from 'node:fs';
import path from 'node:path';

export const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
};

export const PLACEHOLDER = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DriveTwin</title></head>
<body><h1>DriveTwin</h1>
<p>The bridge is running, but the renderer is not built yet (no dist/renderer/index.html).
Build it, then reload this page.</p></body></html>
`;

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The file to serve for `pathname`: null for the placeholder, 'forbidden' outside the root. */
export function resolveFile(root: string, pathname: string): string | null | 'forbidden' {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return 'forbidden';
  }
  if (decoded.includes('\0')) return 'forbidden';
  const index = path.join(root, 'index.html');
  const wanted = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
  if (wanted !== root && !wanted.startsWith(root + path.sep)) return 'forbidden';
  if (isFile(wanted)) return wanted;
  // An app route (no extension) gets the app; a missing asset is missing.
  if (path.extname(decoded) === '' && isFile(index)) return index;
  if (!isFile(index)) return path.extname(decoded) === '' ? null : 'forbidden';
  return 'forbidden';
}
