// One xz decoding thread (started by xz-lane.ts): decompresses its share of the file's
// blocks in order, each as a stream of its own, into its ring (xz-ring.ts). Everything
// here is synchronous: the thread reads the file, runs liblzma and waits only for room in
// the ring, so a busy main thread never stalls it. A download's bytes, which the reader
// gives it through the ring's input slots: the thread waits for them as it waits for room.

import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { LZMA_FINISH, LZMA_RUN, codeOk, lzmaError, streamDecoder, streamEnded } from './liblzma';
import type { LzmaStream } from './liblzma';
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
  writeError,
  type LaneBlock,
  type LaneSettings,
  type Ring,
} from './xz-ring';

/** Compressed bytes read from the file at a time. */
const INPUT = 1024 * 1024;

class Stopped extends Error {}

const asBuffer = (a: Uint8Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.length);

/** Where a block's compressed bytes come from: `next()` gives them in order, null at its end. */
interface Input {
  begin(block: LaneBlock): void;
  next(): Buffer | null;
  close(): void;
}

/** The file, read here. */
class FileInput implements Input {
  private readonly fd: number;
  private readonly buffer = Buffer.allocUnsafe(INPUT);
  private at = 0;
  private end = 0;

  constructor(file: string) {
    this.fd = fs.openSync(file, 'r');
  }

  begin(block: LaneBlock): void {
    this.at = block.at;
    this.end = block.at + block.padded;
  }

  next(): Buffer | null {
    if (this.at >= this.end) return null;
    const n = fs.readSync(this.fd, this.buffer, 0, Math.min(INPUT, this.end - this.at), this.at);
    if (n === 0) throw new Error('the file ends inside a block (truncated?)');
    this.at += n;
    return this.buffer.subarray(0, n);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/**
 * A download's bytes, given by the reader through the ring's input slots: waited for as
 * room is. A slot is handed back when the next is asked for (liblzma has taken it all).
 */
class RingInput implements Input {
  private readonly data: Buffer;
  private taken = 0;
  private holding = false;

  constructor(
    private readonly control: Int32Array,
    input: SharedArrayBuffer,
  ) {
    this.data = Buffer.from(input);
  }

  begin(): void {}

  next(): Buffer | null {
    const c = this.control;
    if (this.holding) this.giveBack();
    for (;;) {
      const wake = Atomics.load(c, Ctl.Wake);
      if (Atomics.load(c, Ctl.Stop)) throw new Stopped();
      if (Atomics.load(c, Ctl.InputWritten) > this.taken) break;
      Atomics.wait(c, Ctl.Wake, wake);
    }
    const slot = this.taken % INPUT_SLOTS;
    const length = c[inputLengthAt(slot)];
    if (length === 0) {
      this.giveBack();
      return null;
    }
    this.holding = true;
    return this.data.subarray(slot * INPUT_SLOT, slot * INPUT_SLOT + length);
  }

  close(): void {}

  private giveBack(): void {
    const c = this.control;
    this.holding = false;
    this.taken += 1;
    Atomics.store(c, Ctl.InputTaken, this.taken);
    Atomics.add(c, Ctl.Signal, 1);
    Atomics.notify(c, Ctl.Signal);
  }
}

class Lane {
  private readonly control: Int32Array;
  private readonly data: Buffer;
  /** The slot being filled, and how much of it is. */
  private slot = 0;
  private filled = 0;

  constructor(
    private readonly input: Input,
    private readonly ring: Ring,
  ) {
    this.control = new Int32Array(ring.control);
    this.data = Buffer.from(ring.data);
  }

  run(blocks: LaneBlock[]): void {
    try {
      for (const block of blocks) this.block(block);
      this.finish(FINISHED);
    } catch (e) {
      if (e instanceof Stopped) return;
      const err = e as NodeJS.ErrnoException;
      writeError(this.ring, this.control, {
        message: err.message,
        code: err.code,
        syscall: err.syscall,
      });
      this.finish(FAILED);
    }
  }

  private block(block: LaneBlock): void {
    Atomics.add(this.control, Ctl.Begun, 1);
    const lzma = streamDecoder();
    try {
      this.feed(lzma, asBuffer(block.header), LZMA_RUN());
      this.input.begin(block);
      for (let bytes = this.input.next(); bytes !== null; bytes = this.input.next()) {
        this.feed(lzma, bytes, LZMA_RUN());
      }
      this.feed(lzma, asBuffer(block.trailer), LZMA_FINISH());
      this.publish(true);
    } finally {
      lzma.close();
    }
  }

  /** Decompresses `input`; with LZMA_FINISH, until the (one-block) stream ends. */
  private feed(lzma: LzmaStream, input: Buffer, action: number): void {
    let used = 0;
    for (;;) {
      if (Atomics.load(this.control, Ctl.Stop)) throw new Stopped();
      if (this.filled === SLOT) this.publish(false);
      const out = this.data.subarray(this.slot * SLOT, (this.slot + 1) * SLOT);
      const [ret, availIn, availOut] = lzma.codeSync(
        action,
        input,
        used,
        input.length - used,
        out,
        this.filled,
      );
      if (!codeOk(ret)) throw lzmaError(ret);
      used = input.length - availIn;
      this.filled = SLOT - availOut;
      if (streamEnded(ret)) return;
      if (action === LZMA_RUN() && availIn === 0) return;
    }
  }

  /** Hands the slot being filled to the reader, then waits for room for the next one. */
  private publish(endsBlock: boolean): void {
    const c = this.control;
    c[lengthAt(this.slot)] = this.filled;
    c[endsBlockAt(this.slot)] = endsBlock ? 1 : 0;
    const written = Atomics.add(c, Ctl.Written, 1) + 1;
    this.signal();
    this.slot = written % SLOTS;
    this.filled = 0;
    for (;;) {
      const wake = Atomics.load(c, Ctl.Wake);
      if (Atomics.load(c, Ctl.Stop)) throw new Stopped();
      if (written - Atomics.load(c, Ctl.Taken) < SLOTS) return;
      Atomics.wait(c, Ctl.Wake, wake);
    }
  }

  private finish(state: number): void {
    Atomics.store(this.control, Ctl.State, state);
    this.signal();
  }

  private signal(): void {
    Atomics.add(this.control, Ctl.Signal, 1);
    Atomics.notify(this.control, Ctl.Signal);
  }
}

const settings = workerData as LaneSettings;
const input: Input = settings.file
  ? new FileInput(settings.file)
  : new RingInput(new Int32Array(settings.ring.control), settings.ring.input!);
// Loaded now, while the reader decides where to begin.
streamDecoder().close();
parentPort!.once('message', (blocks: LaneBlock[]) => {
  try {
    new Lane(input, settings.ring).run(blocks);
  } finally {
    input.close();
    parentPort!.close();
  }
});
