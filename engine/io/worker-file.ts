// Where a worker thread's compiled module is. Packaged, it is read from app.asar.unpacked
// (electron-builder unpacks dist/engine/**): a worker thread can't be relied on to load a
// script from inside the asar archive.

import path from 'node:path';

/** `name` (a compiled .js module) in `dir`, outside the asar archive. */
export function workerFile(dir: string, name: string): string {
  return path.join(dir, name).replace(/([\\/])app\.asar([\\/])/, '$1app.asar.unpacked$2');
}
