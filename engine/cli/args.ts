// The command line's shared grammar: exit codes, usage errors, the common flags and
// the parsing every command uses.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Metadata } from '../store/metadata';
import { parseSize } from '../size';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  unreadable: 3,
  mismatch: 4,
  signal: 130,
} as const;

export class UsageError extends Error {}

export const COMMON = {
  db: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export type Values = Record<string, string | boolean | string[] | undefined>;

export function parse(args: string[], options: ParseArgsConfig['options']) {
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Values, positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function size(name: string, text: Values[string]): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseSize(String(text));
  } catch (e) {
    throw new UsageError(`--${name}: ${(e as Error).message}`);
  }
}

export function jobId(text: string | undefined): number {
  if (!text || !/^\d+$/.test(text))
    throw new UsageError(`a job number is needed, not "${text ?? ''}"`);
  return Number(text);
}

/**
 * The job database: --db PATH, else $DRIVETWIN_DB, else the user data directory.
 * better-sqlite3 is loaded here, by the commands that need it, not at start-up.
 */
export function openMetadata(values: Values): Metadata {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { Metadata } = require('../store/metadata') as typeof import('../store/metadata');
  const { databasePath } = require('../store/database') as typeof import('../store/database');
  /* eslint-enable @typescript-eslint/no-require-imports */
  return Metadata.open(databasePath(values.db as string | undefined));
}
