// The browser's file dialog shows the backend's files inside the places only: a folder
// outside is refused, `..` doesn't climb out, a symlink leading out is not listed, and
// with a viewer (sudo) what that person could not open is neither listed nor opened.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { listFolder } from '../../main/file-browser';
import { tempDir } from '../helpers/files';

test('inside the places only: no folder outside, no climbing out, no link leading out', (t) => {
  const tmp = tempDir('drivetwin-browse-');
  t.after(() => tmp.cleanup());
  const home = path.join(tmp.dir, 'home');
  const outside = path.join(tmp.dir, 'outside');
  fs.mkdirSync(path.join(home, 'images'), { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(home, 'images', 'sd.img'), Buffer.alloc(4096));
  fs.writeFileSync(path.join(home, '.hidden'), '');
  fs.writeFileSync(path.join(outside, 'secret.img'), '');
  fs.symlinkSync(outside, path.join(home, 'way-out'));
  fs.symlinkSync(path.join(home, 'images'), path.join(home, 'way-in'));
  const opts = { places: [home], viewer: null };

  assert.deepEqual(
    listFolder(undefined, opts).entries.map((e) => e.path),
    [home],
  );
  const top = listFolder(home, opts);
  assert.equal(top.parent, null, 'a place has no parent to go up to');
  assert.deepEqual(
    top.entries.map((e) => [e.name, e.kind]),
    [
      ['images', 'folder'],
      ['way-in', 'folder'],
    ],
  );
  const images = listFolder(path.join(home, 'images'), opts);
  assert.deepEqual(images.entries, [
    { name: 'sd.img', path: path.join(home, 'images', 'sd.img'), kind: 'file', size: 4096 },
  ]);
  assert.equal(images.parent, fs.realpathSync(home));
  assert.throws(() => listFolder(outside, opts), /not in your home folder/);
  assert.throws(
    () => listFolder(path.join(home, '..', 'outside'), opts),
    /not in your home folder/,
  );
  assert.throws(() => listFolder(path.join(home, 'way-out'), opts), /not in your home folder/);
  assert.throws(() => listFolder('images', opts), /full path/);
});

test('for someone behind sudo: what they could not open is not shown', (t) => {
  const tmp = tempDir('drivetwin-browse-');
  t.after(() => tmp.cleanup());
  const home = path.join(tmp.dir, 'home');
  fs.mkdirSync(path.join(home, 'private'), { recursive: true, mode: 0o700 });
  fs.chmodSync(path.join(home, 'private'), 0o700);
  fs.writeFileSync(path.join(home, 'theirs.img'), '', { mode: 0o644 });
  fs.writeFileSync(path.join(home, 'roots.img'), '', { mode: 0o600 });
  fs.chmodSync(path.join(home, 'roots.img'), 0o600);
  fs.chmodSync(home, 0o755);
  fs.chmodSync(tmp.dir, 0o755);
  // Files owned by this process's user; the viewer is someone else, in no group of theirs.
  const viewer = { uid: 4242, gids: [4242], home };
  const listed = listFolder(home, { places: [home], viewer });
  assert.deepEqual(
    listed.entries.map((e) => e.name),
    ['theirs.img'],
  );
  assert.throws(
    () => listFolder(path.join(home, 'private'), { places: [home], viewer }),
    /may not open/,
  );
});
