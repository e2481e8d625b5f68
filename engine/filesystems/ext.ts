// ext2/3/4: which bytes the block bitmaps say are in use.
//
// Layout (all little-endian): the superblock at byte 1024; block groups of
// s_blocks_per_group blocks from s_first_data_block; the group descriptor table
// after the superblock's block (or per meta group with meta_bg); one block bitmap
// per group, anywhere in the filesystem (flex_bg). A bitmap bit covers a block, or a
// cluster with bigalloc. Groups flagged BLOCK_UNINIT have no bitmap on disk: their
// used blocks are their own superblock backup and descriptor blocks, computed here.

import type { Device } from '../io/device';
import {
  crc16,
  crc32c,
  FilesystemRefused,
  RangeList,
  READ_CHUNK,
  mustFit,
  readBytes,
  setBitRuns,
  type FsKind,
  type UsedSpace,
} from './common';

const SUPERBLOCK_OFFSET = 1024;
const EXT_MAGIC = 0xef53;

// s_state
const STATE_VALID = 0x1;
const STATE_ERROR = 0x2;
const STATE_ORPHAN = 0x4;

// Features we know, by word. Anything else is refused: its layout may differ.
const COMPAT = {
  dir_prealloc: 0x1,
  imagic_inodes: 0x2,
  has_journal: 0x4,
  ext_attr: 0x8,
  resize_inode: 0x10,
  dir_index: 0x20,
  lazy_bg: 0x40,
  exclude_inode: 0x80,
  exclude_bitmap: 0x100,
  sparse_super2: 0x200,
  fast_commit: 0x400,
  stable_inodes: 0x800,
  orphan_file: 0x1000,
};
const INCOMPAT = {
  compression: 0x1,
  filetype: 0x2,
  needs_recovery: 0x4,
  journal_dev: 0x8,
  meta_bg: 0x10,
  extent: 0x40,
  '64bit': 0x80,
  mmp: 0x100,
  flex_bg: 0x200,
  ea_inode: 0x400,
  dirdata: 0x1000,
  metadata_csum_seed: 0x2000,
  large_dir: 0x4000,
  inline_data: 0x8000,
  encrypt: 0x10000,
  casefold: 0x20000,
};
const RO_COMPAT = {
  sparse_super: 0x1,
  large_file: 0x2,
  btree_dir: 0x4,
  huge_file: 0x8,
  gdt_csum: 0x10,
  dir_nlink: 0x20,
  extra_isize: 0x40,
  has_snapshot: 0x80,
  quota: 0x100,
  bigalloc: 0x200,
  metadata_csum: 0x400,
  replica: 0x800,
  read_only: 0x1000,
  project: 0x2000,
  shared_blocks: 0x4000,
  verity: 0x8000,
  orphan_present: 0x10000,
};
/** Features whose blocks the bitmaps do not describe the usual way. */
const INCOMPAT_REFUSED = INCOMPAT.compression | INCOMPAT.journal_dev | INCOMPAT.dirdata;
const RO_COMPAT_REFUSED = RO_COMPAT.has_snapshot | RO_COMPAT.replica;

// bg_flags
const BG_BLOCK_UNINIT = 0x2;

const allBits = (o: Record<string, number>): number => Object.values(o).reduce((a, b) => a | b, 0);
const names = (o: Record<string, number>, bits: number): string[] =>
  Object.entries(o)
    .filter(([, b]) => bits & b)
    .map(([n]) => n);
const unknownBits = (o: Record<string, number>, bits: number): string[] => {
  const rest = bits & ~allBits(o);
  return rest ? [`unknown 0x${(rest >>> 0).toString(16)}`] : [];
};

export interface ExtSuperblock {
  fs: 'ext2' | 'ext3' | 'ext4';
  blockSize: number;
  clusterSize: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  clustersPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  groupCount: number;
  descSize: number;
  reservedGdtBlocks: number;
  firstMetaBg: number;
  backupBgs: [number, number];
  state: number;
  lastOrphan: number;
  compat: number;
  incompat: number;
  roCompat: number;
  uuid: Buffer;
  csumSeed: number;
}

const has = (word: number, bit: number): boolean => (word & bit) !== 0;

