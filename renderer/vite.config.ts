// `npm run build:renderer`: the Svelte renderer into dist/renderer, with relative URLs
// (base './') so the same files load from file:// in Electron and over the web bridge.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig, type Plugin } from 'vite';
import { CSP_META_TAG } from '../main/csp';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.resolve(here, '../dist/renderer');

/**
 * tsc also writes into dist/renderer (bridge-client.js, which the integration tests
 * load), so the folder is not emptied; only our own output from the last build goes.
 */
function removePreviousBuild(): Plugin {
  return {
    name: 'drivetwin-remove-previous-build',
    apply: 'build',
    buildStart() {
      fs.rmSync(path.join(outDir, 'assets'), { recursive: true, force: true });
      fs.rmSync(path.join(outDir, 'index.html'), { force: true });
    },
  };
}

/**
 * The Content Security Policy of main/csp.ts, as the first thing in <head>: a page from
 * file:// has no response headers, so in Electron this tag is what holds (main checks
 * at start-up that the built page carries exactly this policy).
 */
function contentSecurityPolicy(): Plugin {
  const existing = /<meta\s+http-equiv=["']Content-Security-Policy["'][^>]*>\s*/i;
  return {
    name: 'drivetwin-content-security-policy',
    transformIndexHtml: {
      order: 'pre',
      handler: (html) => {
        const page = html.replace(existing, '');
        const charset = /<meta\s+charset=[^>]*>(\s*)/i;
        return charset.test(page)
          ? page.replace(charset, (m, space: string) => `${m}${CSP_META_TAG}${space}`)
          : page.replace(/<head>(\s*)/i, `<head>$1${CSP_META_TAG}$1`);
      },
    },
  };
}

export default defineConfig({
  root: here,
  base: './',
  plugins: [svelte(), contentSecurityPolicy(), removePreviousBuild()],
  build: {
    outDir,
    emptyOutDir: false,
    target: 'chrome120',
    // No inline scripts or data: modules: the CSP allows script-src 'self' only.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: true,
  },
});
