// The web bridge's connection, as a page lives it: lost within 2 s when the bridge
// stops or goes silent, connected again by itself when a bridge with the same token
// comes back on the same port; and the bridge's memory stays bounded when a client
// stops reading (that client is dropped, the others get everything).

import assert from 'node:assert/strict';
import { type AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import type { Backend } from '../../main/api';
import { startWebBridge } from '../../main/web-bridge';
import type { ConnectionStatus } from '../../preload/api';
import type { DriveTwinEventName, DriveTwinEvents } from '../../preload/events';
import { createBridgeClient, type SocketConstructor } from '../../renderer/bridge-client';

const Socket = WebSocket as unknown as SocketConstructor;

/** A backend that answers every call with [] and lets the test emit events. */
function fakeBackend(): Backend & { emit(event: DriveTwinEventName, payload: unknown): void } {
  const listeners = new Set<(e: DriveTwinEventName, p: unknown) => void>();
  return {
    handlers: {} as Backend['handlers'],
    call: async () => ({ ok: true, value: [] }),
    onEvent<E extends DriveTwinEventName>(l: (e: E, p: DriveTwinEvents[E]) => void) {
      const f = l as (e: DriveTwinEventName, p: unknown) => void;
      listeners.add(f);
      return () => void listeners.delete(f);
    },
    close: () => listeners.clear(),
    emit: (event, payload) => listeners.forEach((l) => l(event, payload)),
  };
}

/** Resolves with the status and when it came, once `pred` holds. */
function statusWhen(
  client: ReturnType<typeof createBridgeClient>,
  pred: (s: ConnectionStatus) => boolean,
): Promise<{ status: ConnectionStatus; at: number }> {
  return new Promise((resolve) => {
    const off = client.onConnection((s) => {
      if (!pred(s)) return;
      queueMicrotask(() => off());
      resolve({ status: s, at: performance.now() });
    });
  });
}

/**
 * A stand-in for the bridge — a hung one, one that only answers pings… — serving each
 * connection with `serve`, and a page's client on it, connected.
 */
async function clientOf(
  t: TestContext,
  serve: (ws: WebSocket) => void,
  reconnect = false,
): Promise<ReturnType<typeof createBridgeClient>> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  t.after(() => wss.close());
  wss.on('connection', serve);
  await new Promise((r) => wss.once('listening', r));
  const port = (wss.address() as AddressInfo).port;
  const client = createBridgeClient({
    url: `ws://127.0.0.1:${port}/bridge`,
    token: 'x',
    WebSocket: Socket,
    reconnect,
  });
  t.after(() => client.close());
  await client.connected;
  return client;
}

test('a page knows within 2 s that the bridge stopped, and reconnects by itself when it is back', async (t) => {
  const backend = fakeBackend();
  const token = 'ab'.repeat(32);
  let bridge = await startWebBridge({ backend, token });
  const port = bridge.port;
  t.after(() => bridge.close());
  const client = createBridgeClient({
    url: `ws://127.0.0.1:${port}/bridge`,
    token,
    WebSocket: Socket,
  });
  t.after(() => client.close());
  await client.connected;
  assert.deepEqual(await client.listJobs(), []);

  const stopped = performance.now();
  const lost = statusWhen(client, (s) => s.state === 'lost');
  await bridge.close();
  const { status, at } = await lost;
  t.diagnostic(`lost after ${(at - stopped).toFixed(0)} ms (${status.reason})`);
  assert.ok(at - stopped < 2000, 'said within 2 s');
  await assert.rejects(client.listJobs(), /lost/);

  // The same address and token (what `npm run web` keeps between runs).
  const back = statusWhen(client, (s) => s.state === 'connected');
  bridge = await startWebBridge({ backend, token, port });
  await back;
  assert.deepEqual(await client.listJobs(), [], 'calls work again');
});

test('a bridge that goes silent is lost within 2 s', async (t) => {
  // A server that accepts the token and then says nothing more (a hung backend).
  const client = await clientOf(t, (ws) =>
    ws.once('message', () => ws.send(JSON.stringify({ t: 'ready' }))),
  );
  const since = performance.now();
  const { status, at } = await statusWhen(client, (s) => s.state === 'lost');
  assert.equal(status.reason, 'silent');
  assert.ok(at - since < 2000, `said within 2 s (${(at - since).toFixed(0)} ms)`);
});