/** Parses the superblock (the 1024 bytes at byte 1024); null without the ext magic. */
export function parseExtSuperblock(sb: Buffer): ExtSuperblock | null {
  if (sb.length < 1024 || sb.readUInt16LE(0x38) !== EXT_MAGIC) return null;
  const compat = sb.readUInt32LE(0x5c);
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  const fs: ExtSuperblock['fs'] =
    has(incompat, ~(INCOMPAT.filetype | INCOMPAT.needs_recovery | INCOMPAT.meta_bg)) ||
    has(roCompat, ~(RO_COMPAT.sparse_super | RO_COMPAT.large_file | RO_COMPAT.btree_dir))
      ? 'ext4'
      : has(compat, COMPAT.has_journal)
        ? 'ext3'
        : 'ext2';
  const corrupt = (why: string): never => {
    throw new FilesystemRefused(fs, 'corrupt', why);
  };

  const logBlock = sb.readUInt32LE(0x18);
  if (logBlock > 6) corrupt(`block size 2^${10 + logBlock} is out of range`);
  const blockSize = 1024 << logBlock;
  const bigalloc = has(roCompat, RO_COMPAT.bigalloc);
  const logCluster = bigalloc ? sb.readUInt32LE(0x1c) : logBlock;
  if (logCluster < logBlock || logCluster > 29) corrupt(`cluster size 2^${10 + logCluster}`);
  const clusterSize = 1024 * 2 ** logCluster;
  const is64 = has(incompat, INCOMPAT['64bit']);
  const blocksCount = sb.readUInt32LE(0x04) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const firstDataBlock = sb.readUInt32LE(0x14);
  const blocksPerGroup = sb.readUInt32LE(0x20);
  const clustersPerGroup = bigalloc ? sb.readUInt32LE(0x24) : blocksPerGroup;
  const ratio = clusterSize / blockSize;
  const revLevel = sb.readUInt32LE(0x4c);
  const inodeSize = revLevel === 0 ? 128 : sb.readUInt16LE(0x58);
  const descSize = is64 ? sb.readUInt16LE(0xfe) : 32;

  if (firstDataBlock > 1 || (firstDataBlock === 1 && blockSize !== 1024))
    corrupt(`first data block ${firstDataBlock} with ${blockSize}-byte blocks`);
  if (clustersPerGroup === 0 || clustersPerGroup > 8 * blockSize)
    corrupt(`${clustersPerGroup} clusters per group with ${blockSize}-byte blocks`);
  if (blocksPerGroup !== clustersPerGroup * ratio)
    corrupt(`${blocksPerGroup} blocks per group for ${clustersPerGroup} clusters`);
  if (blocksCount <= firstDataBlock || !Number.isSafeInteger(blocksCount * blockSize))
    corrupt(`block count ${blocksCount}`);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0)
    corrupt(`inode size ${inodeSize}`);
  if (descSize < 32 || descSize > blockSize || (descSize & (descSize - 1)) !== 0)
    corrupt(`group descriptor size ${descSize}`);
  if (is64 && descSize < 64) corrupt(`group descriptor size ${descSize} with the 64bit feature`);
  const inodesPerGroup = sb.readUInt32LE(0x28);
  if (inodesPerGroup === 0) corrupt('zero inodes per group');

  const uuid = Buffer.from(sb.subarray(0x68, 0x78));
  const csumSeed = has(incompat, INCOMPAT.metadata_csum_seed)
    ? sb.readUInt32LE(0x270)
    : crc32c(0xffffffff, uuid);
  return {
    fs,
    blockSize,
    clusterSize,
    blocksCount,
    firstDataBlock,
    blocksPerGroup,
    clustersPerGroup,
    inodesPerGroup,
    inodeSize,
    groupCount: Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup),
    descSize,
    reservedGdtBlocks: sb.readUInt16LE(0xce),
    firstMetaBg: sb.readUInt32LE(0x104),
    backupBgs: [sb.readUInt32LE(0x24c), sb.readUInt32LE(0x250)],
    state: sb.readUInt16LE(0x3a),
    lastOrphan: sb.readUInt32LE(0xe8),
    compat,
    incompat,
    roCompat,
    uuid,
    csumSeed,
  };
}

