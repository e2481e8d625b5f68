// What diskutil says, as text in and plain data out (tests feed it fixtures; darwin.ts
// runs the commands): `diskutil list -plist` for every disk, partition, APFS container
// (with its physical stores), volume and mounted snapshot; `diskutil info -plist diskN`
// for what a whole disk is (internal or not, removable, bus, block size, read-only);
// `diskutil info -plist /` for the volume the running system is on. One
// SystemSnapshot (topology.ts) comes out, so the drive list, the system-drive rule and
// "mounted" work as they do on Linux.

import * as path from 'node:path';
import { bool, dicts, num, parsePlist, type PlistDict, str, strings } from './plist';
import { addNode, type BlockNode, childOf, type MountUse, type SystemSnapshot } from './topology';

function dictOf(xml: string): PlistDict {
  const value = parsePlist(xml);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error('diskutil: a <dict> was expected');
  }
  return value;
}

/** `diskutil list -plist`: its whole disks, in its order. */
export function wholeDisks(listXml: string): string[] {
  return strings(dictOf(listXml), 'WholeDisks');
}

/** BusProtocol as the Linux side names buses (an SD card reader is "mmc" there). */
function busOf(protocol: string | undefined): string | null {
  if (!protocol) return null;
  const known: Record<string, string> = {
    USB: 'usb',
    'Secure Digital': 'mmc',
    'PCI-Express': 'pcie',
    SATA: 'sata',
    NVMe: 'nvme',
    Thunderbolt: 'thunderbolt',
    'Apple Fabric': 'fabric',
    'Disk Image': 'image',
  };
  return known[protocol] ?? protocol.toLowerCase();
}

/** A whole disk as `diskutil info -plist` describes it; the list entry fills what info lacks. */
function wholeDiskNode(entry: PlistDict, info: PlistDict | undefined): BlockNode {
  const name = str(entry, 'DeviceIdentifier') ?? '';
  const stores = dicts(entry, 'APFSPhysicalStores')
    .map((s) => str(s, 'DeviceIdentifier'))
    .filter((s): s is string => s !== undefined);
  const container = stores.length > 0 || str(entry, 'Content') === 'Apple_APFS_Container';
  const removable =
    bool(info, 'RemovableMediaOrExternalDevice') ??
    (bool(info, 'Removable') || bool(info, 'RemovableMedia') || bool(info, 'Internal') === false);
  const model = str(info, 'MediaName') || str(info, 'IORegistryEntryName') || null;
  return {
    name,
    path: `/dev/${name}`,
    aliases: [`/dev/${name}`, `/dev/r${name}`],
    devno: null,
    type: container ? 'apfs-container' : 'disk',
    parents: stores,
    size: num(info, 'TotalSize') ?? num(info, 'Size') ?? num(entry, 'Size') ?? 0,
    logicalBlockSize: num(info, 'DeviceBlockSize') ?? 512,
    readOnly: bool(info, 'WritableMedia') === false || bool(info, 'ReadOnlyMedia') === true,
    removable: removable === true,
    bus: busOf(str(info, 'BusProtocol')),
    vendor: null,
    model: model?.trim() || null,
    // diskutil does not say, nor does direct-io's getBlockDevice on macOS.
    serial: null,
    backingFile: null,
  };
}

/** A partition, APFS volume or snapshot: sized by its list entry, the rest from its disk. */
function childNode(entry: PlistDict, name: string, type: string, parent: BlockNode): BlockNode {
  const aliases = [`/dev/${name}`, `/dev/r${name}`];
  return childOf(parent, { name, path: aliases[0], aliases, type, size: num(entry, 'Size') ?? 0 });
}

function use(name: string, mountpoint: string | undefined, fstype: string): MountUse[] {
  if (!mountpoint) return [];
  // No devno from diskutil: the device path names the node (topology.ts useIsOn).
  return [{ devno: null, source: `/dev/${name}`, mountpoint, fstype }];
}

/**
 * The picture from `diskutil list -plist`, `diskutil info -plist` of each whole disk
 * (by name) and `diskutil info -plist /` (null: not known).
 */
export function darwinSnapshot(
  listXml: string,
  infoXml: Record<string, string>,
  rootXml: string | null,
): SystemSnapshot {
  const topology = { nodes: new Map<string, BlockNode>() };
  const uses: MountUse[] = [];
  for (const entry of dicts(dictOf(listXml), 'AllDisksAndPartitions')) {
    const name = str(entry, 'DeviceIdentifier');
    if (!name) continue;
    const info = infoXml[name] ? dictOf(infoXml[name]) : undefined;
    const disk = wholeDiskNode(entry, info);
    addNode(topology, disk);
    uses.push(...use(name, str(entry, 'MountPoint'), str(entry, 'Content') ?? ''));
    for (const part of dicts(entry, 'Partitions')) {
      const id = str(part, 'DeviceIdentifier');
      if (!id) continue;
      addNode(topology, childNode(part, id, 'part', disk));
      uses.push(...use(id, str(part, 'MountPoint'), str(part, 'Content') ?? ''));
    }
    for (const volume of dicts(entry, 'APFSVolumes')) {
      const id = str(volume, 'DeviceIdentifier');
      if (!id) continue;
      const node = childNode(volume, id, 'apfs-volume', disk);
      addNode(topology, node);
      uses.push(...use(id, str(volume, 'MountPoint'), 'apfs'));
      // Since Big Sur the system volume is mounted at / as a sealed snapshot of itself.
      for (const snap of dicts(volume, 'MountedSnapshots')) {
        const bsd = str(snap, 'SnapshotBSD');
        if (bsd) addNode(topology, childNode(snap, bsd, 'apfs-snapshot', node));
        uses.push(...use(bsd ?? id, str(snap, 'SnapshotMountPoint'), 'apfs'));
      }
    }
  }
  return { topology, uses, systemNodes: rootNodes(rootXml) };
}

/** The volume at / and, should the list lack it, the physical stores beneath it. */
function rootNodes(rootXml: string | null): string[] {
  if (!rootXml) return [];
  const root = dictOf(rootXml);
  const nodes = [str(root, 'DeviceIdentifier'), str(root, 'ParentWholeDisk')];
  for (const store of dicts(root, 'APFSPhysicalStores'))
    nodes.push(str(store, 'APFSPhysicalStore'));
  return nodes.filter((n): n is string => n !== undefined);
}

/** The BSD name (disk4, disk4s1) of /dev/disk4, /dev/rdisk4s1…; null for anything else. */
export function bsdName(p: string): string | null {
  return /^\/dev\/r?(disk\d+(?:s\d+)*)$/.exec(path.posix.normalize(p))?.[1] ?? null;
}

/**
 * Who refused an unmount, in diskutil's words: "Unmount was dissented by PID 47781
 * (/usr/bin/tail)". The "Dissenter parent PPID" line after it names only who started
 * that process, so it is not taken.
 */
export function dissenter(output: string): string | null {
  const m = /(?:dissented by|dissenter) PID (\d+)(?: \(([^)\n]+)\))?/i.exec(output);
  if (!m) return null;
  return m[2] ? `${path.posix.basename(m[2])} (PID ${m[1]}, ${m[2]})` : `process ${m[1]}`;
}

/** macOS's dev_t: 8 bits of major, 24 of minor (sys/types.h major()/minor()). */
export function darwinDevno(dev: bigint): string {
  return `${(dev >> 24n) & 0xffn}:${dev & 0xffffffn}`;
}
