// NTFS: which clusters the volume's $Bitmap says are in use, found through the MFT.
//
// The boot sector gives the cluster size, the volume's sectors and where the MFT
// starts. MFT record 0 ($MFT) maps the MFT itself (its $DATA runs, continued in other
// records through an $ATTRIBUTE_LIST when it is fragmented); record 3 ($Volume) holds
// the volume's flags; record 6 ($Bitmap) is one bit per cluster. As ntfsclone does, a
// volume marked dirty is refused, and so is one Windows hibernated onto (a hiberfil.sys
// in the root directory whose header says "hibr": Windows' state is in memory pages
// on disk, and writing the copy's clusters under it would lose data) — ntfs-3g
// refuses to mount such a volume read-write for the same reason.

import type { Device } from '../io/device';
import {
  FilesystemRefused,
  RangeList,
  READ_CHUNK,
  covers,
  mustFit,
  readBytes,
  setBitRuns,
  type RefusalKind,
  type UsedSpace,
} from './common';
import {
  ATTR,
  type Attribute,
  type Run,
  attributesOf,
  fileNameOf,
  indexEntries,
  recordNumber,
  undoFixups,
} from './ntfs-records';

const MFT = 0;
const VOLUME = 3;
const ROOT = 5;
const BITMAP = 6;
const VOLUME_IS_DIRTY = 0x0001;
const HIBERFILE_HEADER = 4096;

export interface NtfsBoot {
  bytesPerSector: number;
  clusterSize: number;
  /** The volume's sectors; its backup boot sector lies just past them. */
  totalSectors: number;
  clusters: number;
  mftLcn: number;
  recordSize: number;
}

const refuse = (kind: RefusalKind, why: string): never => {
  throw new FilesystemRefused('ntfs', kind, why);
};

/** A record or index size: clusters when positive, else 2^-n bytes. */
const sizeOf = (code: number, clusterSize: number): number =>
  code > 0x7f ? 2 ** (256 - code) : code * clusterSize;

/** Parses an NTFS boot sector; null without its signature. Throws on numbers that don't add up. */
export function parseNtfsBoot(boot: Buffer): NtfsBoot | null {
  if (boot.length < 512 || boot.toString('latin1', 3, 11) !== 'NTFS    ') return null;
  const bytesPerSector = boot.readUInt16LE(11);
  const spcCode = boot[13];
  if (![256, 512, 1024, 2048, 4096].includes(bytesPerSector))
    refuse('corrupt', `${bytesPerSector} bytes per sector`);
  const spc = spcCode > 0x80 ? 2 ** (256 - spcCode) : spcCode;
  if (!(spc > 0 && (spc & (spc - 1)) === 0) || (spcCode > 0x80 && spcCode < 240))
    refuse('corrupt', `sectors per cluster code 0x${spcCode.toString(16)}`);
  const clusterSize = bytesPerSector * spc;
  if (clusterSize > 2 ** 21) refuse('corrupt', `cluster size ${clusterSize}`);
  // Fields FAT uses must be zero here (reserved sectors, FATs, root entries, sector counts).
  if (boot.readUInt16LE(14) || boot[16] || boot.readUInt16LE(17) || boot.readUInt16LE(19))
    refuse('corrupt', 'its boot sector has FAT fields set');
  const totalSectors = Number(boot.readBigInt64LE(0x28));
  const clusters = Math.floor((totalSectors * bytesPerSector) / clusterSize);
  const mftLcn = Number(boot.readBigInt64LE(0x30));
  const mirrorLcn = Number(boot.readBigInt64LE(0x38));
  if (!(totalSectors > 0) || !Number.isSafeInteger(totalSectors * bytesPerSector))
    refuse('corrupt', `${totalSectors} sectors`);
  if (mftLcn <= 0 || mirrorLcn <= 0 || mftLcn === mirrorLcn || mftLcn >= clusters)
    refuse('corrupt', `the MFT at cluster ${mftLcn} (mirror ${mirrorLcn}) of ${clusters}`);
  const recordSize = sizeOf(boot[0x40], clusterSize);
  if (![1024, 2048, 4096].includes(recordSize))
    refuse('corrupt', `MFT records of ${recordSize} bytes`);
  return { bytesPerSector, clusterSize, totalSectors, clusters, mftLcn, recordSize };
}

/** One NTFS volume read through a Device: its MFT's runs, records and streams. */
class Volume {
  mftRuns: Run[] = [];

  constructor(
    private readonly source: Device,
    readonly boot: NtfsBoot,
  ) {}