/** Why the filesystem is not cleanly unmounted, or null when it is. */
export function extUncleanReason(sb: ExtSuperblock): string | null {
  if (has(sb.state, STATE_ERROR)) return 'the filesystem has errors recorded (run e2fsck)';
  if (!has(sb.state, STATE_VALID))
    return 'the filesystem was not cleanly unmounted, or is mounted read-write (run e2fsck)';
  if (has(sb.incompat, INCOMPAT.needs_recovery))
    return 'the journal needs recovery (mount it once, or run e2fsck)';
  if (
    has(sb.state, STATE_ORPHAN) ||
    sb.lastOrphan !== 0 ||
    has(sb.roCompat, RO_COMPAT.orphan_present)
  )
    return 'orphan inodes are waiting to be released (run e2fsck)';
  return null;
}

/** Feature flags that keep us from trusting the bitmaps, or null. */
function unsupportedReason(sb: ExtSuperblock): string | null {
  const bad = [
    ...names(INCOMPAT, sb.incompat & INCOMPAT_REFUSED),
    ...names(RO_COMPAT, sb.roCompat & RO_COMPAT_REFUSED),
    ...unknownBits(INCOMPAT, sb.incompat),
    ...unknownBits(RO_COMPAT, sb.roCompat),
  ];
  if (has(sb.incompat, INCOMPAT.journal_dev))
    return 'this is an external journal device, not a filesystem';
  return bad.length ? `unsupported feature ${bad.join(', ')}` : null;
}

function isPowerOf(n: number, base: number): boolean {
  while (n > 1 && n % base === 0) n /= base;
  return n === 1;
}

function groupHasSuper(sb: ExtSuperblock, g: number): boolean {
  if (g === 0) return true;
  if (has(sb.compat, COMPAT.sparse_super2)) return g === sb.backupBgs[0] || g === sb.backupBgs[1];
  if (g === 1 || !has(sb.roCompat, RO_COMPAT.sparse_super)) return true;
  if (g % 2 === 0) return false;
  return isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
}

interface GroupDescriptors {
  blockBitmap: Float64Array;
  inodeBitmap: Float64Array;
  inodeTable: Float64Array;
  flags: Uint16Array;
  bitmapCsum: Uint32Array;
}

/** Where descriptor block `i` of the table lies (ext2fs_descriptor_block_loc2). */
function descriptorBlock(sb: ExtSuperblock, i: number): number {
  const sbBlock = sb.blockSize === 1024 ? 1 : 0;
  if (!has(sb.incompat, INCOMPAT.meta_bg) || i < sb.firstMetaBg) return sbBlock + 1 + i;
  const g = i * (sb.blockSize / sb.descSize);
  const first = sb.firstDataBlock + g * sb.blocksPerGroup;
  return first + (groupHasSuper(sb, g) ? 1 : 0);
}

const blockNumber = (d: Buffer, lo: number, hi: number, is64: boolean): number =>
  d.readUInt32LE(lo) + (is64 ? d.readUInt32LE(hi) * 2 ** 32 : 0);

