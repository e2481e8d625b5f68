// The compression thread of a `.img.zst` backup (started by zst-compressor.ts): compresses
// one whole frame per message. Compressing a frame takes tens of milliseconds, which
// on the main thread would stall the job's commit timer, the throttle and the other
// destinations.

import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { Compressor } from 'zstd-napi';

/** Given as the worker's workerData. */
export interface CompressorSettings {
  level: number;
  /** zstd's own threads per frame; 0: this thread alone. */
  threads: number;
}

/** A frame to compress: the first `length` bytes of `buf` (transferred, and handed back). */
export interface CompressRequest {
  id: number;
  buf: ArrayBuffer;
  length: number;
}

/** The frame compressed (`out`), or why not (`error`); `buf` comes back for reuse either way. */
export type CompressReply =
  | { id: number; buf: ArrayBuffer; out: Uint8Array }
  | { id: number; buf: ArrayBuffer; error: string };

function compressor(settings: CompressorSettings): Compressor {
  const c = new Compressor();
  // Content size and checksum in every frame: a restore checks each one.
  c.setParameters({ compressionLevel: settings.level, checksumFlag: true, contentSizeFlag: true });
  if (settings.threads > 0) {
    try {
      c.updateParameters({ nbWorkers: settings.threads });
    } catch {
      // zstd built without threads: this thread compresses alone.
    }
  }
  return c;
}

/** zstd-napi keeps scratch buffers up to 128 KiB; anything bigger it allocated for this frame alone. */
const OWN_BUFFER_BYTES = 128 * 1024;

function serve(port: MessagePort, settings: CompressorSettings): void {
  const c = compressor(settings);
  port.on('message', ({ id, buf, length }: CompressRequest) => {
    let reply: CompressReply;
    const transfer: ArrayBuffer[] = [buf];
    try {
      const compressed = c.compress(new Uint8Array(buf, 0, length));
      // A frame's worth comes in a buffer of its own: handed over as it is, not copied
      // (a copy per frame doubled this thread's garbage). Small results may share
      // zstd's scratch buffer or Node's pool: those are copied.
      const own = compressed.byteLength > OWN_BUFFER_BYTES;
      const out = own ? compressed : Uint8Array.from(compressed);
      reply = { id, buf, out };
      transfer.push(out.buffer as ArrayBuffer);
    } catch (e) {
      reply = { id, buf, error: e instanceof Error ? e.message : String(e) };
    }
    port.postMessage(reply, transfer);
  });
}

if (parentPort) serve(parentPort, workerData as CompressorSettings);
