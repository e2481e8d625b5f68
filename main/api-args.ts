// The arguments each method of the contract takes, checked before anything reaches the
// engine (zod, strict: unknown keys are errors), and the words that say what is wrong:
// "request.targets[0].confirmed: …".

import { z } from 'zod';
import { MAX_REGION_SIZE, MIN_REGION_SIZE } from '../engine/geometry';
import type { DriveTwinMethod, MethodArgs } from '../preload/api';
import { ApiError } from './api-error';

const MAX_PATH = 4096;
const MAX_TARGETS = 16;

const pathText = z
  .string()
  .min(1, 'a path is needed')
  .max(MAX_PATH, `a path is at most ${MAX_PATH} characters`)
  .refine((s) => !s.includes('\0'), 'a path cannot contain a NUL character');

const jobId = z.int().min(1).max(Number.MAX_SAFE_INTEGER);
const percent = z.int().min(1).max(100);
const rate = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

const regionSize = z
  .int()
  .min(MIN_REGION_SIZE)
  .max(MAX_REGION_SIZE)
  .refine(isPowerOfTwo, 'region size must be a power of two');

const cloneOptions = z
  .strictObject({
    regionSize: regionSize.optional(),
    threshold: z.int().min(1).max(4096).optional(),
    batch: z.int().min(1).max(4096).optional(),
    throttle: percent.optional(),
    maxRate: rate.optional(),
    sparse: z.boolean().nullable().optional(),
    ignoreErrors: z.boolean().optional(),
    sequential: z.boolean().optional(),
    verify: z.boolean().optional(),
    usedOnly: z.boolean().optional(),
    zeroFree: z.boolean().optional(),
    fit: z.boolean().optional(),
    newIds: z.boolean().optional(),
  })
  .refine((o) => o.batch === undefined || o.batch <= (o.threshold ?? 32), {
    message: 'batch must not exceed the threshold',
    path: ['batch'],
  })
  .refine((o) => !o.zeroFree || o.usedOnly, {
    message: 'zeroFree only goes with usedOnly',
    path: ['zeroFree'],
  });

const cloneTarget = z.strictObject({
  path: pathText,
  confirmed: z.boolean().optional(),
  allowMounted: z.boolean().optional(),
  confirmSystemName: z.string().max(1024).optional(),
});

const cloneRequest = z.strictObject({
  source: pathText,
  targets: z.array(cloneTarget).min(1, 'at least one target is needed').max(MAX_TARGETS),
  options: cloneOptions.optional(),
  fresh: z.boolean().optional(),
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'a SHA-256 is 64 hexadecimal digits')
    .optional(),
  serve: z.boolean().optional(),
});

const driveQuery = z.strictObject({
  source: pathText.optional(),
  allowMounted: z.boolean().optional(),
  allowSystem: z.boolean().optional(),
});

const resumeRequest = z.strictObject({
  confirmed: z.boolean().optional(),
  options: z
    .strictObject({
      threshold: z.int().min(1).max(4096).optional(),
      batch: z.int().min(1).max(4096).optional(),
      throttle: percent.optional(),
      maxRate: rate.optional(),
      verify: z.boolean().optional(),
    })
    .optional(),
  drop: z.array(pathText).max(MAX_TARGETS).optional(),
});

const throttleChange = z
  .strictObject({ percent: percent.optional(), maxRate: rate.optional() })
  .refine((c) => c.percent !== undefined || c.maxRate !== undefined, {
    message: 'give percent, maxRate or both',
  });

const ARGS = {
  capabilities: z.tuple([]),
  listDrives: z.tuple([driveQuery.optional()]),
  pickImageToOpen: z.tuple([pathText.optional()]),
  pickImageToSave: z.tuple([pathText.optional()]),
  forgetImage: z.tuple([pathText, z.enum(['source', 'target'])]),
  driveContents: z.tuple([pathText]),
  listFolder: z.tuple([pathText.optional()]),
  ejectDrive: z.tuple([pathText]),
  usedSpace: z.tuple([pathText, regionSize.optional()]),
  planClone: z.tuple([cloneRequest]),
  startClone: z.tuple([cloneRequest]),
  pause: z.tuple([jobId]),
  resume: z.tuple([jobId]),
  cancel: z.tuple([jobId]),
  setThrottle: z.tuple([jobId, throttleChange]),
  listJobs: z.tuple([]),
  resumeJob: z.tuple([jobId, resumeRequest.optional()]),
  forgetJob: z.tuple([jobId]),
  verify: z.tuple([jobId]),
  regionMap: z.tuple([jobId]),
  exportMap: z.tuple([jobId, z.enum(['json', 'ddrescue'])]),
} satisfies { [M in DriveTwinMethod]: z.ZodType };

/** Argument names, for messages: "request.targets[0].confirmed: …". */
const ARG_NAMES: { [M in DriveTwinMethod]: string[] } = {
  capabilities: [],
  listDrives: ['query'],
  pickImageToOpen: ['typedPath'],
  pickImageToSave: ['typedPath'],
  forgetImage: ['path', 'role'],
  driveContents: ['path'],
  listFolder: ['path'],
  ejectDrive: ['path'],
  usedSpace: ['source', 'regionSize'],
  planClone: ['request'],
  startClone: ['request'],
  pause: ['job'],
  resume: ['job'],
  cancel: ['job'],
  setThrottle: ['job', 'change'],
  listJobs: [],
  resumeJob: ['job', 'request'],
  forgetJob: ['job'],
  verify: ['job'],
  regionMap: ['job'],
  exportMap: ['job', 'format'],
};

function describeIssues(method: DriveTwinMethod, error: z.ZodError, given: number): string[] {
  return error.issues.map((issue) => {
    if (issue.path.length === 0 && (issue.code === 'too_big' || issue.code === 'too_small')) {
      const names = ARG_NAMES[method];
      const takes = names.length ? `(${names.join(', ')})` : 'no arguments';
      return `arguments: ${method} takes ${takes}, not ${given} argument${given === 1 ? '' : 's'}`;
    }
    let where = '';
    issue.path.forEach((p, i) => {
      if (i === 0 && typeof p === 'number') where = ARG_NAMES[method][p] ?? `argument ${p + 1}`;
      else if (typeof p === 'number') where += `[${p}]`;
      else where += `${where ? '.' : ''}${String(p)}`;
    });
    const missing = issue.code === 'invalid_type' && /received undefined$/.test(issue.message);
    return `${where || 'arguments'}: ${missing ? `missing (${issue.expected} expected)` : issue.message}`;
  });
}

/** The arguments of `method`, checked: throws ApiError('invalid') saying what is wrong. */
export function parseArgs<M extends DriveTwinMethod>(method: M, args: unknown[]): MethodArgs<M> {
  if (!Array.isArray(args)) throw new ApiError('invalid', `${method}: arguments must be a list`);
  // Trailing undefined (an omitted optional argument through IPC) is no argument.
  const given = [...args];
  while (given.length > 0 && given[given.length - 1] === undefined) given.pop();
  const parsed = (ARGS[method] as z.ZodType).safeParse(given);
  if (!parsed.success) {
    const issues = describeIssues(method, parsed.error, given.length);
    throw new ApiError('invalid', `${method}: ${issues.join('; ')}`, issues);
  }
  return parsed.data as MethodArgs<M>;
}
