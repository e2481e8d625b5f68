// liblzma, through node-liblzma's native addon used directly: lzma_code() runs on a
// decoding worker's own thread and writes straight into a buffer we lend it. (The package's own streams
// allocate and zero a fresh output buffer per chunk and push it through a Transform:
// 280 MiB/s here, against 430 MiB/s decoding into reused buffers.)

import path from 'node:path';

/** One liblzma stream (lzma_stream_decoder, concatenated streams allowed). */
export interface LzmaStream {
  /**
   * lzma_code() on the calling thread (a decoding worker's) over input[inOff, inOff + inLen)
   * into output[outOff..]: liblzma's return code and what is left unused of the input and
   * the output.
   */
  codeSync(
    action: number,
    input: Buffer | null,
    inOff: number,
    inLen: number,
    output: Buffer,
    outOff: number,
  ): [number, number, number];
  close(): void;
}

interface Binding {
  LZMA: new (mode: number, options: object) => LzmaStream;
  STREAM_DECODE: number;
  LZMA_RUN: number;
  LZMA_FINISH: number;
  LZMA_OK: number;
  LZMA_STREAM_END: number;
}

let binding: Binding | null = null;

function load(): Binding {
  if (binding) return binding;
  // The package's root, where its addon is built from source (or shipped prebuilt), loaded
  // the way the package loads it.
  const root = path.join(path.dirname(require.resolve('node-liblzma')), '..');
  const gypBuild = require.resolve('node-gyp-build', { paths: [root] });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  binding = (require(gypBuild) as (dir: string) => Binding)(root);
  return binding;
}

export const LZMA_RUN = (): number => load().LZMA_RUN;
export const LZMA_FINISH = (): number => load().LZMA_FINISH;

/** A stream decoder. The options are the encoder's, which the addon asks for whatever the mode. */
export function streamDecoder(): LzmaStream {
  const lib = load();
  return new lib.LZMA(lib.STREAM_DECODE, { check: 0, preset: 6, filters: [0x21], mode: 2 });
}

/** True: the return code of a step that went well (more to come, or the stream's end). */
export function codeOk(ret: number): boolean {
  const lib = load();
  return ret === lib.LZMA_OK || ret === lib.LZMA_STREAM_END;
}

export function streamEnded(ret: number): boolean {
  return ret === load().LZMA_STREAM_END;
}

const LZMA_ERRORS: Record<number, string> = {
  3: 'unsupported integrity check',
  5: 'out of memory',
  6: 'needs more memory than allowed',
  7: 'not xz data',
  8: 'unsupported xz options (filter or integrity check)',
  9: 'corrupt data',
  10: 'the data ends early (truncated file?)',
};

/** liblzma's return code in words. */
export function lzmaError(ret: number): Error {
  return new Error(LZMA_ERRORS[ret] ?? `liblzma error ${ret}`);
}
