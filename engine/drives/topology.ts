// The picture of the block layer, and what it says about one device.
//
// A BlockTopology holds every block device by kernel name with the devices it sits on
// (a partition on its disk, a device-mapper device on its slaves). "System" and
// "mounted" walk that picture, so an LVM volume on a LUKS partition still marks its
// disk. Everything here works on text or plain objects (lsblk and losetup JSON,
// /proc/self/mountinfo, /proc/swaps), so tests feed it captured outputs; linux.ts
// reads the live system into the same picture, and darwin-diskutil.ts and
// win32-storage.ts turn diskutil's and PowerShell's answers into it.

import * as path from 'node:path';

export interface BlockNode {
  /** Kernel name: sda1, nvme0n1, dm-0, loop3. */
  name: string;
  /** The /dev path people use (/dev/mapper/x for device-mapper). */
  path: string;
  /** Every /dev path naming it, `path` included. */
  aliases: string[];
  devno: string | null;
  /** disk, part, loop, crypt, lvm, dm, raid, rom */
  type: string;
  /** Kernel names of the devices it sits on. */
  parents: string[];
  size: number;
  logicalBlockSize: number;
  readOnly: boolean;
  removable: boolean;
  bus: string | null;
  vendor: string | null;
  model: string | null;
  serial: string | null;
  backingFile: string | null;
  /** What the user must hear before it is written (Windows BitLocker, dynamic disks). */
  notes?: DriveNote[];
}

/**
 * bitlocker: a BitLocker volume (its contents are lost for good; a copy of it holds
 * the encrypted bytes); bitlocker-locked: one not unlocked; dynamic: a Windows dynamic
 * disk, whose volumes may span other disks.
 */
export type DriveNote = 'bitlocker' | 'bitlocker-locked' | 'dynamic';

export interface BlockTopology {
  nodes: Map<string, BlockNode>;
}

/** A filesystem mounted from, or a swap area on, a device. */
export interface MountUse {
  /** "major:minor" as mountinfo gives it (major 0 for btrfs and other anonymous devices). */
  devno: string | null;
  source: string;
  mountpoint: string;
  fstype: string;
}

export interface SystemSnapshot {
  topology: BlockTopology;
  uses: MountUse[];
  /**
   * Nodes the system itself says hold the running system, beyond what is mounted at
   * SYSTEM_MOUNTS (Windows: the disks Get-Disk calls boot or system).
   */
  systemNodes?: string[];
}

/** The mounts that make a disk "the system": the running OS and what boots it. */
export const SYSTEM_MOUNTS = new Set(['/', '/boot', '/boot/efi', '/efi']);
/** How a swap area shows among mountpoints (as lsblk shows it). */
export const SWAP = '[SWAP]';

function isSet(value: unknown): boolean {
  return value === true || value === 1 || value === '1';
}

export function text(value: unknown): string | null {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : null;
}

export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

export function unique(values: string[]): string[] {
  return [...new Set(values)];
}

/** mountinfo and /proc/swaps write space, tab, newline and backslash as octal escapes. */
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(parseInt(octal, 8)),
  );
}

/** /proc/self/mountinfo (proc(5)): `id parent maj:min root mountpoint opts [optional...] - fstype source superopts`. */
export function parseMountinfo(content: string): MountUse[] {
  const uses: MountUse[] = [];
  for (const line of content.split('\n')) {
    const fields = line.trim().split(' ');
    const dash = fields.indexOf('-', 6);
    if (fields.length < 7 || dash < 0 || dash + 2 >= fields.length) continue;
    uses.push({
      devno: fields[2],
      mountpoint: unescapeOctal(fields[4]),
      fstype: fields[dash + 1],
      source: unescapeOctal(fields[dash + 2]),
    });
  }
  return uses;
}

/** /proc/swaps: a header, then `filename type size used priority`. */
export function parseSwaps(content: string): MountUse[] {
  return content
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields.length >= 2 && fields[0] !== '')
    .map((fields) => ({
      devno: null,
      source: unescapeOctal(fields[0]),
      mountpoint: SWAP,
      fstype: 'swap',
    }));
}

/** The bus from lsblk's SUBSYSTEMS ("block:scsi:usb:pci"). */
export function busFromSubsystems(subsystems: string | null | undefined): string | null {
  const parts = (subsystems ?? '').split(':');
  for (const bus of ['usb', 'nvme', 'mmc', 'virtio', 'scsi']) if (parts.includes(bus)) return bus;
  return null;
}

/**
 * A node on `parent` (a partition, a volume): its disk's facts — block size, read-only,
 * removable, bus, serial — under its own name, path and size; notes are its own.
 */
export function childOf(
  parent: BlockNode,
  own: Pick<BlockNode, 'name' | 'path' | 'aliases' | 'type' | 'size'>,
): BlockNode {
  const node: BlockNode = { ...parent, ...own, parents: [parent.name], model: null };
  delete node.notes;
  return node;
}

