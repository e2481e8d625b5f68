#!/usr/bin/env node
// Runs every compiled test file with Node's test runner, one file at a time
// (integration tests share loop devices), prints the spec report and ends with
// "N passed, N failed" counting leaf tests only.
'use strict';
const { run } = require('node:test');
const { spec: Spec } = require('node:test/reporters');
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
  .filter((f) => only.length === 0 || only.some((o) => path.relative(root, f).includes(o)))
  .sort();

// Node 20 reports a test after all its subtests, so a result at nesting n is a
// leaf when no result at nesting n+1 arrived since the previous result at n.
// A file is a wrapper test named by its path: it only reports when it has no
// subtests (empty file: not counted; failing at load: counted as a failure).
let passed = 0;
let failed = 0;
let skipped = 0;
const hadChild = [];
const failBelow = [];
function result(t, ok) {
  const n = t.nesting;
  const leaf = !hadChild[n + 1];
  const childFailed = failBelow[n + 1];
  hadChild[n + 1] = failBelow[n + 1] = false;
  hadChild[n] = true;
  if (t.todo || t.skip) skipped += leaf ? 1 : 0;
  else if (ok) passed += leaf && t.name !== t.file ? 1 : 0;
  else {
    failBelow[n] = true;
    failed += leaf || !childFailed ? 1 : 0; // a failing hook on a parent still counts
  }
}

const stream = run({ files, concurrency: 1, timeout: 30 * 60 * 1000 });
stream.on('test:pass', (t) => result(t, true));
stream.on('test:fail', (t) => result(t, false));
const report = stream.compose(new Spec());
report.pipe(process.stdout, { end: false });
report.on('end', () => {
  if (skipped > 0) console.log(`${skipped} skipped`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
});
