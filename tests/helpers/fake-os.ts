// A fake of engine/drives/os-calls.ts: every call a platform module makes is recorded
// as one line, in order, and answered from what the test gives. PowerShell's
// -EncodedCommand is decoded so the lines say which cmdlet ran.

import type { CommandResult, Geometry, OpenFlag, OsCalls } from '../../engine/drives/os-calls';

export interface FakeOsAnswers {
  /** Output of a child command (`command` and its arguments, or the decoded PowerShell script). */
  run?: (command: string, args: string[], script: string | null) => Partial<CommandResult>;
  /** The errno code ioctl(BLKRRPART) answers. */
  rereadFails?: string;
  /** An errno code for a write at `offset`, or null to succeed. */
  writeFails?: (offset: number) => string | null;
  /** An errno code for opening `path`, or null to succeed. */
  openFails?: (path: string, flags: OpenFlag[]) => string | null;
  geometry?: Geometry;
}

export interface FakeOs extends OsCalls {
  /** One line a call: "open /dev/rdisk4 O_RDWR|O_EXLOCK|O_NONBLOCK = 3", "fdatasync 3"… */
  readonly calls: string[];
}

/** The PowerShell script behind -EncodedCommand, without the lines every script starts with. */
export function decodedScript(args: string[]): string | null {
  const at = args.indexOf('-EncodedCommand');
  if (at < 0) return null;
  const script = Buffer.from(args[at + 1], 'base64').toString('utf16le');
  return script
    .split('\n')
    .filter((l) => !/^(\$ErrorActionPreference|\[Console\]|function Text)/.test(l))
    .join('\n');
}

function errno(code: string, call: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${call}`), { code });
}

export function fakeOs(answers: FakeOsAnswers = {}): FakeOs {
  const calls: string[] = [];
  let nextFd = 3;
  const command = (name: string, args: string[], sync: boolean): CommandResult => {
    const script = decodedScript(args);
    const first = script?.split('\n')[0] ?? '';
    const cmdlet = first.length > 60 ? `${first.slice(0, 60)}…` : first;
    const shown = script === null ? [name, ...args].join(' ') : `${name}: ${cmdlet}`;
    calls.push(`${sync ? 'read' : 'run'} ${shown}`);
    return { code: 0, stdout: '', stderr: '', ...answers.run?.(name, args, script) };
  };
  return {
    calls,
    async open(path, flags) {
      const failure = answers.openFails?.(path, flags) ?? null;
      const fd = failure ? -1 : nextFd++;
      calls.push(`open ${path} ${flags.join('|')}${failure ? ` -> ${failure}` : ` = ${fd}`}`);
      if (failure) throw errno(failure, `open ${path}`);
      return fd;
    },
    async read(fd, _path, buffer, offset) {
      calls.push(`pread ${fd} ${offset}+${buffer.length}`);
    },
    async write(fd, _path, buffer, offset) {
      const failure = answers.writeFails?.(offset) ?? null;
      calls.push(`pwrite ${fd} ${offset}+${buffer.length}${failure ? ` -> ${failure}` : ''}`);
      if (failure) throw errno(failure, `pwrite ${offset}`);
    },
    async fdatasync(fd) {
      calls.push(`fdatasync ${fd}`);
    },
    async syncCache(fd) {
      calls.push(`ioctl ${fd} DKIOCSYNCHRONIZECACHE`);
    },
    async close(fd) {
      calls.push(`close ${fd}`);
    },
    async rereadPartitions(fd) {
      const failure = answers.rereadFails ?? null;
      calls.push(`ioctl ${fd} BLKRRPART${failure ? ` -> ${failure}` : ''}`);
      return failure;
    },
    async setNoCache(fd) {
      calls.push(`setF_NOCACHE ${fd} 1`);
    },
    async flock(fd) {
      calls.push(`setFlock ${fd} 1`);
    },
    async geometry(fd) {
      calls.push(`getBlockDevice ${fd}`);
      return answers.geometry ?? { size: 64 * 1024 * 1024, logicalSectorSize: 512, serial: null };
    },
    async run(name, args) {
      return command(name, args, false);
    },
    runSync(name, args) {
      return command(name, args, true);
    },
    async sleep(ms) {
      calls.push(`sleep ${ms}`);
    },
  };
}
