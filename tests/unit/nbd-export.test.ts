// The NBD export against a disk in memory: the handshake's options (GO, INFO,
// EXPORT_NAME, LIST, ABORT, one it doesn't know), every command and its errors,
// replies out of order, a client that breaks the rules, and closing with requests
// in flight. Real clients (nbdinfo, nbdcopy, nbdfuse) are tests/integration/serve-*.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { NbdExport, type ServedDisk, socketProblem } from '../../engine/serve/export';
import { CMD, ERR, IHAVEOPT, INFO, OPT, REP, TFLAG } from '../../engine/serve/nbd-protocol';
import { NbdClient, NbdError } from '../helpers/nbd-client';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'drivetwin-nbd-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let serial = 0;

/** A disk of bytes in memory; `gate` holds writes back until it is opened. */
class MemoryDisk implements ServedDisk {
  readonly bytes: Buffer;
  flushes = 0;
  calls: string[] = [];
  gate: Promise<void> = Promise.resolve();

  constructor(readonly size: number) {
    this.bytes = Buffer.alloc(size);
    for (let i = 0; i < size; i++) this.bytes[i] = (i * 7) & 0xff;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.calls.push(`read ${offset}+${length}`);
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }

  async write(data: Buffer, offset: number): Promise<void> {
    this.calls.push(`write ${offset}+${data.length}`);
    await this.gate;
    data.copy(this.bytes, offset);
  }

  async zero(offset: number, length: number): Promise<void> {
    this.calls.push(`zero ${offset}+${length}`);
    this.bytes.fill(0, offset, offset + length);
  }

  async discard(offset: number, length: number): Promise<void> {
    this.calls.push(`discard ${offset}+${length}`);
  }

  async flush(): Promise<void> {
    this.calls.push('flush');
    this.flushes += 1;
  }
}

async function serve(size = 1024 * 1024) {
  const disk = new MemoryDisk(size);
  const socket = path.join(root, `s${++serial}.sock`);
  const served = await NbdExport.listen(socket, disk, { name: 'job-9', description: 'a test' });
  after(() => served.close());
  return { disk, socket, served };
}

test('GO: the size and what the disk does (flush, FUA, trim, zeroes, several connections)', async () => {
  const { socket } = await serve(3 * 4096 + 512);
  const c = await NbdClient.connect(socket);
  assert.equal(c.handshake.size, 3 * 4096 + 512);
  const want =
    TFLAG.HAS_FLAGS |
    TFLAG.SEND_FLUSH |
    TFLAG.SEND_FUA |
    TFLAG.SEND_TRIM |
    TFLAG.SEND_WRITE_ZEROES |
    TFLAG.CAN_MULTI_CONN;
  assert.equal(c.handshake.flags, want);
  const infos = c.handshake.replies.filter(([, type]) => type === REP.INFO).map(([, , b]) => b);
  const blockSize = infos.find((b) => b.readUInt16BE(0) === INFO.BLOCK_SIZE)!;
  assert.deepEqual(
    [blockSize.readUInt32BE(2), blockSize.readUInt32BE(6), blockSize.readUInt32BE(10)],
    [1, 4096, 32 * 1024 * 1024],
  );
  await c.disconnect();
});

test('reads, writes, zeroes, trims and flushes reach the disk; each read gets its bytes', async () => {
  const { disk, socket } = await serve();
  const c = await NbdClient.connect(socket, { name: 'job-9' });
  const before = Buffer.from(disk.bytes.subarray(1000, 1100));
  assert.deepEqual(await c.read(1000, 100), before);
  await c.write(Buffer.alloc(10, 0xee), 5);
  assert.deepEqual(disk.bytes.subarray(5, 15), Buffer.alloc(10, 0xee));
  await c.zero(4096, 8192);
  assert.ok(disk.bytes.subarray(4096, 4096 + 8192).equals(Buffer.alloc(8192)));
  await c.trim(65536, 65536);
  await c.flush();
  // Forced unit access: the write is flushed before it is answered.
  await c.write(Buffer.alloc(4, 1), 0, 1 /* FUA */);
  assert.deepEqual(disk.calls.slice(-7), [
    'read 1000+100',
    'write 5+10',
    'zero 4096+8192',
    'discard 65536+65536',
    'flush',
    'write 0+4',
    'flush',
  ]);
  await c.disconnect();
});

test('replies come as requests end, not in order: a read is not held behind a slow write', async () => {
  const { disk, socket } = await serve();
  let open = (): void => undefined;
  disk.gate = new Promise((resolve) => (open = resolve));
  const c = await NbdClient.connect(socket);
  const order: string[] = [];
  const write = c.write(Buffer.alloc(512, 9), 0).then(() => order.push('write'));
  const read = c.read(4096, 512).then(() => order.push('read'));
  await read;
  assert.deepEqual(order, ['read']);
  open();
  await write;
  assert.deepEqual(order, ['read', 'write']);
  await c.disconnect();
});

test("requests past the disk's end, with flags they may not carry, or unknown, get their error", async () => {
  const { disk, socket } = await serve(8192);
  const c = await NbdClient.connect(socket);
  const code = (p: Promise<unknown>) =>
    p.then(
      () => 0,
      (e: NbdError) => e.errno,
    );
  assert.equal(await code(c.read(8000, 1000)), ERR.EINVAL);
  assert.equal(await code(c.write(Buffer.alloc(1000), 8000)), ERR.ENOSPC);
  assert.equal(await code(c.trim(4096, 8192)), ERR.EINVAL);
  assert.equal(await code(c.raw(CMD.READ, 2 /* NO_HOLE */, 0, 512)), ERR.EINVAL);
  assert.equal(await code(c.raw(5 /* CACHE */, 0, 0, 512)), ERR.EINVAL);
  assert.equal(await code(c.raw(CMD.READ, 0, 0, 33 * 1024 * 1024)), ERR.EINVAL);
  // Past what a number holds exactly: refused, not rounded.
  assert.equal(await code(c.raw(CMD.READ, 0, 2 ** 60, 512)), ERR.EINVAL);
  assert.deepEqual(disk.calls, [], 'nothing reached the disk');
  // The connection is still good.
  assert.equal((await c.read(0, 16)).length, 16);
  await c.disconnect();
});

