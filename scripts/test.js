#!/usr/bin/env node
// Runs every compiled test file with Node's test runner, one file at a time
// (integration tests share loop devices), and ends with "N passed, N failed".
'use strict';
const { run } = require('node:test');
const { spec } = require('node:test/reporters');
const path = require('node:path');
const fs = require('node:fs');

function findTests(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return findTests(full);
    return entry.name.endsWith('.test.js') ? [full] : [];
  });
}

const root = path.join(__dirname, '..', 'dist', 'tests');
const only = process.argv.slice(2);
const files = findTests(root)
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
let passed = 0;
let failed = 0;
const stream = run({ files, concurrency: 1, timeout: 20 * 60 * 1000 });
stream.on('test:pass', (t) => {
  if (t.details.type !== 'suite' && t.nesting >= 0 && !t.skip) passed += t.file ? 1 : 0;
});
stream.on('test:fail', (t) => {
  if (t.details.type !== 'suite') failed += 1;
});
stream.compose(spec).pipe(process.stdout);
stream.on('end', () => {
  console.log(`\n${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
});
