// A bzip2 decoding thread (started by bzip2-lanes.ts): decodes one piece of the file at
// a time — a block, from its magic to the next mark — as a stream of its own with the
// system's libbzip2, which checks the block's CRC. Decoded bytes go back in chunks, at
// most `ahead` of them not yet handed back: that, not the block's size, bounds memory.

import fs from 'node:fs';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { singleBlockStream, singleBlockStreamLength } from './bzip2-blocks';
import { Bz2Decoder } from './libbz2';

/** Given as the worker's workerData. */
export interface LaneSettings {
  file: string;
  /** Bytes per decoded chunk. */
  chunk: number;
  /** Chunks a piece may have sent and not had back before its decoding waits. */
  ahead: number;
}

/** Bits [start, end) of the file: a block's magic up to the next mark. */
export interface Piece {
  id: number;
  start: number;
  end: number;
}

/**
 * Every piece is decoded as a level-9 stream's block: a block of any level fits the largest
 * size, and a speculative piece need not know which stream it is in.
 */
const LEVEL = 9;

export type LaneRequest =
  | ({ type: 'decode' } & Piece)
  /** A chunk of piece `id` was handed out: its buffer comes back for another. */
  | { type: 'release'; id: number; buffer: ArrayBuffer }
  | { type: 'stop'; id: number }
  /** The decoder is done: free libbzip2's C memory (a terminated thread would leak it) and end. */
  | { type: 'close' };

export type LaneReply =
  | { id: number; chunk: ArrayBuffer; length: number }
  | { id: number; done: true }
  /** `syscall` when reading the file failed, not decoding it. */
  | { id: number; error: string; syscall?: string };

function serve(port: MessagePort, settings: LaneSettings): void {
  const decoder = new Bz2Decoder(settings.chunk);
  const fd = fs.openSync(settings.file, 'r');
  const spare: ArrayBuffer[] = [];
  /** The piece read from the file; grown, never shrunk: no garbage per piece. */
  let bytes = Buffer.allocUnsafeSlow(0);
  const queue: Piece[] = [];
  let current: { id: number; out: number; stopped: boolean } | null = null;
  let wake: (() => void) | null = null;
  const wakeUp = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };

  async function decode(piece: Piece): Promise<void> {
    const state = (current = { id: piece.id, out: 0, stopped: false });
    try {
      const first = Math.floor(piece.start / 8);
      const length = Math.ceil(piece.end / 8) + 1 - first;
      if (length > bytes.length) bytes = Buffer.allocUnsafeSlow(Math.max(length, 2 * bytes.length));
      const got = fs.readSync(fd, bytes, 0, length, first);
      const [start, end] = [piece.start - first * 8, piece.end - first * 8];
      const streamLength = singleBlockStreamLength(start, end);
      singleBlockStream(bytes.subarray(0, got), start, end, LEVEL, decoder.input(streamLength));
      decoder.begin(streamLength);
      for (let ended = false; !ended;) {
        while (state.out >= settings.ahead && !state.stopped) {
          await new Promise<void>((resolve) => (wake = resolve));
        }
        if (state.stopped) return;
        const step = decoder.step();
        ended = step.ended;
        if (step.length === 0) continue;
        const buffer = spare.pop() ?? new ArrayBuffer(settings.chunk);
        new Uint8Array(buffer).set(decoder.out.subarray(0, step.length));
        state.out += 1;
        const reply: LaneReply = { id: piece.id, chunk: buffer, length: step.length };
        port.postMessage(reply, [buffer]);
      }
      port.postMessage({ id: piece.id, done: true } satisfies LaneReply);
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      const { syscall } = e as NodeJS.ErrnoException;
      port.postMessage({ id: piece.id, error, syscall } satisfies LaneReply);
    } finally {
      decoder.finish();
      current = null;
    }
  }

  let running = false;
  let closing = false;
  async function run(): Promise<void> {
    if (running) return;
    running = true;
    for (let piece = queue.shift(); piece; piece = queue.shift()) await decode(piece);
    running = false;
    if (closing) shutDown();
  }

  function shutDown(): void {
    decoder.close();
    fs.closeSync(fd);
    port.close();
  }

  port.on('message', (m: LaneRequest) => {
    if (m.type === 'decode') {
      queue.push(m);
      void run();
    } else if (m.type === 'release') {
      if (spare.length < settings.ahead) spare.push(m.buffer);
      if (current?.id === m.id) current.out -= 1;
      wakeUp();
    } else if (m.type === 'close') {
      closing = true;
      queue.length = 0;
      if (current) current.stopped = true;
      wakeUp();
      if (!running) shutDown();
    } else {
      const i = queue.findIndex((p) => p.id === m.id);
      if (i !== -1) queue.splice(i, 1);
      if (current?.id === m.id) current.stopped = true;
      wakeUp();
    }
  });
}

if (parentPort) serve(parentPort, workerData as LaneSettings);
