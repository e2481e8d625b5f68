// bzip2 (.bz2). The format states no size. Decoded by the system's bzip2 program where
// there is one (lbzip2 or pbzip2 first: they decode bzip2's independent blocks on every
// core), the file fed through its stdin: several times faster than any decoder in
// JavaScript or WebAssembly on npm. Elsewhere (Windows) unbzip2-stream, in JavaScript.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileSize, fileStream } from './file';
import { StreamDecoder, type Opened } from './source';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const unbzip2 = require('unbzip2-stream') as () => NodeJS.ReadWriteStream;

/** Decompressed bytes held ahead of the reader before the decoder is paused. */
const BUFFERED = 4 * 1024 * 1024;
/** Programs that decode bzip2 to stdout with -dc, fastest first. */
const PROGRAMS = ['lbzip2', 'pbzip2', 'bzip2'];

export async function openBzip2(file: string): Promise<Opened> {
  const compressedSize = fileSize(file);
  const program = findProgram();
  const decoder = () => {
    const counter = { bytes: 0 };
    return new StreamDecoder(
      () => (program ? throughProgram(program, file, counter) : inJavaScript(file, counter)),
      counter,
    );
  };
  return { knownSize: null, compressedSize, decoder };
}

let found: string | null | undefined;

/** The first of PROGRAMS on the PATH (not on Windows, which has none of them). */
function findProgram(): string | null {
  if (found !== undefined) return found;
  found = null;
  if (process.platform === 'win32') return found;
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const name of PROGRAMS) {
    for (const dir of dirs) {
      const candidate = path.join(dir, name);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        found = candidate;
        return found;
      } catch {
        // not here
      }
    }
  }
  return found;
}

/**
 * `program -dc`, the file through its stdin (counted as consumed). Its output ends only
 * once it exited well: a truncated or corrupt file fails with what it said.
 */
function throughProgram(program: string, file: string, counter: { bytes: number }): Readable {
  const child = spawn(program, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const input = fileStream(file, counter);
  const out = new PassThrough({ highWaterMark: BUFFERED });
  let said = '';
  child.stderr.on('data', (d: Buffer) => (said += d.toString()));
  // EPIPE once the reader stopped early and the program was ended.
  child.stdin.on('error', () => undefined);
  input.on('error', (e) => out.destroy(e));
  input.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  child.on('error', (e) => out.destroy(e));
  child.on('close', (code, signal) => {
    if (code === 0) out.end();
    else if (!out.destroyed) {
      const first = said
        .trim()
        .split('\n')[0]
        ?.replace(/^\S+: /, '');
      out.destroy(new Error(first || `${path.basename(program)} ended with ${code ?? signal}`));
    }
  });
  out.on('close', () => {
    input.destroy();
    child.kill();
  });
  return out;
}

function inJavaScript(file: string, counter: { bytes: number }): Readable {
  const bunzip = unbzip2();
  const input = fileStream(file, counter);
  input.on('error', (e) => bunzip.emit('error', e));
  return fromClassicStream(input.pipe(bunzip), input);
}

/**
 * unbzip2-stream is a classic (through) stream. Readable.wrap() won't do: through emits
 * 'close' right after 'end', and wrap() then destroys the wrapper before its buffered
 * chunks are read. Backpressure: pause the through stream, which pauses the file.
 */
function fromClassicStream(classic: NodeJS.ReadableStream, input: Readable): Readable {
  const out = new Readable({
    highWaterMark: BUFFERED,
    read() {
      classic.resume();
    },
    destroy(error, done) {
      input.destroy();
      done(error);
    },
  });
  classic.on('data', (chunk: Buffer) => {
    if (!out.push(chunk)) classic.pause();
  });
  classic.on('end', () => out.push(null));
  classic.on('error', (e: Error) => out.destroy(e));
  return out;
}
