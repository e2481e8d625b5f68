// Native builds for another runtime, made here: what Node's loader meets when a module
// was compiled for Electron (or the other way round).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * A .node in `dir` that registers itself for NODE_MODULE_VERSION `abi`, as every module
 * built against another runtime's headers does (Electron's set it through
 * NODE_EMBEDDER_MODULE_VERSION: 150 for Electron 45), compiled against this Node's own
 * headers. `dir` must allow mapping code (not a noexec mount).
 */
export function addonForAbi(dir: string, abi: number, name = 'better_sqlite3.node'): string {
  const source = path.join(dir, 'addon.cc');
  fs.writeFileSync(
    source,
    '#include <node.h>\nNODE_MODULE_INIT(/* exports, module, context */) {}\n',
  );
  const out = path.join(dir, name);
  // Where node-gyp finds this Node's headers (its nodedir).
  const include = path.join(path.dirname(path.dirname(process.execPath)), 'include', 'node');
  execFileSync('g++', [
    '-shared',
    '-fPIC',
    '-std=c++17',
    `-I${include}`,
    `-DNODE_EMBEDDER_MODULE_VERSION=${abi}`,
    '-DNODE_GYP_MODULE_NAME=better_sqlite3',
    '-o',
    out,
    source,
  ]);
  return out;
}
