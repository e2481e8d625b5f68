// A decoding thread seen from the reader: started at once (its start-up overlaps the
// job's), told its share of the blocks when the reader knows where to begin, then read
// slot by slot from its ring (xz-ring.ts). The reader waits with Atomics.waitAsync, so
// the event loop runs meanwhile. For a download, the reader also hands it each block's
// compressed bytes (give, endBlock), a few MiB ahead of its decoding at most.

import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { workerFile } from '../worker-file';
import {
  Ctl,
  FAILED,
  FINISHED,
  SLOT,
  SLOTS,
  endsBlockAt,
  lengthAt,
  newRing,
  readError,
  type LaneBlock,
  type LaneSettings,
  type Ring,
} from './xz-ring';

/** Node 20 has it; TypeScript's ES2022 library doesn't declare it. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: unknown };
  }
).waitAsync;

/** Compressed bytes posted to a thread at a time (gathered up to this), and posts it may hold. */
const POST_BYTES = 1024 * 1024;
const POSTS_AHEAD = 12;

/** Bytes ready to hand out: a view into the ring, valid until `release()`. */
export interface Slot {
  bytes: Buffer;
  endsBlock: boolean;
}

export class XzLane {
  private readonly ring: Ring = newRing();
  private readonly control = new Int32Array(this.ring.control);
  private readonly data = Buffer.from(this.ring.data);
  private readonly worker: Worker;
  /** Slots handed back. */
  private taken = 0;
  private given = false;
  private died: Error | null = null;
  private dying: (() => void) | null = null;
  private readonly death: Promise<void>;
  private readonly exited: Promise<void>;
  /** A download's: where its bytes are posted, what is gathered, and how many posts were made. */
  private readonly input: MessagePort | null = null;
  private gathered: Buffer | null = null;
  private gatheredLength = 0;
  private posted = 0;
  /** Bytes of each post the thread has not taken yet, and of those it took. */
  private readonly postSizes: number[] = [];
  private takenPosts = 0;
  private takenBytes = 0;

  /** `file`: the file the thread reads; null: the reader gives it the bytes. */
  constructor(file: string | null) {
    let port: MessagePort | null = null;
    if (file === null) ({ port1: this.input, port2: port } = new MessageChannel());
    const settings: LaneSettings = { file, input: port, ring: this.ring };
    this.worker = new Worker(workerFile(__dirname, 'xz-worker.js'), {
      workerData: settings,
      transferList: port ? [port] : [],
      resourceLimits: { maxYoungGenerationSizeMb: 4 },
    });
    this.worker.unref();
    this.death = new Promise((resolve) => {
      this.dying = resolve;
      const die = (e: Error): void => {
        this.died ??= e;
        resolve();
      };
      this.worker.on('error', die);
      this.worker.on('exit', () => die(new Error('the xz decoding thread ended early')));
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
  }

  /** The blocks this thread decompresses, in the order they are read. */
  begin(blocks: LaneBlock[]): void {
    this.given = true;
    this.worker.postMessage(blocks);
  }

  /** Blocks whose decompression began. */
  get begun(): number {
    return Atomics.load(this.control, Ctl.Begun);
  }

  /** The next slot; null once every block of the share was handed out. */
  async take(): Promise<Slot | null> {
    const c = this.control;
    for (;;) {
      const signal = Atomics.load(c, Ctl.Signal);
      if (Atomics.load(c, Ctl.Written) > this.taken) {
        const slot = this.taken % SLOTS;
        const start = slot * SLOT;
        return {
          bytes: this.data.subarray(start, start + c[lengthAt(slot)]),
          endsBlock: c[endsBlockAt(slot)] === 1,
        };
      }
      const state = Atomics.load(c, Ctl.State);
      if (state === FAILED) throw readError(this.ring, c);
      if (state === FINISHED) return null;
      if (this.died) throw this.died;
      const waiting = waitAsync(c, Ctl.Signal, signal);
      if (!waiting.async) continue;
      // A pending waitAsync doesn't keep the process alive; the thread does, while waited for.
      this.worker.ref();
      await Promise.race([waiting.value, this.death]);
      this.worker.unref();
    }
  }

  /** A download: the next compressed bytes of the block being given; waits while the thread is far behind. */
  async give(bytes: Buffer): Promise<void> {
    for (let at = 0; at < bytes.length;) {
      this.gathered ??= Buffer.allocUnsafeSlow(POST_BYTES);
      const n = bytes.copy(this.gathered, this.gatheredLength, at);
      this.gatheredLength += n;
      at += n;
      if (this.gatheredLength === POST_BYTES) await this.post();
    }
  }

  /** A download: the compressed bytes the thread took so far. */
  get inputTaken(): number {
    const taken = Atomics.load(this.control, Ctl.InputTaken);
    for (; this.takenPosts < taken && this.postSizes.length > 0; this.takenPosts++) {
      this.takenBytes += this.postSizes.shift()!;
    }
    return this.takenBytes;
  }

  /** A download: the block being given is whole. */
  async endBlock(): Promise<void> {
    if (this.gatheredLength > 0) await this.post();
    await this.post(null);
  }

  /** The bytes can't come (the download failed): the reader's take() throws `e`. */
  fail(e: Error): void {
    this.died ??= e;
    this.dying?.();
  }

  /** Posts what is gathered (or the end of a block) once the thread has room for it. */
  private async post(end?: null): Promise<void> {
    const c = this.control;
    for (;;) {
      if (this.died) throw this.died;
      const signal = Atomics.load(c, Ctl.Signal);
      if (this.posted - Atomics.load(c, Ctl.InputTaken) < POSTS_AHEAD) break;
      const waiting = waitAsync(c, Ctl.Signal, signal);
      if (!waiting.async) continue;
      this.worker.ref();
      await Promise.race([waiting.value, this.death]);
      this.worker.unref();
    }
    if (end === null) {
      this.input!.postMessage(null);
      this.postSizes.push(0);
    } else {
      this.postSizes.push(this.gatheredLength);
      const bytes = this.gathered!.subarray(0, this.gatheredLength);
      this.input!.postMessage(bytes, [bytes.buffer as ArrayBuffer]);
      this.gathered = null;
      this.gatheredLength = 0;
    }
    this.posted += 1;
    this.wake();
  }

  /** The slot last taken was handed out whole: room for the thread. */
  release(): void {
    this.taken += 1;
    Atomics.store(this.control, Ctl.Taken, this.taken);
    this.wake();
  }

  /**
   * Stops the thread and waits for it to end. It ends by itself, at its next step: a
   * thread terminated inside liblzma's binding would abort the process.
   */
  async stop(): Promise<void> {
    Atomics.store(this.control, Ctl.Stop, 1);
    this.wake();
    if (!this.given) this.begin([]);
    this.worker.ref();
    await this.exited;
    this.input?.close();
  }

  private wake(): void {
    Atomics.add(this.control, Ctl.Wake, 1);
    Atomics.notify(this.control, Ctl.Wake);
  }
}
