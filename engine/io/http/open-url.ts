// A URL as a source: the file the server has there (remote-file.ts), recognised by its
// first bytes, read as a stream by the stream source every compressed format shares — a
// plain image too. The SHA-256 it must have is the one given, else the one in a `.sha256`
// file next to it, where there is one.

import type { StreamSource } from '../device';
import type { ExpectedHash } from '../source-file';
import { checksumNextTo, urlFileName } from './checksum-file';
import { RemoteFile } from './remote-file';

/**
 * The source at `url`. `sha256`: the hash it must have; null: none, not even a .sha256
 * file's; undefined: the .sha256 file's, if there is one. Throws the DeviceError that says
 * why it can't be read.
 */
export async function openUrl(
  url: string,
  sha256: ExpectedHash | null | undefined,
): Promise<StreamSource> {
  const file = await RemoteFile.open(url, sha256 ?? null);
  if (sha256 === undefined) {
    const found =
      (await checksumNextTo(file.foundAt)) ??
      (file.foundAt !== url ? await checksumNextTo(url) : null);
    if (found) file.expect(found);
  }
  const { compressionOfHead, openStream } = await import('../compressed/index');
  const name = urlFileName(file.foundAt) || urlFileName(url);
  return openStream(file, compressionOfHead(url, name, file.firstBytes));
}
