// A decoding thread seen from the reader: started at once (its start-up overlaps the
// job's), told its share of the blocks when the reader knows where to begin, then read
// slot by slot from its ring (xz-ring.ts). The reader waits with Atomics.waitAsync, so
// the event loop runs meanwhile. For a download, the reader also hands it each block's
// compressed bytes (give, endBlock), a few MiB ahead of its decoding at most.

import { Worker } from 'node:worker_threads';
import { workerFile } from '../worker-file';
import {
  Ctl,
  FAILED,
  FINISHED,
  INPUT_SLOT,
  INPUT_SLOTS,
  SLOT,
  SLOTS,
  endsBlockAt,
  inputLengthAt,
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

/** Bytes ready to hand out: a view into the ring, valid until `release()`. */
export interface Slot {
  bytes: Buffer;
  endsBlock: boolean;
}

export class XzLane {
  private readonly ring: Ring;
  private readonly control: Int32Array;
  private readonly data: Buffer;
  private readonly worker: Worker;
  /** Slots handed back. */
  private taken = 0;
  private given = false;
  private died: Error | null = null;
  private dying: (() => void) | null = null;
  private readonly death: Promise<void>;
  private readonly exited: Promise<void>;
  /** A download's: the input ring, the slot being filled and how far, slots given. */
  private readonly input: Buffer | null;
  private filled = 0;
  private inputGiven = 0;
  /** Bytes in each input slot given and not yet handed back, and in those handed back. */
  private readonly inFlight: number[] = [];
  private handedBack = 0;
  private inputBytesTaken = 0;

  /** `file`: the file the thread reads; null: the reader gives it the bytes (give, endBlock). */
  constructor(file: string | null) {
    this.ring = newRing(file === null);
    this.control = new Int32Array(this.ring.control);
    this.data = Buffer.from(this.ring.data);
    this.input = this.ring.input ? Buffer.from(this.ring.input) : null;
    const settings: LaneSettings = { file, ring: this.ring };
    this.worker = new Worker(workerFile(__dirname, 'xz-worker.js'), {
      workerData: settings,
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
      if (this.filled === 0) await this.room();
      const slot = this.inputGiven % INPUT_SLOTS;
      const n = bytes.copy(
        this.input!,
        slot * INPUT_SLOT + this.filled,
        at,
        at + INPUT_SLOT - this.filled,
      );
      this.filled += n;
      at += n;
      if (this.filled === INPUT_SLOT) this.publish();
    }
  }

  /** A download: the block being given is whole (an empty slot says so). */
  async endBlock(): Promise<void> {
    if (this.filled > 0) this.publish();
    await this.room();
    this.publish();
  }

  /** A download: the compressed bytes the thread took so far. */
  get inputTaken(): number {
    const back = Atomics.load(this.control, Ctl.InputTaken);
    for (; this.handedBack < back && this.inFlight.length > 0; this.handedBack++) {
      this.inputBytesTaken += this.inFlight.shift()!;
    }
    return this.inputBytesTaken;
  }

  /** The bytes can't come (the download failed): the reader's take() throws `e`. */
  fail(e: Error): void {
    this.died ??= e;
    this.dying?.();
  }

  /** Waits for a free input slot. */
  private async room(): Promise<void> {
    const c = this.control;
    for (;;) {
      if (this.died) throw this.died;
      const signal = Atomics.load(c, Ctl.Signal);
      if (this.inputGiven - Atomics.load(c, Ctl.InputTaken) < INPUT_SLOTS) return;
      const waiting = waitAsync(c, Ctl.Signal, signal);
      if (!waiting.async) continue;
      this.worker.ref();
      await Promise.race([waiting.value, this.death]);
      this.worker.unref();
    }
  }

  /** The slot being filled goes to the thread (empty: the block ends). */
  private publish(): void {
    const c = this.control;
    c[inputLengthAt(this.inputGiven % INPUT_SLOTS)] = this.filled;
    this.inFlight.push(this.filled);
    this.inputGiven += 1;
    this.filled = 0;
    Atomics.store(c, Ctl.InputWritten, this.inputGiven);
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
  }

  private wake(): void {
    Atomics.add(this.control, Ctl.Wake, 1);
    Atomics.notify(this.control, Ctl.Wake);
  }
}
