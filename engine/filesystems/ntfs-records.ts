// NTFS's on-disk records, read-only: a multi-sector record (an MFT "FILE" record or an
// "INDX" block) checked and its update sequence undone, its attributes walked, and a
// non-resident attribute's mapping pairs decoded into runs of clusters.
//
// Every multi-sector record ends each 512-byte stride with the record's update
// sequence number; the bytes it replaced wait in the update sequence array. A stride
// whose last two bytes are not that number was torn on write: the record is refused.

/** A run of virtual clusters [vcn, vcn + length) at lcn (null: a hole, nothing stored). */
export interface Run {
  vcn: number;
  lcn: number | null;
  length: number;
}

export interface Attribute {
  type: number;
  /** The attribute's name ('' for the unnamed one, e.g. a file's data). */
  name: string;
  resident: boolean;
  /** Resident: the value. */
  value: Buffer | null;
  /** Non-resident: the runs this extent maps, and the whole attribute's sizes (lowest VCN 0 only). */
  runs: Run[];
  lowestVcn: number;
  dataSize: number;
}

export const ATTR = {
  attributeList: 0x20,
  fileName: 0x30,
  volumeInformation: 0x70,
  data: 0x80,
  indexRoot: 0x90,
  indexAllocation: 0xa0,
  end: 0xffffffff,
} as const;

const STRIDE = 512;

/** `raw` (a whole record) with its update sequence undone; a string saying why not otherwise. */
export function undoFixups(raw: Buffer, magic: 'FILE' | 'INDX'): Buffer | string {
  if (raw.toString('latin1', 0, 4) !== magic) return `it does not start with "${magic}"`;
  const usaOffset = raw.readUInt16LE(4);
  const usaCount = raw.readUInt16LE(6);
  if (usaCount !== raw.length / STRIDE + 1 || usaOffset + 2 * usaCount > raw.length)
    return `its update sequence array (${usaCount} at ${usaOffset}) does not fit a ${raw.length}-byte record`;
  const out = Buffer.from(raw);
  const usn = out.readUInt16LE(usaOffset);
  for (let i = 1; i < usaCount; i++) {
    const end = i * STRIDE - 2;
    if (out.readUInt16LE(end) !== usn) return `sector ${i - 1} of it was torn on write`;
    out.writeUInt16LE(out.readUInt16LE(usaOffset + 2 * i), end);
  }
  return out;
}

/** The attributes of an MFT record (fixups undone), in order; a string saying what is wrong. */
export function attributesOf(record: Buffer): Attribute[] | string {
  const out: Attribute[] = [];
  const inUse = record.readUInt32LE(0x18);
  let at = record.readUInt16LE(0x14);
  if (inUse > record.length || at >= inUse) return `its header says ${inUse} bytes are in use`;
  while (at + 8 <= inUse) {
    const type = record.readUInt32LE(at);
    if (type === ATTR.end) return out;
    const length = record.readUInt32LE(at + 4);
    if (length < 24 || at + length > inUse || length % 8 !== 0)
      return `an attribute of type 0x${type.toString(16)} is ${length} bytes long`;
    const a = record.subarray(at, at + length);
    const nameLength = a[9];
    const nameOffset = a.readUInt16LE(10);
    if (nameOffset + 2 * nameLength > length) return 'an attribute name lies outside it';
    const name = a.toString('utf16le', nameOffset, nameOffset + 2 * nameLength);
    if (a[8] === 0) {
      const valueLength = a.readUInt32LE(16);
      const valueOffset = a.readUInt16LE(20);
      if (valueOffset + valueLength > length) return 'a resident value lies outside it';
      const value = a.subarray(valueOffset, valueOffset + valueLength);
      out.push({
        type,
        name,
        resident: true,
        value,
        runs: [],
        lowestVcn: 0,
        dataSize: valueLength,
      });
    } else {
      if (length < 64) return 'a non-resident attribute is too short';
      const lowestVcn = Number(a.readBigInt64LE(16));
      const pairs = a.readUInt16LE(32);
      if (pairs >= length) return 'mapping pairs lie outside an attribute';
      const runs = decodeRuns(a.subarray(pairs), lowestVcn);
      if (typeof runs === 'string') return runs;
      const dataSize = Number(a.readBigInt64LE(48));
      out.push({ type, name, resident: false, value: null, runs, lowestVcn, dataSize });
    }
    at += length;
  }
  return 'its attributes run past the bytes in use';
}