  /** `length` bytes at `pos` of a non-resident stream made of `runs` (holes read as zeros). */
  async readRuns(runs: Run[], pos: number, length: number, what: string): Promise<Buffer> {
    const cs = this.boot.clusterSize;
    const out = Buffer.alloc(length);
    for (const run of runs) {
      const from = Math.max(pos, run.vcn * cs);
      const to = Math.min(pos + length, (run.vcn + run.length) * cs);
      if (from >= to || run.lcn === null) continue;
      this.inVolume(run, what);
      const data = await readBytes(this.source, run.lcn * cs + (from - run.vcn * cs), to - from);
      if (!data) refuse('corrupt', `${what} lies past the end of its space`);
      data!.copy(out, from - pos);
    }
    const mapped = Math.max(0, ...runs.map((r) => r.vcn + r.length)) * cs;
    if (pos + length > mapped) refuse('corrupt', `${what} is not mapped to its end`);
    return out;
  }

  /** A run must lie within the volume's clusters. */
  inVolume(run: Run, what: string): void {
    if (run.lcn !== null && run.lcn + run.length > this.boot.clusters)
      refuse(
        'corrupt',
        `${what} points at clusters ${run.lcn}–${run.lcn + run.length - 1}, past the volume's ${this.boot.clusters}`,
      );
  }

  /** MFT record `n`, checked, its fixups undone, with its attributes. */
  async record(n: number): Promise<{ raw: Buffer; attributes: Attribute[] }> {
    const size = this.boot.recordSize;
    const raw =
      n === MFT
        ? await readBytes(this.source, this.boot.mftLcn * this.boot.clusterSize, size)
        : await this.readRuns(this.mftRuns, n * size, size, `MFT record ${n}`);
    if (!raw) return refuse('corrupt', 'the MFT lies past the end of its space');
    const fixed = undoFixups(raw, 'FILE');
    if (typeof fixed === 'string') return refuse('corrupt', `MFT record ${n}: ${fixed}`);
    if ((fixed.readUInt16LE(0x16) & 1) === 0) refuse('corrupt', `MFT record ${n} is not in use`);
    const attributes = attributesOf(fixed);
    if (typeof attributes === 'string') return refuse('corrupt', `MFT record ${n}: ${attributes}`);
    return { raw: fixed, attributes };
  }

  /** The whole value of attribute `type`/`name` of a record, resident or not. */
  async value(attributes: Attribute[], type: number, name: string, what: string): Promise<Buffer> {
    const a = attributes.find((x) => x.type === type && x.name === name);
    if (!a) return refuse('corrupt', `${what} is missing`);
    return a.resident ? a.value! : this.readRuns(a.runs, 0, a.dataSize, what);
  }

  /** The MFT's own runs: record 0's $DATA, and its extents in other records (an attribute list). */
  async loadMft(): Promise<void> {
    const { attributes } = await this.record(MFT);
    const data = attributes.filter((a) => a.type === ATTR.data && a.name === '' && !a.resident);
    if (data.length === 0) refuse('corrupt', "the MFT's $DATA is missing");
    this.mftRuns = data.flatMap((a) => a.runs);
    if (attributes.some((a) => a.type === ATTR.attributeList)) {
      const list = await this.value(attributes, ATTR.attributeList, '', "the MFT's attribute list");
      for (let at = 0; at + 26 <= list.length;) {
        const length = list.readUInt16LE(at + 4);
        if (length < 26) refuse('corrupt', "the MFT's attribute list is malformed");
        const ref = recordNumber(list, at + 16);
        if (list.readUInt32LE(at) === ATTR.data && list[at + 6] === 0 && ref !== MFT) {
          const extent = await this.record(ref);
          for (const a of extent.attributes)
            if (a.type === ATTR.data && a.name === '' && !a.resident) this.mftRuns.push(...a.runs);
        }
        at += length;
      }
    }
    this.mftRuns.sort((a, b) => a.vcn - b.vcn);
    for (const run of this.mftRuns) this.inVolume(run, 'the MFT');
  }
}

/** Why the volume can't be copied as it is: marked dirty, or a version we don't know. */
async function volumeProblem(v: Volume): Promise<string | null> {
  const { attributes } = await v.record(VOLUME);
  const info = await v.value(attributes, ATTR.volumeInformation, '', '$Volume’s information');
  if (info.length < 12) return refuse('corrupt', '$Volume’s information is cut short');
  const version = `${info[8]}.${info[9]}`;
  if (!['1.2', '3.0', '3.1'].includes(version))
    return refuse('unsupported', `NTFS version ${version}`);
  if (info.readUInt16LE(10) & VOLUME_IS_DIRTY)
    return 'the volume is marked dirty: Windows was not shut down cleanly, or chkdsk is due (run chkdsk /f in Windows)';
  return null;
}

