// What a newcomer types first: `npx drivetwin …` prints the program's words and nothing
// from npm (the project's build-from-source setting is not an npm key any more).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(__dirname, '..', '..', '..');

test('npx drivetwin --help: the usage, and no warning from npm', () => {
  const out = execFileSync('npx', ['--no-install', 'drivetwin', '--help'], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  assert.match(out, /^Usage:/);
  const withStderr = execFileSync(
    'sh',
    ['-c', 'npx --no-install drivetwin --help 2>&1 >/dev/null'],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  );
  assert.equal(withStderr, '', 'npx printed on stderr');
});
