// The compression thread of a `.img.zst` backup (started by zst-compressor.ts): compresses
// one whole frame per message. Compressing a frame takes tens of milliseconds, which
// on the main thread would stall the job's commit timer, the throttle and the other
// destinations.

import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { CCtx, CParameter, compressBound } from 'zstd-napi/binding';

/** Given as the worker's workerData. */
export interface CompressorSettings {
  level: number;
  /** zstd's own threads per frame; 0: this thread alone. */
  threads: number;
}

/**
 * A frame to compress: the first `length` bytes of `buf`, into `out` when it is big
 * enough (both transferred, and handed back).
 */
export interface CompressRequest {
  id: number;
  buf: ArrayBuffer;
  length: number;
  out?: ArrayBuffer;
}

/** The frame compressed (the first `length` bytes of `out`), or why not (`error`). */
export type CompressReply =
  | { id: number; buf: ArrayBuffer; out: ArrayBuffer; length: number }
  | { id: number; buf: ArrayBuffer; error: string };

function context(settings: CompressorSettings): CCtx {
  const c = new CCtx();
  c.setParameter(CParameter.compressionLevel, settings.level);
  // Content size and checksum in every frame: a restore checks each one.
  c.setParameter(CParameter.checksumFlag, 1);
  c.setParameter(CParameter.contentSizeFlag, 1);
  if (settings.threads > 0) {
    try {
      c.setParameter(CParameter.nbWorkers, settings.threads);
    } catch {
      // zstd built without threads: this thread compresses alone.
    }
  }
  return c;
}

function serve(port: MessagePort, settings: CompressorSettings): void {
  const c = context(settings);
  // Frames are compressed into output buffers that travel back and forth with the
  // requests: a fresh worst-case buffer per frame was garbage that piled up by tens of
  // MiB before a collector ran.
  port.on('message', ({ id, buf, length, out: given }: CompressRequest) => {
    let reply: CompressReply;
    const transfer: ArrayBuffer[] = [buf];
    try {
      const bound = compressBound(length);
      const out = given && given.byteLength >= bound ? given : new ArrayBuffer(bound);
      const n = c.compress2(new Uint8Array(out), new Uint8Array(buf, 0, length));
      reply = { id, buf, out, length: n };
      transfer.push(out);
    } catch (e) {
      reply = { id, buf, error: e instanceof Error ? e.message : String(e) };
    }
    port.postMessage(reply, transfer);
  });
}

if (parentPort) serve(parentPort, workerData as CompressorSettings);
