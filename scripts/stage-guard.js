// electron-builder's beforeBuild hook (electron-builder.yml): it runs just before
// electron-builder rebuilds the app's native modules for Electron, in the app folder
// itself. That folder must be the staged copy `npm run dist` makes (scripts/dist.ts),
// never the checkout, whose node_modules must stay built for Node (the command line,
// the tests, `npm run web`).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

// Keep in step with STAGE_MARK in scripts/dist.ts.
const STAGE_MARK = '.drivetwin-stage';

module.exports = async function beforeBuild({ appDir }) {
  if (!fs.existsSync(path.join(appDir, STAGE_MARK))) {
    throw new Error(
      `${appDir} is not a staged app: electron-builder would rebuild its node_modules for ` +
        'Electron in place. Package with `npm run dist` (it stages the app in release/app).',
    );
  }
  return true; // go on: rebuild the staged copy
};