test('the bridge answers a ping at once, with or without anything else to say', async (t) => {
  const token = 'ef'.repeat(32);
  const bridge = await startWebBridge({ backend: fakeBackend(), token, heartbeatMs: 60_000 });
  t.after(() => bridge.close());
  const ws = new WebSocket(`ws://127.0.0.1:${bridge.port}/bridge`);
  t.after(() => ws.close());
  const heard: string[] = [];
  const pong = new Promise<number>((resolve) => {
    let asked = 0;
    ws.on('message', (m) => {
      const message = JSON.parse(String(m)) as { t: string };
      heard.push(message.t);
      if (message.t === 'ready') {
        asked = performance.now();
        ws.send(JSON.stringify({ t: 'ping' }));
      }
      if (message.t === 'pong') resolve(performance.now() - asked);
    });
  });
  ws.on('open', () => ws.send(JSON.stringify({ t: 'auth', token })));
  const ms = await pong;
  t.diagnostic(`pong after ${ms.toFixed(1)} ms`);
  assert.deepEqual(heard, ['ready', 'pong'], 'no heartbeat due yet: the pong answered the ping');
});

test('a bridge that only answers pings is never lost: the page asks when it hears nothing', async (t) => {
  // No heartbeat, no events: only the answer to the page's ping keeps it connected.
  let pings = 0;
  const client = await clientOf(t, (ws) =>
    ws.on('message', (m) => {
      const message = JSON.parse(String(m)) as { t: string };
      if (message.t === 'auth') ws.send(JSON.stringify({ t: 'ready' }));
      if (message.t === 'ping') {
        pings++;
        ws.send(JSON.stringify({ t: 'pong' }));
      }
    }),
  );
  const states: string[] = [];
  client.onConnection((s) => states.push(s.state));
  await new Promise((r) => setTimeout(r, 5000));
  t.diagnostic(`${pings} pings in 5 s; states: ${states.join(', ')}`);
  assert.ok(pings >= 3, `the page asked (${pings} pings)`);
  assert.deepEqual(states, ['connected'], 'never said lost');
});

test('a silence that ends: said lost, then connected again on the same socket, no event missed', async (t) => {
  let connections = 0;
  let speak: (text: string) => void = () => undefined;
  const client = await clientOf(
    t,
    (ws) => {
      connections++;
      speak = (text) => ws.send(text);
      ws.once('message', () => ws.send(JSON.stringify({ t: 'ready' })));
    },
    true,
  );
  const heard: number[] = [];
  client.on('progress', (p) => heard.push((p as unknown as { n: number }).n));
  const lost = statusWhen(client, (s) => s.state === 'lost');
  // Silent for 2.5 s (a backend busy for that long), then events again.
  const { status } = await lost;
  assert.equal(status.reason, 'silent');
  const back = statusWhen(client, (s) => s.state === 'connected');
  for (let n = 0; n < 20; n++)
    speak(JSON.stringify({ t: 'event', event: 'progress', payload: { n } }));
  await back;
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(
    heard,
    Array.from({ length: 20 }, (_, n) => n),
    'every event heard, in order',
  );
  assert.equal(connections, 1, 'the same socket: nothing to reconnect, nothing missed');
});

test('a client that stops reading is dropped; the others get every event', async (t) => {
  const backend = fakeBackend();
  const token = 'cd'.repeat(32);
  const bridge = await startWebBridge({ backend, token, maxBuffered: 1 << 20 });
  t.after(() => bridge.close());
  const url = `ws://127.0.0.1:${bridge.port}/bridge`;

  const open = (): Promise<{ ws: WebSocket; got: () => number; closed: Promise<number> }> =>
    new Promise((resolve) => {
      const ws = new WebSocket(url);
      let events = 0;
      const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
      ws.on('open', () => ws.send(JSON.stringify({ t: 'auth', token })));
      ws.on('message', (m) => {
        const message = JSON.parse(String(m)) as { t: string };
        if (message.t === 'ready') resolve({ ws, got: () => events, closed });
        if (message.t === 'event') events++;
      });
    });
  const reader = await open();
  const stalled = await open();
  (stalled.ws as unknown as { _socket: { pause(): void } })._socket.pause();

  const before = process.memoryUsage().rss;
  const payload = { job: 1, blob: 'x'.repeat(64 * 1024) };
  const EVENTS = 800; // 50 MiB in all
  for (let i = 0; i < EVENTS; i++) {
    backend.emit('progress', payload);
    // At the pace the reading client reads (it lives in this same process).
    while (reader.got() < i - 8) await new Promise((r) => setTimeout(r, 1));
  }
  await new Promise((r) => setTimeout(r, 200));
  const grown = process.memoryUsage().rss - before;
  t.diagnostic(`resident memory grew ${(grown / 2 ** 20).toFixed(1)} MiB while 50 MiB went out`);
  (stalled.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  const ending = await Promise.race([
    stalled.closed,
    new Promise<string>((r) => setTimeout(() => r('still open'), 3000)),
  ]);
  assert.equal(ending, 1006, 'the stalled client was dropped, not queued for');
  const deadline = Date.now() + 10_000;
  while (reader.got() < EVENTS && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  assert.equal(reader.got(), EVENTS, 'the reading client got everything');
  reader.ws.close();
});
