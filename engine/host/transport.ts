// Carrying engine messages: one framing (a JSON object per line) for every byte
// stream — the elevated engine's socket on both ends, the CLI's --json output — and
// one Channel shape for every carrier, so the host never asks which one it holds.

import type net from 'node:net';

/** One message carrier: Electron's parentPort, child_process IPC, or a framed socket. */
export interface Channel {
  send(message: unknown): void;
  onMessage(listener: (message: unknown) => void): void;
  onClose(listener: () => void): void;
}

/** A message as one line. */
export function frame(message: unknown): string {
  return JSON.stringify(message) + '\n';
}

/** Cuts a character stream into messages; a line that is not JSON is a broken peer. */
export class LineReader {
  private partial = '';

  constructor(
    private readonly onMessage: (message: unknown) => void,
    private readonly onGarbage: () => void,
  ) {}

  push(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        this.onGarbage();
        return;
      }
      this.onMessage(message);
    }
  }
}

/**
 * Framed messages over a stream socket. `leftover`: what was read past the first
 * line before the socket was handed over (the authentication line's tail).
 */
export function socketChannel(socket: net.Socket, leftover = ''): Channel {
  const listeners: Array<(m: unknown) => void> = [];
  const reader = new LineReader(
    (m) => {
      for (const l of listeners) l(m);
    },
    () => socket.destroy(), // a peer that sends garbage is not ours
  );
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => reader.push(chunk));
  socket.on('error', () => socket.destroy());
  socket.resume();
  return {
    send: (m) => {
      if (!socket.destroyed) socket.write(frame(m));
    },
    onMessage: (l) => {
      listeners.push(l);
      // What arrived with the handover is read once someone listens.
      if (listeners.length === 1 && leftover) queueMicrotask(() => reader.push(leftover));
    },
    onClose: (l) => socket.on('close', l),
  };
}

interface ParentPort {
  on(event: 'message', listener: (e: { data: unknown }) => void): void;
  postMessage(message: unknown): void;
}

/** Electron utilityProcess: process.parentPort. */
export function parentPortChannel(port: ParentPort): Channel {
  return {
    send: (m) => port.postMessage(m),
    onMessage: (l) => port.on('message', (e) => l(e.data)),
    // The utility process dies with the app; nothing to watch.
    onClose: () => undefined,
  };
}

/** child_process.fork: process.send and 'message'. */
export function processChannel(proc: NodeJS.Process = process): Channel {
  return {
    send: (m) => {
      if (proc.connected) proc.send?.(m);
    },
    onMessage: (l) => proc.on('message', l),
    onClose: (l) => proc.on('disconnect', l),
  };
}

/** The channel the engine host was started with: Electron's parentPort, or fork's IPC. */
export function parentChannel(): Channel | null {
  const port = (process as NodeJS.Process & { parentPort?: ParentPort }).parentPort;
  if (port) return parentPortChannel(port);
  return process.send ? processChannel() : null;
}
