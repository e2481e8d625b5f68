import { createCipheriv, createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const CHUNK = 4 * 1024 * 1024;
const MIB = 1024 * 1024;

/** A fresh directory under /dev/shm when it exists (the disk here is noisy). */
export function tempDir(prefix: string): { dir: string; cleanup(): void } {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Pseudo-random bytes: the AES-128-CTR keystream of `seed`, or fresh randomness. */
function byteStream(seed?: number): (buf: Buffer) => void {
  if (seed === undefined) return (buf) => void randomFillSync(buf);
  const key = createHash('sha256').update(`drivetwin-test-${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  return (buf) => {
    cipher.update(zeros.subarray(0, buf.length)).copy(buf);
  };
}

function writeGenerated(
  file: string,
  size: number,
  seed: number | undefined,
  zeroMiB: (i: number) => boolean,
): void {
  const fill = byteStream(seed);
  const buf = Buffer.alloc(CHUNK);
  const fd = fs.openSync(file, 'w');
  try {
    for (let pos = 0; pos < size; pos += CHUNK) {
      const chunk = buf.subarray(0, Math.min(CHUNK, size - pos));
      fill(chunk);
      for (let off = 0; off < chunk.length; off += MIB) {
        if (zeroMiB((pos + off) / MIB)) chunk.fill(0, off, Math.min(off + MIB, chunk.length));
      }
      fs.writeSync(fd, chunk, 0, chunk.length, pos);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** `size` pseudo-random bytes, the same for the same seed. */
export function writeRandomFile(file: string, size: number, seed?: number): void {
  writeGenerated(file, size, seed, () => false);
}

/**
 * Random data where every third MiB (index 2, 5, 8, ...) is written as explicit
 * zeros — not holes — so sparse output must come from detecting zeros.
 */
export function writeMixedFile(file: string, size: number, seed?: number): void {
  writeGenerated(file, size, seed, (i) => i % 3 === 2);
}

/** Size in bytes of a block device (sysfs), or of a file. */
export function sizeOf(file: string): number {
  const st = fs.statSync(file);
  if (!st.isBlockDevice()) return st.size;
  const name = path.basename(fs.realpathSync(file));
  return Number(fs.readFileSync(`/sys/class/block/${name}/size`, 'utf8').trim()) * 512;
}

/** SHA-256 (hex) of the first `length` bytes (default: the whole file or device). */
export function sha256(file: string, length?: number): string {
  const total = length ?? sizeOf(file);
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(CHUNK);
  const fd = fs.openSync(file, 'r');
  try {
    let pos = 0;
    while (pos < total) {
      const n = fs.readSync(fd, buf, 0, Math.min(CHUNK, total - pos), pos);
      if (n === 0) throw new Error(`${file}: end of data at ${pos}, expected ${total} bytes`);
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Bytes actually allocated on disk (holes excluded). */
export function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

/** `length` bytes from `offset` (shorter only at end of file). */
export function readRange(file: string, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = fs.openSync(file, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}