test('options: LIST names the export, INFO answers, an unknown one is unsupported, then GO works', async () => {
  const { socket } = await serve(4096);
  const info = (name: string) => {
    const n = Buffer.from(name);
    const b = Buffer.alloc(4 + n.length + 4);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(1, 4 + n.length);
    b.writeUInt16BE(INFO.DESCRIPTION, 6 + n.length);
    return b;
  };
  const c = await NbdClient.connect(socket, {
    before: [
      [OPT.LIST, Buffer.alloc(0)],
      [OPT.INFO, info('job-9')],
      [OPT.INFO, info('another')],
      [8 /* STRUCTURED_REPLY */, Buffer.alloc(0)],
    ],
  });
  const r = c.handshake.replies;
  assert.deepEqual(r[0].slice(0, 2), [OPT.LIST, REP.SERVER]);
  assert.equal(r[0][2].subarray(4).toString(), 'job-9');
  assert.deepEqual(r[1].slice(0, 2), [OPT.LIST, REP.ACK]);
  const description = r.find(
    ([o, t, b]) => o === OPT.INFO && t === REP.INFO && b.readUInt16BE(0) === INFO.DESCRIPTION,
  );
  assert.equal(description?.[2].subarray(2).toString(), 'a test');
  assert.ok(r.some(([o, t]) => o === OPT.INFO && t === REP.ERR_UNKNOWN));
  assert.ok(r.some(([o, t]) => o === 8 && t === REP.ERR_UNSUP));
  assert.equal(c.handshake.size, 4096);
  await c.disconnect();
});

test('the older EXPORT_NAME ends the handshake; an unknown name is hung up on', async () => {
  const { socket } = await serve(4096);
  const c = await NbdClient.connect(socket, { exportName: true });
  assert.equal(c.handshake.size, 4096);
  assert.equal((await c.read(0, 4096)).length, 4096);
  await c.disconnect();
  await assert.rejects(NbdClient.connect(socket, { exportName: true, name: 'nope' }));
});

test('a client that sets flags it was not offered, or sends a bad magic, is hung up on', async () => {
  const { socket, served } = await serve(4096);
  const closedAfter = async (bytes: Buffer[]) => {
    const s = net.connect(socket);
    await new Promise((r) => s.once('connect', r));
    s.on('data', () => undefined);
    for (const b of bytes) s.write(b);
    await new Promise((r) => s.once('close', r));
  };
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(1 | 4);
  await closedAfter([flags]);
  const good = Buffer.alloc(4);
  good.writeUInt32BE(1);
  const bad = Buffer.alloc(16);
  bad.writeBigUInt64BE(IHAVEOPT + 1n);
  await closedAfter([good, bad]);
  await served.noClients();
});

test('closing: requests in flight finish, new ones get ESHUTDOWN, then the connection ends', async () => {
  const { disk, socket, served } = await serve();
  let open = (): void => undefined;
  disk.gate = new Promise((resolve) => (open = resolve));
  const c = await NbdClient.connect(socket);
  const slow = c.write(Buffer.alloc(512, 3), 0);
  await new Promise((r) => setTimeout(r, 50));
  const closing = served.close();
  const refused = await c.read(0, 512).then(
    () => 0,
    (e: NbdError) => e.errno,
  );
  assert.equal(refused, ERR.ESHUTDOWN);
  open();
  await slow;
  assert.deepEqual(disk.bytes.subarray(0, 512), Buffer.alloc(512, 3));
  await closing;
  assert.equal(served.clients, 0);
  assert.equal(fs.existsSync(socket), false, 'the socket file is removed');
});

test('the socket: a stale one is replaced; a live one, a file or a missing folder is refused', async () => {
  const live = path.join(root, 'live.sock');
  const server = net.createServer().listen(live);
  await new Promise((r) => server.once('listening', r));
  assert.match((await socketProblem(live)) ?? '', /is in use/);
  server.close();
  // A process killed while listening leaves its socket behind, answering nobody.
  const stale = path.join(root, 'stale.sock');
  const child = spawn(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`,
  ]);
  await new Promise((r) => child.stdout.once('data', r));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(fs.statSync(stale).isSocket());
  assert.equal(await socketProblem(stale), null);
  const served = await NbdExport.listen(stale, new MemoryDisk(4096), {
    name: 'x',
    description: '',
  });
  const c = await NbdClient.connect(stale);
  assert.equal(c.handshake.size, 4096);
  await c.disconnect();
  await served.close();
  const file = path.join(root, 'plain-file');
  fs.writeFileSync(file, 'x');
  assert.match((await socketProblem(file)) ?? '', /is not a socket/);
  assert.match((await socketProblem(path.join(root, 'no', 'such.sock'))) ?? '', /does not exist/);
  assert.equal(await socketProblem(path.join(root, 'free.sock')), null);
});

test("the socket is its owner's alone (mode 0600)", async () => {
  const { socket } = await serve(4096);
  assert.equal(fs.statSync(socket).mode & 0o777, 0o600);
});
