import fs from 'node:fs';
import { promisify } from 'node:util';
import { DeviceError } from './device';

const read = promisify(fs.read);
const write = promisify(fs.write);
const fdatasync = promisify(fs.fdatasync);
const close = promisify(fs.close);

// Positioned I/O on a raw descriptor; short transfers are continued, errors name the range.
export async function preadFully(fd: number, path: string, buf: Buffer, offset: number) {
  let done = 0;
  while (done < buf.length) {
    let n: number;
    try {
      n = (await read(fd, buf, done, buf.length - done, offset + done)).bytesRead;
    } catch (e) {
      throw new DeviceError('read', path, offset, buf.length, e as NodeJS.ErrnoException);
    }
    if (n === 0) {
      const eof = Object.assign(new Error('unexpected end of data'), { code: 'EOF' });
      throw new DeviceError('read', path, offset, buf.length, eof);
    }
    done += n;
  }
}

export async function pwriteFully(fd: number, path: string, buf: Buffer, offset: number) {
  let done = 0;
  while (done < buf.length) {
    try {
      done += (await write(fd, buf, done, buf.length - done, offset + done)).bytesWritten;
    } catch (e) {
      throw new DeviceError('write', path, offset, buf.length, e as NodeJS.ErrnoException);
    }
  }
}

export async function syncData(fd: number, path: string): Promise<void> {
  try {
    await fdatasync(fd);
  } catch (e) {
    throw new DeviceError('flush', path, 0, 0, e as NodeJS.ErrnoException);
  }
}

export const closeFd = (fd: number): Promise<void> => close(fd);

/** fs.openSync (new files 0644), a failure as a DeviceError naming the path. */
export function openFdSync(path: string, flags: 'w' | 'r+' | 'r'): number {
  try {
    return fs.openSync(path, flags, 0o644);
  } catch (e) {
    throw new DeviceError('open', path, 0, 0, e as NodeJS.ErrnoException);
  }
}
