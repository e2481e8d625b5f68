// The one way out of the page. Components and stores call `api()`; nothing else.
import type { DriveTwinApi } from '../../preload/api';

export function api(): DriveTwinApi {
  return window.driveTwin;
}

/** A rejected call's message, as the backend worded it. */
export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