/** hiberfil.sys in the root directory: the MFT record it names, or null. */
async function findHiberfile(v: Volume): Promise<number | null> {
  const { attributes } = await v.record(ROOT);
  const root = await v.value(attributes, ATTR.indexRoot, '$I30', 'the root directory’s index');
  const nodes: Buffer[] = [root.subarray(16)];
  const allocation = attributes.find((a) => a.type === ATTR.indexAllocation && a.name === '$I30');
  if (allocation && !allocation.resident) {
    const blockSize = root.readUInt32LE(8);
    if (blockSize < 512 || blockSize % 512 !== 0)
      refuse('corrupt', `root directory index blocks of ${blockSize} bytes`);
    const all = await v.value(attributes, ATTR.indexAllocation, '$I30', 'the root directory');
    for (let at = 0; at + blockSize <= all.length; at += blockSize) {
      const block = undoFixups(all.subarray(at, at + blockSize), 'INDX');
      if (typeof block !== 'string') nodes.push(block.subarray(0x18)); // unused blocks aren't INDX
    }
  }
  for (const node of nodes) {
    const entries = indexEntries(node);
    if (typeof entries === 'string') return refuse('corrupt', `the root directory: ${entries}`);
    for (const e of entries) {
      const name = fileNameOf(e.key);
      if (name?.parent === ROOT && name.name.toLowerCase() === 'hiberfil.sys') return e.record;
    }
  }
  return null;
}

/** Why Windows' hibernation file says the volume is in use, or null (ntfs-3g's test). */
async function hibernationProblem(v: Volume): Promise<string | null> {
  const n = await findHiberfile(v);
  if (n === null) return null;
  const { attributes } = await v.record(n);
  const named = attributes.some(
    (a) => a.type === ATTR.fileName && fileNameOf(a.value!)?.name.toLowerCase() === 'hiberfil.sys',
  );
  if (!named) return null; // a stale index entry: the record now holds another file
  const data = attributes.find((a) => a.type === ATTR.data && a.name === '');
  if (!data || data.dataSize < HIBERFILE_HEADER)
    return 'Windows hibernated onto it (hiberfil.sys is shorter than its header)';
  const head = data.resident
    ? data.value!
    : await v.readRuns(data.runs, 0, HIBERFILE_HEADER, 'hiberfil.sys');
  const magic = head.toString('latin1', 0, 4);
  if (magic === 'hibr' || magic === 'HIBR')
    return 'Windows is hibernated on it, or shut down with Fast Startup: start Windows and shut it down fully (shift + Shut down) first';
  return null;
}

/** What the $Bitmap of an NTFS volume says is used; null when the source holds no NTFS. */
export async function ntfsUsedSpace(source: Device): Promise<UsedSpace | null> {
  if (source.size < 8192) return null;
  const head = await readBytes(source, 0, 512);
  const boot = head && parseNtfsBoot(head);
  if (!boot) return null;
  const cs = boot.clusterSize;
  const fsSize = boot.totalSectors * boot.bytesPerSector;
  mustFit('ntfs', fsSize, source.size);

  const v = new Volume(source, boot);
  await v.loadMft();
  const unclean = (await volumeProblem(v)) ?? (await hibernationProblem(v));
  if (unclean) refuse('unclean', unclean);

  const { attributes } = await v.record(BITMAP);
  const bitmap = attributes.find((a) => a.type === ATTR.data && a.name === '' && !a.resident);
  if (!bitmap) return refuse('corrupt', '$Bitmap has no clusters of its own');
  if (bitmap.dataSize * 8 < boot.clusters)
    refuse('corrupt', `$Bitmap maps ${bitmap.dataSize * 8} clusters of ${boot.clusters}`);
  if (bitmap.runs.some((r) => r.lcn === null)) refuse('corrupt', '$Bitmap has a hole');
  const used = new RangeList();
  const bitmapBytes = Math.ceil(boot.clusters / 8);
  for (let at = 0; at < bitmapBytes; at += READ_CHUNK) {
    const chunk = await v.readRuns(
      bitmap.runs,
      at,
      Math.min(READ_CHUNK, bitmapBytes - at),
      '$Bitmap',
    );
    const base = at * 8;
    setBitRuns(chunk, Math.min(chunk.length * 8, boot.clusters - base), (first, count) =>
      used.add((base + first) * cs, count * cs),
    );
  }
  const ranges = used.result(source.size);
  // The bitmap must call its own clusters, the MFT's and the boot sector's used.
  for (const run of [...bitmap.runs, v.mftRuns[0], { vcn: 0, lcn: 0, length: 1 }]) {
    if (!covers(ranges, run.lcn! * cs, run.length * cs))
      refuse(
        'corrupt',
        `$Bitmap calls clusters ${run.lcn}+${run.length} free, which NTFS itself uses`,
      );
  }
  // The backup boot sector and anything else past the volume's clusters: copied.
  used.add(boot.clusters * cs, source.size - boot.clusters * cs);
  return { fs: 'ntfs', blockSize: cs, size: source.size, fsSize, used: used.result(source.size) };
}
