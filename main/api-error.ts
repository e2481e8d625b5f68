// How a call fails, as the contract says it (ApiFailure in preload/api.ts): the one
// error the handlers throw, and the rule that turns any other error into one.

import type { ApiErrorCode, ApiFailure } from '../preload/api';

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly issues?: string[],
  ) {
    super(message);
  }

  toFailure(): ApiFailure {
    return this.issues
      ? { code: this.code, message: this.message, issues: this.issues }
      : { code: this.code, message: this.message };
  }
}

/** Any error as an ApiError: the engine's code where the contract knows it, else 'engine'. */
export function engineError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const code = (e as { code?: unknown }).code;
  const known: ApiErrorCode[] = [
    'invalid',
    'refused',
    'not-found',
    'busy',
    'engine',
    'unavailable',
  ];
  const message = e instanceof Error ? e.message : String(e);
  return new ApiError(
    known.includes(code as ApiErrorCode) ? (code as ApiErrorCode) : 'engine',
    message,
  );
}
