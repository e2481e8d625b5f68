// The system's libbzip2 through koffi (as libc.ts loads libc): Debian's libbz2-1.0 on
// Linux, the copy in macOS's dyld shared cache. Windows ships none: null there, and
// bzip2.ts decodes with unbzip2-stream instead. Its streaming calls (BZ2_bzDecompress)
// decode into a fixed output buffer, so a block of zeros that expands to 46 MB is handed
// on a chunk at a time instead of held whole.

type Koffi = typeof import('koffi');
type Call = (...args: unknown[]) => number;

const LIBBZ2_FILES: Partial<Record<NodeJS.Platform, string[]>> = {
  linux: ['libbz2.so.1.0', 'libbz2.so.1'],
  darwin: ['/usr/lib/libbz2.1.0.dylib'],
};

const BZ_OK = 0;
const BZ_STREAM_END = 4;
/** sizeof(bz_stream) and the offsets used, on 64-bit systems (checked when loading). */
const STREAM_SIZE = 80;
const NEXT_IN = 0;
const AVAIL_IN = 8;
const NEXT_OUT = 24;
const AVAIL_OUT = 32;

const BZ_ERRORS: Record<number, string> = {
  [-3]: 'out of memory',
  [-4]: 'corrupt data (a block fails its check)',
  [-5]: 'not bzip2 data',
};

interface Library {
  koffi: Koffi;
  init: Call;
  decompress: Call;
  end: Call;
}

let loaded: Library | null | undefined;

function library(): Library | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  for (const file of LIBBZ2_FILES[process.platform] ?? []) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const koffi = require('koffi') as Koffi;
      // bz_stream's offsets below are those of 64-bit systems: elsewhere, the JavaScript decoder.
      if (koffi.sizeof('void *') !== 8) return loaded;
      const lib = koffi.load(file);
      const func = (declaration: string) => lib.func(declaration) as Call;
      loaded = {
        koffi,
        init: func('int BZ2_bzDecompressInit(void *strm, int verbosity, int small)'),
        decompress: func('int BZ2_bzDecompress(void *strm)'),
        end: func('int BZ2_bzDecompressEnd(void *strm)'),
      };
      return loaded;
    } catch {
      // not this name, or no koffi for this platform
    }
  }
  return loaded;
}

/** True where libbzip2 can be loaded. */
export function haveLibbz2(): boolean {
  return library() !== null;
}

/** libbzip2's return code in words. */
export function bz2Error(ret: number): Error {
  return new Error(BZ_ERRORS[ret] ?? `libbzip2 error ${ret}`);
}

/**
 * One stream decoded into `chunk`-byte pieces: the stream, its output and libbzip2's
 * bz_stream live in C memory (koffi.alloc) so their addresses hold from call to call.
 */
export class Bz2Decoder {
  private readonly lib: Library;
  private readonly strm: unknown;
  private readonly fields: DataView;
  private readonly output: unknown;
  /** The output buffer, as JavaScript sees it. */
  readonly out: Uint8Array;
  private stream: unknown = null;
  private inputSize = 0;
  private open = false;

  constructor(readonly chunk: number) {
    const lib = library();
    if (!lib) throw new Error('libbzip2 is not available');
    this.lib = lib;
    this.strm = lib.koffi.alloc('uint8_t', STREAM_SIZE);
    this.fields = new DataView(lib.koffi.view(this.strm, STREAM_SIZE));
    this.output = lib.koffi.alloc('uint8_t', chunk);
    this.out = new Uint8Array(lib.koffi.view(this.output, chunk));
  }

  /** Room for a stream of `length` bytes, in C memory: write it there, then begin(). */
  input(length: number): Uint8Array {
    const { koffi } = this.lib;
    if (length > this.inputSize) {
      this.finish();
      if (this.stream) koffi.free(this.stream);
      this.inputSize = Math.max(length, this.inputSize * 2);
      this.stream = koffi.alloc('uint8_t', this.inputSize);
    }
    return new Uint8Array(koffi.view(this.stream, length));
  }

  /** Starts decoding the whole bzip2 stream written to the first `length` bytes of input(). */
  begin(length: number): void {
    this.finish();
    new Uint8Array(this.fields.buffer).fill(0);
    const ret = this.lib.init(this.strm, 0, 0);
    if (ret !== BZ_OK) throw bz2Error(ret);
    this.open = true;
    this.fields.setBigUint64(NEXT_IN, this.lib.koffi.address(this.stream), true);
    this.fields.setUint32(AVAIL_IN, length, true);
  }

  /**
   * Decodes into `out` from its start; returns the bytes decoded and whether the stream
   * ended. Throws when the data is corrupt, or ends before the stream does.
   */
  step(): { length: number; ended: boolean } {
    this.fields.setBigUint64(NEXT_OUT, this.lib.koffi.address(this.output), true);
    this.fields.setUint32(AVAIL_OUT, this.chunk, true);
    const ret = this.lib.decompress(this.strm);
    const length = this.chunk - this.fields.getUint32(AVAIL_OUT, true);
    if (ret === BZ_STREAM_END) return { length, ended: true };
    if (ret !== BZ_OK) throw bz2Error(ret);
    if (length === 0 && this.fields.getUint32(AVAIL_IN, true) === 0) {
      throw new Error('the data ends inside a block (truncated file?)');
    }
    return { length, ended: false };
  }

  /** Frees libbzip2's state for the stream (the buffers are kept for the next). */
  finish(): void {
    if (this.open) this.lib.end(this.strm);
    this.open = false;
  }

  close(): void {
    this.finish();
    const { koffi } = this.lib;
    koffi.free(this.strm);
    koffi.free(this.output);
    if (this.stream) koffi.free(this.stream);
    this.stream = null;
  }
}