/**
 * Mapping pairs: per run a header byte (low nibble: bytes of the length, high nibble:
 * bytes of the signed LCN delta, 0 for a hole), the length, the delta; 0 ends them.
 */
export function decodeRuns(pairs: Buffer, firstVcn: number): Run[] | string {
  const runs: Run[] = [];
  let vcn = firstVcn;
  let lcn = 0;
  for (let at = 0; at < pairs.length;) {
    const header = pairs[at];
    if (header === 0) return runs;
    const lengthBytes = header & 0x0f;
    const deltaBytes = header >> 4;
    if (lengthBytes === 0 || lengthBytes > 8 || deltaBytes > 8)
      return 'a mapping pair is malformed';
    if (at + 1 + lengthBytes + deltaBytes > pairs.length) return 'the mapping pairs run out';
    const length = readLE(pairs, at + 1, lengthBytes, false);
    if (!(length > 0)) return 'a run has no clusters';
    let at2: number | null = null;
    if (deltaBytes > 0) {
      lcn += readLE(pairs, at + 1 + lengthBytes, deltaBytes, true);
      if (lcn < 0) return 'a run starts before the volume';
      at2 = lcn;
    }
    runs.push({ vcn, lcn: at2, length });
    vcn += length;
    at += 1 + lengthBytes + deltaBytes;
  }
  return 'the mapping pairs are not terminated';
}

function readLE(b: Buffer, at: number, bytes: number, signed: boolean): number {
  let v = 0n;
  for (let i = bytes - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i]);
  if (signed && b[at + bytes - 1] & 0x80) v -= 1n << BigInt(8 * bytes);
  return Number(v);
}

/** The record number an MFT reference names (its low 48 bits). */
export function recordNumber(reference: Buffer, at: number): number {
  return reference.readUInt32LE(at) + reference.readUInt16LE(at + 4) * 2 ** 32;
}

/** The name a FILE_NAME value carries, and the directory it is in. */
export function fileNameOf(value: Buffer): { parent: number; name: string } | null {
  if (value.length < 0x42) return null;
  const length = value[0x40];
  if (0x42 + 2 * length > value.length) return null;
  return {
    parent: recordNumber(value, 0),
    name: value.toString('utf16le', 0x42, 0x42 + 2 * length),
  };
}

/**
 * The entries of an index node: `node` starts at an index header (entries offset,
 * index length, …), relative to which the entries lie. Each entry: a file reference,
 * its length, its key's length, flags (2: the last, which has no key), the key.
 */
export function indexEntries(node: Buffer): Array<{ record: number; key: Buffer }> | string {
  if (node.length < 16) return 'an index header is cut short';
  const start = node.readUInt32LE(0);
  const end = node.readUInt32LE(4);
  if (end > node.length || start > end) return 'an index header points outside its node';
  const out: Array<{ record: number; key: Buffer }> = [];
  for (let at = start; at + 16 <= end;) {
    const length = node.readUInt16LE(at + 8);
    const keyLength = node.readUInt16LE(at + 10);
    const flags = node.readUInt16LE(at + 12);
    if (flags & 2) return out;
    if (length < 16 || at + length > end || 16 + keyLength > length)
      return 'an index entry runs outside its node';
    out.push({ record: recordNumber(node, at), key: node.subarray(at + 16, at + 16 + keyLength) });
    at += length;
  }
  return 'an index node has no last entry';
}