async function readGroupDescriptors(source: Device, sb: ExtSuperblock): Promise<GroupDescriptors> {
  const corrupt = (why: string): never => {
    throw new FilesystemRefused(sb.fs, 'corrupt', why);
  };
  const n = sb.groupCount;
  const out: GroupDescriptors = {
    blockBitmap: new Float64Array(n),
    inodeBitmap: new Float64Array(n),
    inodeTable: new Float64Array(n),
    flags: new Uint16Array(n),
    bitmapCsum: new Uint32Array(n),
  };
  const perBlock = sb.blockSize / sb.descSize;
  const tableBlocks = Math.ceil(n / perBlock);
  const is64 = sb.descSize >= 64;
  const metadataCsum = has(sb.roCompat, RO_COMPAT.metadata_csum);
  const gdtCsum = has(sb.roCompat, RO_COMPAT.gdt_csum);
  const le = Buffer.alloc(4);
  const zero16 = Buffer.alloc(2);

  // Contiguous descriptor blocks are read together, at most 4 MiB at a time.
  const maxRun = Math.max(1, Math.floor(READ_CHUNK / sb.blockSize));
  for (let i = 0; i < tableBlocks;) {
    const start = descriptorBlock(sb, i);
    let count = 1;
    while (
      i + count < tableBlocks &&
      count < maxRun &&
      descriptorBlock(sb, i + count) === start + count
    )
      count++;
    if (start + count > sb.blocksCount)
      corrupt(`group descriptors past the end, at block ${start}`);
    const data = await readBytes(source, start * sb.blockSize, count * sb.blockSize);
    if (!data) return corrupt('the group descriptors lie past the end of the source');
    for (let g = i * perBlock; g < Math.min(n, (i + count) * perBlock); g++) {
      const d = data.subarray(
        (g - i * perBlock) * sb.descSize,
        (g - i * perBlock + 1) * sb.descSize,
      );
      if (metadataCsum || gdtCsum) {
        le.writeUInt32LE(g);
        let want: number;
        if (metadataCsum) {
          let c = crc32c(sb.csumSeed, le);
          c = crc32c(c, d.subarray(0, 0x1e));
          c = crc32c(c, zero16);
          if (sb.descSize > 0x20) c = crc32c(c, d.subarray(0x20));
          want = c & 0xffff;
        } else {
          let c = crc16(0xffff, sb.uuid);
          c = crc16(c, le);
          c = crc16(c, d.subarray(0, 0x1e));
          if (has(sb.incompat, INCOMPAT['64bit']) && sb.descSize > 0x20)
            c = crc16(c, d.subarray(0x20));
          want = c;
        }
        if (d.readUInt16LE(0x1e) !== want) corrupt(`group ${g}'s descriptor checksum is wrong`);
      }
      out.blockBitmap[g] = blockNumber(d, 0x00, 0x20, is64);
      out.inodeBitmap[g] = blockNumber(d, 0x04, 0x24, is64);
      out.inodeTable[g] = blockNumber(d, 0x08, 0x28, is64);
      out.flags[g] = d.readUInt16LE(0x12);
      out.bitmapCsum[g] = d.readUInt16LE(0x18) + (is64 ? d.readUInt16LE(0x38) * 0x10000 : 0);
    }
    i += count;
  }
  return out;
}

/** Blocks a group uses for the superblock and descriptor copies (ext2fs_super_and_bgd_loc2). */
function groupBaseMetadata(sb: ExtSuperblock, g: number): { start: number; count: number } {
  let groupBlock = sb.firstDataBlock + g * sb.blocksPerGroup;
  if (g === 0 && sb.blockSize === 1024 && sb.clusterSize > sb.blockSize) groupBlock = 1;
  const hasSuper = groupHasSuper(sb, g);
  const perBlock = sb.blockSize / sb.descSize;
  const metaBg = has(sb.incompat, INCOMPAT.meta_bg);
  const oldDescBlocks = metaBg
    ? sb.firstMetaBg
    : Math.ceil(sb.groupCount / perBlock) + sb.reservedGdtBlocks;
  let count = hasSuper ? 1 : 0;
  if (!metaBg || Math.floor(g / perBlock) < sb.firstMetaBg) {
    if (hasSuper) count += oldDescBlocks;
  } else {
    const at = g % perBlock;
    if (at === 0 || at === 1 || at === perBlock - 1) count += 1;
  }
  // The group's first block precedes the superblock of bigalloc 1K group 0.
  const first = sb.firstDataBlock + g * sb.blocksPerGroup;
  return { start: first, count: groupBlock - first + count };
}

