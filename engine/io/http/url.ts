// What a user gives for a download: its URL, and the SHA-256 it must have. Light enough
// for start-up: the download code itself is loaded only when a URL is opened.

/** An http:// or https:// URL. */
export const isUrl = (p: string): boolean => /^https?:\/\//i.test(p);

/** The hash as given, in lowercase; null when it is not 64 hexadecimal digits. */
export function parseSha256(text: string): string | null {
  const hex = text.trim().toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : null;
}
