// The bzip2 decoding threads, seen from the decoder (bzip2-decoder.ts): pieces of the file
// wait in order for a free thread (bzip2-worker.ts) and come back as chunks, which the
// reader takes in order. A thread is given one piece at a time: a piece waiting behind
// a block of zeros the reader is still taking would leave the other threads idle. A piece
// sends at most AHEAD chunks the reader has not handed back, then waits.

import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { workerFile } from '../worker-file';
import type { LaneReply, LaneRequest, LaneSettings, Piece } from './bzip2-worker';

const MIB = 1024 * 1024;
/** Decoded bytes per chunk. */
export const CHUNK = MIB;
/** Chunks of one piece decoded and not yet handed out, at most. */
export const AHEAD = 2;

/** The decoding thread's compiled module (bzip2-worker.js), beside this one in `dir`. */
export function decodingWorkerFile(dir = __dirname): string {
  return workerFile(dir, 'bzip2-worker.js');
}

/** A piece being decoded: its chunks, in order, as the thread sends them. */
export class PieceOutput {
  private readonly chunks: Buffer[] = [];
  /** Bytes handed out to the reader. */
  taken = 0;
  /** Bytes of the first chunk handed out. */
  private at = 0;
  finished = false;
  error: Error | null = null;
  /** The thread decoding it; null while it waits for one. */
  lane: Lane | null = null;
  private wakeReader: (() => void) | null = null;

  constructor(
    readonly piece: Piece,
    private readonly lanes: Lanes,
  ) {}

  /** The decoded bytes next in line; null once the piece is done. Throws the piece's error. */
  async next(): Promise<Buffer | null> {
    while (this.chunks.length === 0) {
      if (this.finished) {
        if (this.error) throw this.error;
        return null;
      }
      await new Promise<void>((resolve) => (this.wakeReader = resolve));
    }
    return this.chunks[0].subarray(this.at);
  }

  /** `n` bytes of what next() gave were handed out; a chunk handed out whole goes back to the thread. */
  consume(n: number): void {
    this.taken += n;
    this.at += n;
    if (this.at < this.chunks[0].length) return;
    const buffer = this.chunks.shift()!.buffer as ArrayBuffer;
    this.at = 0;
    this.lane?.send({ type: 'release', id: this.piece.id, buffer }, [buffer]);
  }

  /** No longer wanted: the thread stops decoding it. */
  stop(): void {
    if (!this.finished) this.lane?.send({ type: 'stop', id: this.piece.id });
    this.settle(null);
  }

  received(reply: LaneReply): void {
    if ('chunk' in reply) this.chunks.push(Buffer.from(reply.chunk, 0, reply.length));
    else if ('error' in reply)
      this.settle(Object.assign(new Error(reply.error), { syscall: reply.syscall }));
    else this.settle(null);
    const wake = this.wakeReader;
    this.wakeReader = null;
    wake?.();
  }

  private settle(error: Error | null): void {
    if (this.finished) return;
    this.finished = true;
    this.error = error;
    this.lanes.settled(this);
  }
}

/** One decoding thread and the piece it decodes. */
class Lane {
  readonly worker: Worker;
  current: PieceOutput | null = null;
  /** Pieces it decoded (or began): tests see the work was shared. */
  decoded = 0;

  constructor(settings: LaneSettings, die: (e: Error) => void) {
    this.worker = new Worker(decodingWorkerFile(), {
      workerData: settings,
      // Its own objects are few and small: the bytes live in C memory and ArrayBuffers.
      resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 16 },
    });
    this.worker.unref();
    this.worker.on('message', (m: LaneReply) => {
      if (this.current?.piece.id === m.id) this.current.received(m);
    });
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`a bzip2 decoding thread exited (${code})`)));
  }

  send(request: LaneRequest, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(request, transfer);
  }

  /** The thread decodes `output`'s piece, and keeps the process up meanwhile. */
  take(output: PieceOutput): void {
    this.worker.ref();
    this.current = output;
    output.lane = this;
    this.decoded += 1;
    this.send({ type: 'decode', ...output.piece });
  }

  free(): void {
    this.current = null;
    this.worker.unref();
  }

  /** Ends the thread once it freed its C memory; terminated if it takes longer than a second. */
  async close(): Promise<void> {
    const exited = once(this.worker, 'exit');
    this.send({ type: 'close' });
    const timer = setTimeout(() => void this.worker.terminate(), 1000);
    await exited;
    clearTimeout(timer);
  }
}

/** The threads of one decoder, started on its first piece. */
export class Lanes {
  private lanes: Lane[] = [];
  private readonly waiting: PieceOutput[] = [];
  private dead: Error | null = null;

  constructor(
    private readonly count: number,
    private readonly file: string,
  ) {}

  /** Pieces each thread decoded, in thread order. */
  get decodedPerLane(): number[] {
    return this.lanes.map((l) => l.decoded);
  }

  /** Decodes `piece` on the first thread free, after the pieces given before it. */
  decode(piece: Piece): PieceOutput {
    if (this.lanes.length === 0 && !this.dead) {
      const settings: LaneSettings = { file: this.file, chunk: CHUNK, ahead: AHEAD };
      for (let i = 0; i < this.count; i++) this.lanes.push(new Lane(settings, (e) => this.die(e)));
    }
    const output = new PieceOutput(piece, this);
    if (this.dead) output.received({ id: piece.id, error: this.dead.message });
    else {
      this.waiting.push(output);
      this.dispatch();
    }
    return output;
  }

  /** The piece is decoded, failed or was stopped: its thread takes the next waiting. */
  settled(output: PieceOutput): void {
    const i = this.waiting.indexOf(output);
    if (i !== -1) this.waiting.splice(i, 1);
    if (output.lane?.current === output) output.lane.free();
    this.dispatch();
  }

  async close(): Promise<void> {
    this.dead ??= new Error('the bzip2 decoder was closed');
    this.waiting.length = 0;
    const lanes = this.lanes.splice(0);
    await Promise.all(lanes.map((l) => l.close()));
  }

  private dispatch(): void {
    for (const lane of this.lanes) {
      if (this.waiting.length === 0) return;
      if (!lane.current) lane.take(this.waiting.shift()!);
    }
  }

  private die(e: Error): void {
    this.dead ??= e;
    const failed = [...this.waiting, ...this.lanes.map((l) => l.current)];
    for (const output of failed) output?.received({ id: output.piece.id, error: e.message });
  }
}