/** Adds a node, or merges the parents of one seen before. */
export function addNode(topology: BlockTopology, node: BlockNode): void {
  const known = topology.nodes.get(node.name);
  // lsblk repeats a device that sits on several others under each of them.
  if (known) known.parents = unique([...known.parents, ...node.parents]);
  else topology.nodes.set(node.name, node);
}

interface LsblkDevice {
  name: string;
  kname?: string;
  path?: string;
  'maj:min'?: string;
  size?: number | string | null;
  'log-sec'?: number | string | null;
  rm?: boolean | string | number;
  hotplug?: boolean | string | number;
  ro?: boolean | string | number;
  type?: string;
  tran?: string | null;
  subsystems?: string | null;
  vendor?: string | null;
  model?: string | null;
  serial?: string | null;
  wwn?: string | null;
  children?: LsblkDevice[];
}

/** `lsblk -J -b -O` (with or without --paths; old versions give strings for numbers and flags). */
export function parseLsblk(json: string | { blockdevices: LsblkDevice[] }): BlockTopology {
  const data =
    typeof json === 'string' ? (JSON.parse(json) as { blockdevices: LsblkDevice[] }) : json;
  const topology: BlockTopology = { nodes: new Map() };
  const visit = (device: LsblkDevice, parent: BlockNode | null): void => {
    const name = path.basename(device.kname ?? device.name);
    const devPath =
      device.path ?? (device.name.startsWith('/') ? device.name : `/dev/${device.name}`);
    const type = device.type ?? 'disk';
    const aliases = [devPath, `/dev/${name}`];
    if (device.name.startsWith('/')) aliases.push(device.name);
    if (['crypt', 'lvm', 'dm', 'mpath'].includes(type))
      aliases.push(`/dev/mapper/${path.basename(device.name)}`);
    const tran = text(device.tran);
    const node: BlockNode = {
      name,
      path: devPath,
      aliases: unique(aliases),
      devno: device['maj:min'] ?? null,
      type,
      parents: parent ? [parent.name] : [],
      size: Number(device.size) || 0,
      logicalBlockSize: Number(device['log-sec']) || 512,
      readOnly: isSet(device.ro),
      removable: isSet(device.rm) || isSet(device.hotplug),
      bus: type === 'loop' ? 'loop' : (tran?.toLowerCase() ?? busFromSubsystems(device.subsystems)),
      vendor: text(device.vendor),
      model: text(device.model),
      serial: text(device.serial) ?? text(device.wwn),
      backingFile: null,
    };
    addNode(topology, node);
    for (const child of device.children ?? []) visit(child, node);
  };
  for (const device of data.blockdevices ?? []) visit(device, null);
  return topology;
}

/** `losetup --list --json`: loop device path → backing file. */
export function parseLosetup(json: string): Map<string, string> {
  const backing = new Map<string, string>();
  if (json.trim() === '') return backing; // losetup prints nothing when no loop device is set up
  const data = JSON.parse(json) as {
    loopdevices?: Array<{ name: string; 'back-file'?: string | null }>;
  };
  for (const loop of data.loopdevices ?? []) {
    const file = text(loop['back-file']);
    if (file) backing.set(loop.name, file);
  }
  return backing;
}

/** lsblk does not know backing files: they come from losetup (or from sysfs, live). */
export function withBackingFiles(
  topology: BlockTopology,
  backing: Map<string, string>,
): BlockTopology {
  for (const [devPath, file] of backing) {
    const node = findNode(topology, devPath);
    if (node) node.backingFile = file;
  }
  return topology;
}

export function findNode(topology: BlockTopology, pathOrName: string): BlockNode | undefined {
  const byName = topology.nodes.get(path.basename(pathOrName));
  if (byName && (!pathOrName.includes('/') || byName.aliases.includes(pathOrName))) return byName;
  for (const node of topology.nodes.values()) if (node.aliases.includes(pathOrName)) return node;
  return byName;
}

export function nodeByDevno(topology: BlockTopology, devno: string): BlockNode | undefined {
  for (const node of topology.nodes.values()) if (node.devno === devno) return node;
  return undefined;
}

export function childrenOf(topology: BlockTopology, name: string): BlockNode[] {
  return [...topology.nodes.values()].filter((node) => node.parents.includes(name));
}

/** The node and everything stacked on it (partitions, device-mapper volumes on those...). */
export function descendants(topology: BlockTopology, name: string): BlockNode[] {
  const seen = new Map<string, BlockNode>();
  const walk = (n: string): void => {
    const node = topology.nodes.get(n);
    if (!node || seen.has(n)) return;
    seen.set(n, node);
    for (const child of childrenOf(topology, n)) walk(child.name);
  };
  walk(name);
  return [...seen.values()];
}

