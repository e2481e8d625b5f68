// The ring through which an xz decoding thread (xz-worker.ts) hands decompressed bytes
// to the reader (xz-lane.ts): slots in one SharedArrayBuffer and a few counters beside
// them, so the thread never waits on the main thread's event loop — only on room. For a
// download, a second, smaller ring the other way: the compressed bytes the reader gives
// the thread (the same memory reused, nothing allocated per chunk).

/** Bytes per slot, and slots per ring: what one thread may hold ready (8 MiB). */
export const SLOT = 1024 * 1024;
export const SLOTS = 8;
/** A download's compressed bytes a thread may be given ahead of its decoding (4 MiB). */
export const INPUT_SLOT = 1024 * 1024;
export const INPUT_SLOTS = 4;

/** Indices into the control array (Int32). */
export const enum Ctl {
  /** Slots filled by the thread, ever. */
  Written,
  /** Slots handed back by the reader, ever. */
  Taken,
  /** Bumped by the thread at every change the reader may wait for (it waits on this). */
  Signal,
  /** Bumped by the reader at every change the thread may wait for (it waits on this). */
  Wake,
  /** Set by the reader: stop now. */
  Stop,
  /** Running, Finished (every block given) or Failed (the error is in `error`). */
  State,
  /** Blocks whose decompression began. */
  Begun,
  /** A download's: input slots filled by the reader, and handed back by the thread, ever. */
  InputWritten,
  InputTaken,
  /** Bytes of the error's JSON in `error`. */
  ErrorLength,
  /**
   * Then, per slot: its length, and 1 when it is the last of its block; then per input
   * slot its length (0: the block's bytes end there).
   */
  Slots,
}

export const RUNNING = 0;
export const FINISHED = 1;
export const FAILED = 2;

const ERROR_BYTES = 4096;

export interface Ring {
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
  error: SharedArrayBuffer;
  /** A download's compressed bytes, given by the reader; null where the thread reads the file. */
  input: SharedArrayBuffer | null;
}

/** What went wrong on the thread: enough to tell an I/O failure from corrupt data. */
export interface RingError {
  message: string;
  code?: string;
  syscall?: string;
}

/**
 * A decoding thread's workerData: it reads `file` itself, or (a download, `file` null)
 * takes each block's bytes from the ring's input as the reader gives them.
 */
export interface LaneSettings {
  file: string | null;
  ring: Ring;
}

/**
 * One block of the thread's share, sent once the reader knows where to begin: where it lies in the
 * file, and the stream header and trailer that make it a stream of its own.
 */
export interface LaneBlock {
  at: number;
  padded: number;
  header: Uint8Array;
  trailer: Uint8Array;
}

/** A ring; `withInput`: with the input ring a download's thread is given its bytes through. */
export function newRing(withInput: boolean): Ring {
  return {
    control: new SharedArrayBuffer(4 * (Ctl.Slots + 2 * SLOTS + INPUT_SLOTS)),
    data: new SharedArrayBuffer(SLOT * SLOTS),
    error: new SharedArrayBuffer(ERROR_BYTES),
    input: withInput ? new SharedArrayBuffer(INPUT_SLOT * INPUT_SLOTS) : null,
  };
}

export const lengthAt = (slot: number): number => Ctl.Slots + 2 * slot;
export const endsBlockAt = (slot: number): number => Ctl.Slots + 2 * slot + 1;
export const inputLengthAt = (slot: number): number => Ctl.Slots + 2 * SLOTS + slot;

export function writeError(ring: Ring, control: Int32Array, e: RingError): void {
  const bytes = Buffer.from(JSON.stringify(e)).subarray(0, ERROR_BYTES);
  Buffer.from(ring.error).set(bytes);
  control[Ctl.ErrorLength] = bytes.length;
}

export function readError(ring: Ring, control: Int32Array): Error {
  const text = Buffer.from(ring.error, 0, control[Ctl.ErrorLength]).toString();
  let e: RingError;
  try {
    e = JSON.parse(text) as RingError;
  } catch {
    e = { message: text };
  }
  return Object.assign(new Error(e.message), { code: e.code, syscall: e.syscall });
}
