import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TestContext } from 'node:test';

export interface LoopDevice {
  path: string;
  file: string;
  sectorSize: number;
  /** Detaches the device if it still backs `file`; safe to call twice. */
  detach(): void;
}

function losetup(args: string[]): string {
  return execFileSync('losetup', args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

function backingFile(dev: string): string | undefined {
  try {
    const name = path.basename(dev);
    return fs.readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim();
  } catch {
    return undefined; // not configured any more
  }
}

/**
 * `losetup --find --show` on `file`. `directIo` (an addition) asks the loop driver
 * to use O_DIRECT on the backing file (no double caching; on an nbdfuse file it
 * makes faults appear per sector instead of per 4 KiB page).
 */
export function attachLoop(
  file: string,
  opts: {
    sectorSize?: 512 | 4096;
    readOnly?: boolean;
    partscan?: boolean;
    directIo?: boolean;
    /** This loop device (it must be free), rather than the first free one. */
    at?: string;
  } = {},
): LoopDevice {
  const real = fs.realpathSync(file);
  const args = opts.at ? [] : ['--find', '--show'];
  if (opts.sectorSize) args.push('--sector-size', String(opts.sectorSize));
  if (opts.readOnly) args.push('--read-only');
  if (opts.partscan) args.push('--partscan');
  if (opts.directIo !== undefined) args.push(`--direct-io=${opts.directIo ? 'on' : 'off'}`);
  const dev = opts.at ?? losetup([...args, real]);
  if (opts.at) losetup([...args, opts.at, real]);
  const sectorSize = Number(
    fs.readFileSync(`/sys/block/${path.basename(dev)}/queue/logical_block_size`, 'utf8'),
  );
  let detached = false;
  return {
    path: dev,
    file: real,
    sectorSize,
    detach() {
      if (detached) return;
      // Only our own binding: the number may already serve someone else's file.
      const backing = backingFile(dev);
      if (backing !== undefined && (backing === real || backing.startsWith(`${real} (deleted)`))) {
        try {
          losetup(['--detach', dev]);
        } catch (err) {
          if (backingFile(dev) !== undefined) throw err;
        }
      }
      detached = true;
    },
  };
}

let rootCheck: string | null | undefined; // null: usable; string: why not

function whyNoLoop(): string | null {
  if (process.platform !== 'linux') return `loop devices need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'needs root (loop devices)';
  if (!fs.existsSync('/dev/loop-control')) return 'no /dev/loop-control (loop module not loaded?)';
  try {
    losetup(['--find']);
  } catch (err) {
    return `losetup unusable: ${(err as Error).message.split('\n')[0]}`;
  }
  return null;
}

/**
 * True when root and losetup work. Otherwise the test is skipped — or fails under
 * CI=true, where a skipped integration test would hide a broken machine.
 */
export function requireRoot(t: TestContext): boolean {
  if (rootCheck === undefined) rootCheck = whyNoLoop();
  if (rootCheck === null) return true;
  if (process.env.CI === 'true') throw new Error(`CI requires loop devices: ${rootCheck}`);
  t.skip(rootCheck);
  return false;
}