/** The node and everything it sits on, down to whole disks (loop devices end here). */
function ancestors(topology: BlockTopology, name: string): BlockNode[] {
  const seen = new Map<string, BlockNode>();
  const walk = (n: string): void => {
    const node = topology.nodes.get(n);
    if (!node || seen.has(n)) return;
    seen.set(n, node);
    for (const parent of node.parents) walk(parent);
  };
  walk(name);
  return [...seen.values()];
}

export function isAnonymous(devno: string | null): boolean {
  return devno === null || devno.startsWith('0:');
}

/** Whether a mount or swap area is on `node` itself (not on something stacked on it). */
function useIsOn(use: MountUse, node: BlockNode): boolean {
  // btrfs and other filesystems get an anonymous 0:N: the source names the device then.
  if (!isAnonymous(use.devno)) return use.devno === node.devno;
  return node.aliases.includes(use.source);
}

/** Mountpoints of a node and of everything stacked on it. */
export function mountpointsOf(snapshot: SystemSnapshot, name: string): string[] {
  const nodes = descendants(snapshot.topology, name);
  const points = snapshot.uses
    .filter((use) => nodes.some((node) => useIsOn(use, node)))
    .map((use) => use.mountpoint);
  return unique(points).sort();
}

/** Kernel names of the whole disks under the running OS and its boot partition. */
export function systemDisks(snapshot: SystemSnapshot): Set<string> {
  const disks = new Set<string>();
  const addBelow = (name: string): void => {
    for (const below of ancestors(snapshot.topology, name)) {
      if (below.parents.length === 0) disks.add(below.name);
    }
  };
  for (const use of snapshot.uses) {
    if (!SYSTEM_MOUNTS.has(use.mountpoint)) continue;
    for (const node of snapshot.topology.nodes.values())
      if (useIsOn(use, node)) addBelow(node.name);
  }
  for (const name of snapshot.systemNodes ?? []) addBelow(name);
  return disks;
}

/** The notes of a node and of everything on it, each once. */
export function notesOf(snapshot: SystemSnapshot, name: string): DriveNote[] {
  return [...new Set(descendants(snapshot.topology, name).flatMap((n) => n.notes ?? []))];
}

/** On a system disk: the disk itself, any partition of it, anything stacked on it. */
export function isSystemNode(
  snapshot: SystemSnapshot,
  name: string,
  disks = systemDisks(snapshot),
): boolean {
  return ancestors(snapshot.topology, name).some((node) => disks.has(node.name));
}

/** The loop device a node is (or whose partition it is), with its backing file. */
export function loopBacking(topology: BlockTopology, node: BlockNode): string | null {
  if (node.backingFile) return node.backingFile;
  if (node.type !== 'part') return null;
  const disk = topology.nodes.get(node.parents[0] ?? '');
  return disk?.type === 'loop' ? disk.backingFile : null;
}

/** /dev paths of what sits on a node or on its partitions (device-mapper, md), not the partitions. */
export function holdersOf(topology: BlockTopology, node: BlockNode): string[] {
  const partitions = childrenOf(topology, node.name).filter((child) => child.type === 'part');
  const holders = [node, ...partitions].flatMap((n) =>
    childrenOf(topology, n.name)
      .filter((child) => child.type !== 'part')
      .map((child) => child.path),
  );
  return unique(holders).sort(naturalCompare);
}

/** What the copy and the safety rules need to know about one block device. */
export interface BlockInfo {
  path: string;
  devno: string;
  wholeDisk: string;
  partitions: string[];
  mountpoints: string[];
  /** /dev paths of what sits on the device or on its partitions (device-mapper, md). */
  holders: string[];
  system: boolean;
  readOnly: boolean;
  logicalBlockSize: number;
  size: number;
  serial: string | null;
  backingFile: string | null;
}

/** BlockInfo of a node, from a snapshot (`realPath` is the path it was asked by). */
export function blockInfoOf(
  snapshot: SystemSnapshot,
  node: BlockNode,
  realPath = node.path,
): BlockInfo {
  const { topology } = snapshot;
  const parent = node.type === 'part' ? topology.nodes.get(node.parents[0] ?? '') : undefined;
  const whole = parent ?? node;
  const partitions = childrenOf(topology, node.name).filter((child) => child.type === 'part');
  return {
    path: realPath,
    devno: node.devno ?? '',
    wholeDisk: whole.path,
    partitions: partitions.map((p) => p.path).sort(naturalCompare),
    mountpoints: mountpointsOf(snapshot, node.name),
    holders: holdersOf(topology, node),
    system: isSystemNode(snapshot, node.name),
    readOnly: node.readOnly,
    logicalBlockSize: node.logicalBlockSize,
    size: node.size,
    serial: node.type === 'loop' || whole.type === 'loop' ? null : (node.serial ?? whole.serial),
    backingFile: node.backingFile,
  };
}