/** What the bitmaps of an ext2/3/4 filesystem say is used; null without the ext magic. */
export async function extUsedSpace(source: Device): Promise<UsedSpace | null> {
  const raw = await readBytes(source, SUPERBLOCK_OFFSET, 1024);
  if (!raw) return null;
  const sb = parseExtSuperblock(raw);
  if (!sb) return null;
  const refuse = (kind: 'unclean' | 'unsupported' | 'corrupt', why: string): never => {
    throw new FilesystemRefused(sb.fs, kind, why);
  };

  if (has(sb.roCompat, RO_COMPAT.metadata_csum)) {
    const want = raw.readUInt32LE(0x3fc);
    if (crc32c(0xffffffff, raw.subarray(0, 0x3fc)) !== want)
      refuse('corrupt', 'the superblock checksum is wrong');
  }
  const unsupported = unsupportedReason(sb);
  if (unsupported) refuse('unsupported', unsupported);
  const unclean = extUncleanReason(sb);
  if (unclean) refuse('unclean', unclean);

  const bs = sb.blockSize;
  const fsSize = sb.blocksCount * bs;
  mustFit(sb.fs, fsSize, source.size);

  const gd = await readGroupDescriptors(source, sb);
  const used = new RangeList();
  // Allocation is by cluster (bigalloc): whole clusters, however few blocks are named.
  const cs = sb.clusterSize;
  const block = (first: number, count: number): void => {
    const start = Math.floor((first * bs) / cs) * cs;
    used.add(start, Math.ceil(((first + count) * bs) / cs) * cs - start);
  };
  const inBounds = (b: number, count: number, what: string): void => {
    if (b < sb.firstDataBlock || b + count > sb.blocksCount)
      refuse('corrupt', `${what} at block ${b} lies outside the filesystem`);
  };

  // Boot area and primary superblock, which precede the first group on 1K filesystems.
  used.add(0, Math.max(2048, (sb.firstDataBlock + 1) * bs));

  // Uninitialised groups are honoured only with group descriptor checksums (as the kernel does).
  const uninitValid = has(sb.roCompat, RO_COMPAT.metadata_csum | RO_COMPAT.gdt_csum);
  const itableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / bs);
  const toRead: number[] = [];
  for (let g = 0; g < sb.groupCount; g++) {
    // Every group's bitmaps and inode table are in use wherever they lie (flex_bg).
    inBounds(gd.blockBitmap[g], 1, `group ${g}'s block bitmap`);
    inBounds(gd.inodeBitmap[g], 1, `group ${g}'s inode bitmap`);
    inBounds(gd.inodeTable[g], itableBlocks, `group ${g}'s inode table`);
    block(gd.blockBitmap[g], 1);
    block(gd.inodeBitmap[g], 1);
    block(gd.inodeTable[g], itableBlocks);
    if (uninitValid && has(gd.flags[g], BG_BLOCK_UNINIT)) {
      const meta = groupBaseMetadata(sb, g);
      block(meta.start, meta.count);
    } else toRead.push(g);
  }

  // Bitmaps in block order; adjacent ones (flex_bg packs them) read together.
  toRead.sort((a, b) => gd.blockBitmap[a] - gd.blockBitmap[b]);
  const metadataCsum = has(sb.roCompat, RO_COMPAT.metadata_csum);
  const bitmapBytes = sb.clustersPerGroup / 8;
  const ratio = sb.clusterSize / bs;
  const maxRun = Math.max(1, Math.floor(READ_CHUNK / bs));
  for (let i = 0; i < toRead.length;) {
    const start = gd.blockBitmap[toRead[i]];
    let count = 1;
    while (
      i + count < toRead.length &&
      count < maxRun &&
      gd.blockBitmap[toRead[i + count]] === start + count
    )
      count++;
    const data = await readBytes(source, start * bs, count * bs);
    if (!data) return refuse('corrupt', `block bitmaps at block ${start} lie past the source`);
    for (let k = 0; k < count; k++) {
      const g = toRead[i + k];
      const bitmap = data.subarray(k * bs, (k + 1) * bs);
      if (metadataCsum) {
        let c = crc32c(sb.csumSeed, bitmap.subarray(0, bitmapBytes));
        if (sb.descSize < 64) c &= 0xffff;
        if (c !== gd.bitmapCsum[g])
          refuse('corrupt', `group ${g}'s block bitmap checksum is wrong`);
      }
      const groupFirst = sb.firstDataBlock + g * sb.blocksPerGroup;
      const bits = Math.min(sb.clustersPerGroup, Math.ceil((sb.blocksCount - groupFirst) / ratio));
      setBitRuns(bitmap, bits, (first, n) => block(groupFirst + first * ratio, n * ratio));
    }
    i += count;
  }

  // Past the filesystem's end: not ours to judge, so copied.
  used.add(fsSize, source.size - fsSize);
  return {
    fs: sb.fs,
    blockSize: sb.clusterSize,
    size: source.size,
    fsSize,
    used: used.result(source.size),
  };
}

/** The superblock's verdict on cleanliness; null without the ext magic. */
export async function extState(
  source: Device,
): Promise<{ fs: FsKind; clean: boolean; reason?: string } | null> {
  const raw = await readBytes(source, SUPERBLOCK_OFFSET, 1024);
  const sb = raw && parseExtSuperblock(raw);
  if (!sb) return null;
  const reason = extUncleanReason(sb);
  return reason ? { fs: sb.fs, clean: false, reason } : { fs: sb.fs, clean: true };
}
