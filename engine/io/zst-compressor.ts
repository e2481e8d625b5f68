// The compression thread of `.img.zst` backups, seen from the backup: whole frames go to
// a worker thread (zst-worker.ts) and come back compressed, in order. Compressing one
// frame takes tens of milliseconds, which on the main thread would stall the event loop
// (and the job's commit timer, the throttle and the other destinations).

import { Worker } from 'node:worker_threads';
import { workerFile } from './worker-file';
import type { CompressReply, CompressRequest, CompressorSettings } from './zst-worker';

/** The compression thread's compiled module (zst-worker.js), beside this one in `dir`. */
export function compressionWorkerFile(dir = __dirname): string {
  return workerFile(dir, 'zst-worker.js');
}

/** A frame compressed: `out` is valid until `done()` hands its buffer back for reuse. */
export interface CompressedFrame {
  out: Uint8Array;
  buf: ArrayBuffer;
  done(): void;
}

/**
 * Compresses whole frames, in order, on a worker thread. Backups open at once with the
 * same settings share one thread; it ends with the last of them.
 */
export class FrameCompressor {
  private static readonly shared = new Map<string, FrameCompressor>();
  private users = 0;

  static open(level: number, threads: number): FrameCompressor {
    const key = `${level}:${threads}`;
    let c = FrameCompressor.shared.get(key);
    if (!c || c.dead) {
      c = new FrameCompressor(level, threads);
      FrameCompressor.shared.set(key, c);
    }
    c.users += 1;
    return c;
  }

  private readonly worker: Worker;
  private readonly pending = new Map<
    number,
    { resolve(r: CompressedFrame): void; reject(e: Error): void }
  >();
  /** Output buffers back from the thread, sent again with the next frames. */
  private readonly spareOut: ArrayBuffer[] = [];
  private nextId = 0;
  private dead: Error | null = null;

  private constructor(level: number, threads: number) {
    const settings: CompressorSettings = { level, threads };
    this.worker = new Worker(compressionWorkerFile(), {
      workerData: settings,
      resourceLimits: { maxYoungGenerationSizeMb: 4 },
    });
    this.worker.unref();
    this.worker.on('message', (m: CompressReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.settled(m.id);
      if ('out' in m) {
        const out = m.out;
        p.resolve({
          out: new Uint8Array(out, 0, m.length),
          buf: m.buf,
          // Two frames' worth is kept: one in flight, one being written.
          done: () => void (this.spareOut.length < 2 && this.spareOut.push(out)),
        });
      } else p.reject(new Error(`zstd: ${m.error}`));
    });
    const die = (e: Error): void => {
      this.dead ??= e;
      for (const [id, p] of this.pending) {
        this.settled(id);
        p.reject(e);
      }
    };
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`compression worker exited (${code})`)));
  }

  /** Compresses `length` bytes of `buf` (transferred, and handed back with the result). */
  compress(buf: ArrayBuffer, length: number): Promise<CompressedFrame> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) this.worker.ref(); // keep the process up while compressing
      const out = this.spareOut.pop();
      const request: CompressRequest = { id, buf, length, out };
      this.worker.postMessage(request, out ? [buf, out] : [buf]);
    });
  }

  private settled(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
  }

  /** One backup is done with it; the last one ends the thread. */
  async release(): Promise<void> {
    this.users -= 1;
    if (this.users > 0) return;
    for (const [key, c] of FrameCompressor.shared) {
      if (c === this) FrameCompressor.shared.delete(key);
    }
    this.dead ??= new Error('compressor closed');
    await this.worker.terminate();
  }
}
