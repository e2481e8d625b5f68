// How patient a download is: how long a silent connection is waited for, how often a
// failed one is tried again and after how long. The defaults suit a real network;
// DRIVETWIN_HTTP_TIMEOUT, DRIVETWIN_HTTP_RETRIES and DRIVETWIN_HTTP_RETRY_DELAY (seconds,
// seconds) change them — the tests make them short.

export interface Tuning {
  /** A connection that sends nothing this long has stalled. */
  timeoutMs: number;
  /** Failures in a row (no byte between them) tried again before giving up. */
  attempts: number;
  /** The first pause after a failure; each next one is twice as long (30 s at most). */
  firstDelayMs: number;
}

const DEFAULTS: Tuning = { timeoutMs: 30_000, attempts: 8, firstDelayMs: 1000 };

export function tuning(env: NodeJS.ProcessEnv = process.env): Tuning {
  const number = (name: string, fallback: number, scale: number): number => {
    const text = env[name];
    const value = text === undefined ? NaN : Number(text);
    return Number.isFinite(value) && value >= 0 ? Math.round(value * scale) : fallback;
  };
  return {
    timeoutMs: number('DRIVETWIN_HTTP_TIMEOUT', DEFAULTS.timeoutMs, 1000) || DEFAULTS.timeoutMs,
    attempts: number('DRIVETWIN_HTTP_RETRIES', DEFAULTS.attempts, 1),
    firstDelayMs: number('DRIVETWIN_HTTP_RETRY_DELAY', DEFAULTS.firstDelayMs, 1000),
  };
}
