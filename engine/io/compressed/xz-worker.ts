// One xz decoding thread (started by xz-lane.ts): decompresses its share of the file's
// blocks in order, each as a stream of its own, into its ring (xz-ring.ts). Everything
// here is synchronous: the thread reads the file, runs liblzma and waits only for room in
// the ring, so a busy main thread never stalls it.

import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { LZMA_FINISH, LZMA_RUN, codeOk, lzmaError, streamDecoder, streamEnded } from './liblzma';
import type { LzmaStream } from './liblzma';
import {
  Ctl,
  FAILED,
  FINISHED,
  SLOT,
  SLOTS,
  endsBlockAt,
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

class Lane {
  private readonly control: Int32Array;
  private readonly data: Buffer;
  private readonly input = Buffer.allocUnsafe(INPUT);
  /** The slot being filled, and how much of it is. */
  private slot = 0;
  private filled = 0;

  constructor(
    private readonly fd: number,
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
      const end = block.at + block.padded;
      for (let at = block.at; at < end;) {
        const n = fs.readSync(this.fd, this.input, 0, Math.min(INPUT, end - at), at);
        if (n === 0) throw new Error('the file ends inside a block (truncated?)');
        this.feed(lzma, this.input.subarray(0, n), LZMA_RUN());
        at += n;
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
const fd = fs.openSync(settings.file, 'r');
// Loaded now, while the reader decides where to begin.
streamDecoder().close();
parentPort!.once('message', (blocks: LaneBlock[]) => {
  try {
    new Lane(fd, settings.ring).run(blocks);
  } finally {
    fs.closeSync(fd);
    parentPort!.close();
  }
});
