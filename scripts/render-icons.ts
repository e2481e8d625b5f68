// Renders the app icon, build/icon.svg, to the PNGs electron-builder packs:
// build/icons/NxN.png (Linux takes the folder; macOS its .icns from 1024x1024, Windows
// its .ico from 256x256, both derived by electron-builder on the build machine) and
// build/icon.png (512). The PNGs are committed; run this again after changing the SVG:
//
//   npx tsc -p tsconfig.json && node dist/scripts/render-icons.js
//
// Chromium draws the SVG as an <img> at each size, so the SVG's own media queries
// (less detail at small sizes) apply. CHROMIUM_PATH picks the browser (default: Debian's
// /usr/bin/chromium).

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const ICON_SIZES = [16, 24, 32, 48, 64, 128, 256, 512, 1024] as const;

const ROOT = path.join(__dirname, '..', '..');
const BUILD = path.join(ROOT, 'build');

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function page(svgDataUrl: string, size: number): string {
  return (
    '<!doctype html><html><head><style>' +
    'html,body{margin:0;padding:0;background:transparent;overflow:hidden}' +
    `img{display:block;width:${size}px;height:${size}px}` +
    `</style></head><body><img alt="" src="${svgDataUrl}"></body></html>`
  );
}

async function main(): Promise<void> {
  const svg = fs.readFileSync(path.join(BUILD, 'icon.svg'));
  const src = `data:image/svg+xml;base64,${svg.toString('base64')}`;
  fs.mkdirSync(path.join(BUILD, 'icons'), { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  try {
    const tab = await browser.newPage({ deviceScaleFactor: 1 });
    for (const size of ICON_SIZES) {
      await tab.setViewportSize({ width: size, height: size });
      await tab.setContent(page(src, size), { waitUntil: 'load' });
      const png = await tab.screenshot({
        omitBackground: true,
        clip: { x: 0, y: 0, width: size, height: size },
      });
      const out = path.join(BUILD, 'icons', `${size}x${size}.png`);
      fs.writeFileSync(out, png);
      process.stdout.write(`${path.relative(ROOT, out)}\n`);
    }
  } finally {
    await browser.close();
  }
  fs.copyFileSync(path.join(BUILD, 'icons', '512x512.png'), path.join(BUILD, 'icon.png'));
  process.stdout.write('build/icon.png\n');
}

main().catch((e: Error) => {
  process.stderr.write(`render-icons: ${e.message}\n`);
  process.exit(1);
});
