// Drives: what can be cloned from and to, and whether writing one is safe.
//
// Two layers. The parsers and classifiers below take text or plain objects (lsblk and
// losetup JSON, drivelist's list, /proc/self/mountinfo, /proc/swaps), so tests feed them
// captured outputs. The live layer at the end only reads /sys, /proc and drivelist and
// hands what it read to them.
//
// Everything is worked out on one picture of the block layer, a BlockTopology: every
// block device by kernel name with the devices it sits on (a partition on its disk, a
// device-mapper device on its slaves). "System" and "mounted" walk that picture, so an
// LVM volume on a LUKS partition still marks its disk.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatBytes } from './size';

export interface Drive {
  path: string;
  name: string;
  size: number;
  logicalBlockSize: number;
  bus: string | null;
  removable: boolean;
  readOnly: boolean;
  /** Of the drive and everything on it (partitions, device-mapper volumes); swap is `[SWAP]`. */
  mountpoints: string[];
  /** Holds the running OS (the filesystem at /) or its boot partition (/boot, /boot/efi). */
  system: boolean;
  kind: 'block' | 'file';
  serial: string | null;
  backingFile: string | null;
}

export type Role = 'source' | 'target';
export type Verdict = { level: 'usable' | 'confirm' | 'refused'; reasons: string[] };

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

export interface VerdictOptions {
  sourcePath?: string;
  allowMounted?: boolean;
  allowSystem?: boolean;
  /** Bytes of the chosen source: a smaller target is refused. */
  sourceSize?: number;
}

// ---------------------------------------------------------------------------
// The picture of the block layer

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
}

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
}

/** The mounts that make a disk "the system": the running OS and what boots it. */
const SYSTEM_MOUNTS = new Set(['/', '/boot', '/boot/efi', '/efi']);
const SWAP = '[SWAP]';

function isSet(value: unknown): boolean {
  return value === true || value === 1 || value === '1';
}

function text(value: unknown): string | null {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : null;
}

function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

function unique(values: string[]): string[] {
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

/** The bus from where a block device sits in /sys/devices. */
export function busFromSysfsPath(devicePath: string): string | null {
  if (/\/usb\d*\//.test(devicePath)) return 'usb';
  if (devicePath.includes('/nvme')) return 'nvme';
  if (devicePath.includes('/mmc_host/') || /\/mmc\d+\//.test(devicePath)) return 'mmc';
  if (/\/virtio\d+\//.test(devicePath)) return 'virtio';
  if (/\/ata\d+\//.test(devicePath)) return 'sata';
  if (/\/host\d+\/target/.test(devicePath)) return 'scsi';
  if (/\/virtual\/block\/loop\d+/.test(devicePath)) return 'loop';
  return null;
}

function dmType(uuid: string | null): string {
  if (uuid?.startsWith('CRYPT-')) return 'crypt';
  if (uuid?.startsWith('LVM-')) return 'lvm';
  return 'dm';
}

function addNode(topology: BlockTopology, node: BlockNode): void {
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

function childrenOf(topology: BlockTopology, name: string): BlockNode[] {
  return [...topology.nodes.values()].filter((node) => node.parents.includes(name));
}

/** The node and everything stacked on it (partitions, device-mapper volumes on those...). */
function descendants(topology: BlockTopology, name: string): BlockNode[] {
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

function isAnonymous(devno: string | null): boolean {
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
  for (const use of snapshot.uses) {
    if (!SYSTEM_MOUNTS.has(use.mountpoint)) continue;
    for (const node of snapshot.topology.nodes.values()) {
      if (!useIsOn(use, node)) continue;
      for (const below of ancestors(snapshot.topology, node.name)) {
        if (below.parents.length === 0) disks.add(below.name);
      }
    }
  }
  return disks;
}

/** On a system disk: the disk itself, any partition of it, anything stacked on it. */
function isSystemNode(
  snapshot: SystemSnapshot,
  name: string,
  disks = systemDisks(snapshot),
): boolean {
  return ancestors(snapshot.topology, name).some((node) => disks.has(node.name));
}

/** The loop device a node is (or whose partition it is), with its backing file. */
function loopBacking(topology: BlockTopology, node: BlockNode): string | null {
  if (node.backingFile) return node.backingFile;
  if (node.type !== 'part') return null;
  const disk = topology.nodes.get(node.parents[0] ?? '');
  return disk?.type === 'loop' ? disk.backingFile : null;
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
  const holders = [node, ...partitions].flatMap((n) =>
    childrenOf(topology, n.name)
      .filter((child) => child.type !== 'part')
      .map((child) => child.path),
  );
  return {
    path: realPath,
    devno: node.devno ?? '',
    wholeDisk: whole.path,
    partitions: partitions.map((p) => p.path).sort(naturalCompare),
    mountpoints: mountpointsOf(snapshot, node.name),
    holders: unique(holders).sort(naturalCompare),
    system: isSystemNode(snapshot, node.name),
    readOnly: node.readOnly,
    logicalBlockSize: node.logicalBlockSize,
    size: node.size,
    serial: node.type === 'loop' || whole.type === 'loop' ? null : (node.serial ?? whole.serial),
    backingFile: node.backingFile,
  };
}

// ---------------------------------------------------------------------------
// Drives

/** The part of drivelist's Drive this module reads. */
export interface DrivelistEntry {
  device: string;
  raw?: string;
  description?: string;
  size: number | null;
  logicalBlockSize?: number;
  busType?: string;
  isRemovable: boolean;
  isReadOnly: boolean;
  isSystem?: boolean;
  mountpoints: Array<{ path: string }>;
}

function driveName(node: BlockNode): string {
  if (node.type === 'loop') return `Loop device (backing: ${node.backingFile ?? 'none'})`;
  // "ATA" and PCI vendor ids ("0x1af4") say nothing to a person.
  const vendor = node.vendor && !/^(ata|0x[0-9a-f]+)$/i.test(node.vendor) ? node.vendor : null;
  const model = node.model;
  if (model)
    return vendor && !model.toLowerCase().startsWith(vendor.toLowerCase())
      ? `${vendor} ${model}`
      : model;
  return node.bus ? `Disk (${node.bus})` : 'Disk';
}

function driveFromNode(snapshot: SystemSnapshot, node: BlockNode, disks: Set<string>): Drive {
  return {
    path: node.path,
    name: driveName(node),
    size: node.size,
    logicalBlockSize: node.logicalBlockSize,
    bus: node.bus,
    removable: node.removable,
    readOnly: node.readOnly,
    mountpoints: mountpointsOf(snapshot, node.name),
    system: isSystemNode(snapshot, node.name, disks),
    kind: 'block',
    serial: node.type === 'loop' ? null : node.serial,
    backingFile: node.type === 'loop' ? node.backingFile : null,
  };
}

/** What drivelist alone says, for a drive missing from the picture (or off Linux). */
export function driveFromDrivelist(entry: DrivelistEntry, systemMounts = SYSTEM_MOUNTS): Drive {
  const mountpoints = unique(entry.mountpoints.map((m) => m.path)).sort(naturalCompare);
  const bus = entry.busType && entry.busType !== 'UNKNOWN' ? entry.busType.toLowerCase() : null;
  return {
    path: entry.device,
    name: entry.description || entry.device,
    size: entry.size ?? 0,
    logicalBlockSize: entry.logicalBlockSize || 512,
    bus,
    removable: entry.isRemovable,
    readOnly: entry.isReadOnly,
    mountpoints,
    system: mountpoints.some((m) => systemMounts.has(m)),
    kind: 'block',
    serial: null,
    backingFile: null,
  };
}

/**
 * drivelist's drives, described from the picture of the block layer, plus the loop
 * devices that have a backing file (drivelist leaves loops out). Sorted by path.
 * drivelist's own isSystem ("not removable, not virtual") is ignored on purpose.
 */
export function classifyDrives(drivelist: DrivelistEntry[], snapshot: SystemSnapshot): Drive[] {
  const disks = systemDisks(snapshot);
  const drives = new Map<string, Drive>();
  for (const entry of drivelist) {
    const node =
      findNode(snapshot.topology, entry.raw ?? entry.device) ??
      findNode(snapshot.topology, entry.device);
    const drive = node ? driveFromNode(snapshot, node, disks) : driveFromDrivelist(entry);
    drive.path = entry.device;
    drives.set(drive.path, drive);
  }
  for (const node of snapshot.topology.nodes.values()) {
    if (node.type !== 'loop' || node.parents.length > 0 || !node.backingFile) continue;
    if (!drives.has(node.path)) drives.set(node.path, driveFromNode(snapshot, node, disks));
  }
  return [...drives.values()].sort((a, b) => naturalCompare(a.path, b.path));
}

/** An image file the user picked, as a Drive. */
export function imageFileDrive(file: string): Drive {
  const real = path.resolve(file);
  let size = 0;
  let readOnly = false;
  try {
    size = fs.statSync(real).size;
    fs.accessSync(real, fs.constants.W_OK);
  } catch {
    readOnly = fs.existsSync(real);
  }
  return {
    path: real,
    name: path.basename(real),
    size,
    logicalBlockSize: 512,
    bus: 'file',
    removable: false,
    readOnly,
    mountpoints: [],
    system: false,
    kind: 'file',
    serial: null,
    backingFile: null,
  };
}

// ---------------------------------------------------------------------------
// Verdicts

function describeDrive(drive: Drive): string {
  return `${drive.path} (${drive.name}, ${formatBytes(drive.size)})`;
}

function mountedReason(drive: Drive): string {
  const mounts = drive.mountpoints.filter((m) => m !== SWAP);
  const parts: string[] = [];
  if (mounts.length > 0) parts.push(`is mounted at ${mounts.join(', ')}`);
  if (drive.mountpoints.includes(SWAP)) parts.push('is in use as swap');
  return `${drive.path} ${parts.join(' and ')}`;
}

/** Whether `drive` is, or overlaps, the chosen source: asked of the live system when both exist. */
function sourceOverlap(drive: Drive, sourcePath: string): string | null {
  // An image file still to be created is asked about too: it would lie on its folder's filesystem.
  if (fs.existsSync(sourcePath) && (fs.existsSync(drive.path) || drive.kind === 'file')) {
    try {
      return overlapProblem(sourcePath, drive.path, readSystemSnapshot());
    } catch {
      // fall through to what the paths alone say
    }
  }
  const source = path.resolve(sourcePath);
  if (source === path.resolve(drive.path)) return `${drive.path} is the source`;
  if (drive.backingFile && path.resolve(drive.backingFile) === source) {
    return `${drive.path} is a loop device backed by the source image ${sourcePath}`;
  }
  const partition = new RegExp(`^${drive.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}p?\\d+$`);
  if (drive.kind === 'block' && partition.test(source)) {
    return `the source ${sourcePath} is a partition of ${drive.path}`;
  }
  return null;
}

function sourceVerdict(drive: Drive): Verdict {
  const refused: string[] = [];
  if (drive.kind === 'file') {
    try {
      fs.accessSync(drive.path, fs.constants.R_OK);
      if (!fs.statSync(drive.path).isFile()) refused.push(`${drive.path} is not a regular file`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      refused.push(
        code === 'ENOENT'
          ? `${drive.path} does not exist`
          : `${drive.path} cannot be read (${code})`,
      );
    }
  }
  if (refused.length === 0 && drive.size === 0) {
    refused.push(
      drive.kind === 'file' ? `${drive.path} is empty` : `${drive.path} has no medium (size 0)`,
    );
  }
  if (refused.length > 0) return { level: 'refused', reasons: refused };
  const notes: string[] = [];
  if (drive.mountpoints.some((m) => m !== SWAP)) {
    notes.push(
      `${mountedReason(drive)}: files changed during the copy may be copied inconsistently`,
    );
  }
  return { level: 'usable', reasons: notes };
}

function targetVerdict(drive: Drive, opts: VerdictOptions): Verdict {
  const refused: string[] = [];
  const confirm: string[] = [];
  if (opts.sourcePath) {
    const overlap = sourceOverlap(drive, opts.sourcePath);
    if (overlap) refused.push(overlap);
  }
  if (drive.readOnly) refused.push(`${drive.path} is read-only`);
  if (drive.kind === 'block' && drive.size === 0)
    refused.push(`${drive.path} has no medium (size 0)`);
  if (
    opts.sourceSize !== undefined &&
    drive.kind === 'block' &&
    drive.size > 0 &&
    drive.size < opts.sourceSize
  ) {
    refused.push(
      `${drive.path} (${formatBytes(drive.size)}) is smaller than the source (${formatBytes(opts.sourceSize)})`,
    );
  }
  if (drive.system) {
    const why = `${drive.path} holds the running system`;
    if (opts.allowSystem) confirm.push(`${why}: writing it destroys the system you are running`);
    else refused.push(why);
  }
  if (drive.mountpoints.length > 0) {
    if (opts.allowMounted) confirm.push(`${mountedReason(drive)}: it will be written while in use`);
    else refused.push(mountedReason(drive));
  }
  if (refused.length > 0) return { level: 'refused', reasons: refused };
  if (drive.kind === 'file') {
    const reasons =
      drive.size > 0
        ? [`${drive.path} exists (${formatBytes(drive.size)}) and will be overwritten`]
        : [];
    return { level: 'usable', reasons };
  }
  return {
    level: 'confirm',
    reasons: [`everything on ${describeDrive(drive)} will be overwritten`, ...confirm],
  };
}

/**
 * May `drive` be cloned from (source) or onto (target)? Writing a drive always needs
 * confirmation; image files are usable unless they are, or lie on, the source.
 */
export function verdictFor(drive: Drive, role: Role, opts: VerdictOptions = {}): Verdict {
  return role === 'source' ? sourceVerdict(drive) : targetVerdict(drive, opts);
}

// ---------------------------------------------------------------------------
// The drives table

export function formatDrivesTable(drives: Drive[]): string {
  const yesNo = (flag: boolean): string => (flag ? 'yes' : 'no');
  const header = ['PATH', 'NAME', 'SIZE', 'BLOCK', 'RM', 'RO', 'SYSTEM', 'MOUNTPOINTS'];
  const rightAligned = new Set([2, 3]);
  const rows = drives.map((d) => [
    d.path,
    d.name,
    formatBytes(d.size),
    String(d.logicalBlockSize),
    yesNo(d.removable),
    yesNo(d.readOnly),
    yesNo(d.system),
    d.mountpoints.length > 0 ? d.mountpoints.join(', ') : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, i) => {
          if (i === row.length - 1) return cell;
          return rightAligned.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]);
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

// ---------------------------------------------------------------------------
// The live system

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function readTrimmed(file: string): string | null {
  return text(readText(file));
}

function readDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** glibc's major()/minor() of a dev_t. */
export function devnoOf(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** A USB drive's serial is on its USB device, some levels above the block device. */
function usbSerial(devicePath: string, sys: string): string | null {
  for (
    let dir = devicePath;
    dir.startsWith(path.join(sys, 'devices')) && dir !== '/';
    dir = path.dirname(dir)
  ) {
    if (fs.existsSync(path.join(dir, 'idVendor'))) return readTrimmed(path.join(dir, 'serial'));
  }
  return null;
}

/** lsblk's HOTPLUG: a device on the way up is marked "removable" (USB ports, card slots). */
function hotpluggable(devicePath: string, sys: string): boolean {
  for (
    let dir = devicePath;
    dir.startsWith(path.join(sys, 'devices')) && dir !== '/';
    dir = path.dirname(dir)
  ) {
    if (readTrimmed(path.join(dir, 'removable')) === 'removable') return true;
  }
  return false;
}

/** The picture of the block layer from /sys/class/block. */
export function readSysfsTopology(sys = '/sys'): BlockTopology {
  const topology: BlockTopology = { nodes: new Map() };
  const classDir = path.join(sys, 'class', 'block');
  for (const name of readDir(classDir)) {
    let real: string;
    try {
      real = fs.realpathSync(path.join(classDir, name));
    } catch {
      continue;
    }
    const isPartition = fs.existsSync(path.join(real, 'partition'));
    const whole = isPartition ? path.dirname(real) : real;
    const dmName = readTrimmed(path.join(real, 'dm', 'name'));
    const isLoop = /^loop\d+$/.test(name);
    let type = 'disk';
    if (isPartition) type = 'part';
    else if (isLoop) type = 'loop';
    else if (dmName !== null) type = dmType(readTrimmed(path.join(real, 'dm', 'uuid')));
    else if (name.startsWith('md')) type = 'raid';
    else if (name.startsWith('sr')) type = 'rom';
    const aliases = [`/dev/${name}`];
    if (dmName) aliases.unshift(`/dev/mapper/${dmName}`);
    const serialFiles = ['device/serial', 'serial', 'device/wwid', 'wwid'].map((f) =>
      path.join(whole, f),
    );
    const serial = isLoop
      ? null
      : (serialFiles.map(readTrimmed).find((s) => s !== null) ?? usbSerial(whole, sys));
    const bus = busFromSysfsPath(whole);
    addNode(topology, {
      name,
      path: aliases[0],
      aliases,
      devno: readTrimmed(path.join(real, 'dev')),
      type,
      parents: isPartition ? [path.basename(whole)] : readDir(path.join(real, 'slaves')),
      size: Number(readTrimmed(path.join(real, 'size')) ?? 0) * 512,
      logicalBlockSize: Number(readTrimmed(path.join(whole, 'queue', 'logical_block_size'))) || 512,
      readOnly: readTrimmed(path.join(real, 'ro')) === '1',
      removable:
        readTrimmed(path.join(whole, 'removable')) === '1' ||
        bus === 'usb' ||
        hotpluggable(whole, sys),
      bus,
      vendor: readTrimmed(path.join(whole, 'device', 'vendor')),
      model:
        readTrimmed(path.join(whole, 'device', 'model')) ??
        readTrimmed(path.join(whole, 'device', 'name')),
      serial: dmName !== null ? null : serial,
      backingFile: isLoop ? readTrimmed(path.join(real, 'loop', 'backing_file')) : null,
    });
  }
  return topology;
}

/** Topology, mounts and swap areas as they are now. */
export function readSystemSnapshot(): SystemSnapshot {
  const topology = readSysfsTopology();
  const uses = [
    ...parseMountinfo(readText('/proc/self/mountinfo') ?? ''),
    ...parseSwaps(readText('/proc/swaps') ?? ''),
  ];
  // An anonymous devno (btrfs) or a swap area names its device by path: make it a devno.
  for (const use of uses) {
    if (!isAnonymous(use.devno) || !use.source.startsWith('/')) continue;
    try {
      const st = fs.statSync(use.source, { bigint: true });
      if (st.isBlockDevice()) use.devno = devnoOf(st.rdev);
    } catch {
      // a source that is gone, or a swap file: nothing to resolve
    }
  }
  return { topology, uses };
}

type DrivelistModule = { list(): Promise<DrivelistEntry[]> };

/** drivelist's drives plus Linux loop devices that have a backing file; sorted by path. */
export async function listDrives(): Promise<Drive[]> {
  // Loaded here, not at the top: the CLI's start-up stays lean for every other command.
  const drivelist = (await import('drivelist')) as DrivelistModule;
  const entries = await drivelist.list();
  if (process.platform !== 'linux') {
    const systemMounts = new Set([...SYSTEM_MOUNTS, `${process.env.SystemDrive ?? 'C:'}\\`]);
    return entries
      .map((entry) => driveFromDrivelist(entry, systemMounts))
      .sort((a, b) => naturalCompare(a.path, b.path));
  }
  return classifyDrives(entries, readSystemSnapshot());
}

function nodeOfBlockDevice(p: string, snapshot: SystemSnapshot): { node: BlockNode; real: string } {
  const real = fs.realpathSync(p);
  const st = fs.statSync(real, { bigint: true });
  if (!st.isBlockDevice()) throw new Error(`${p} is not a block device`);
  const devno = devnoOf(st.rdev);
  const node = nodeByDevno(snapshot.topology, devno);
  if (!node) throw new Error(`${p} (${devno}) is not in /sys/class/block`);
  return { node, real };
}

/** The few facts about one block device that the copy needs, read straight from its sysfs node (cheap). */
export interface BlockFacts {
  size: number;
  logicalBlockSize: number;
  serial: string | null;
  backingFile: string | null;
}

export function blockFacts(p: string): BlockFacts {
  const st = fs.statSync(p, { bigint: true });
  if (!st.isBlockDevice()) throw new Error(`${p} is not a block device`);
  const node = fs.realpathSync(`/sys/dev/block/${devnoOf(st.rdev)}`);
  const whole = fs.existsSync(path.join(node, 'partition')) ? path.dirname(node) : node;
  const serialFiles = ['device/serial', 'serial', 'device/wwid', 'wwid'];
  return {
    size: Number(readTrimmed(path.join(node, 'size')) ?? 0) * 512,
    logicalBlockSize: Number(readTrimmed(path.join(whole, 'queue', 'logical_block_size'))) || 512,
    serial:
      serialFiles.map((f) => readTrimmed(path.join(whole, f))).find((x) => x !== null) ?? null,
    backingFile: readTrimmed(path.join(node, 'loop', 'backing_file')),
  };
}

/** What /sys and /proc say about a block device (any path to it: a symlink, /dev/disk/by-id/...). */
export function describeBlockDevice(p: string): BlockInfo {
  const snapshot = readSystemSnapshot();
  const { node, real } = nodeOfBlockDevice(p, snapshot);
  return blockInfoOf(snapshot, node, real);
}

// ---------------------------------------------------------------------------
// Is the destination the source, or on it, or under it?
//
// Every path is reduced to a region: a block device (by kernel name) or a file (by
// dev:ino). A loop device *is* its backing file, so it is reduced to it. A region lies
// within its containers: a partition in its disk, a volume in its slaves, a file in the
// device of its filesystem. Two paths overlap when one is the other or lies within it;
// two partitions of one disk share a container and do not overlap.

type Region =
  | { kind: 'block'; node: BlockNode }
  | { kind: 'file'; dev: bigint; ino: bigint | null; fsNode: BlockNode | null; file: string };

function regionKey(region: Region): string {
  if (region.kind === 'block') return `block:${region.node.name}`;
  return region.ino === null ? `new file:${region.file}` : `file:${region.dev}:${region.ino}`;
}

/** The block device holding the filesystem a file is on. */
function filesystemNode(dev: bigint, snapshot: SystemSnapshot): BlockNode | null {
  const devno = devnoOf(dev);
  if (!isAnonymous(devno)) return nodeByDevno(snapshot.topology, devno) ?? null;
  // readSystemSnapshot already turned resolvable anonymous devnos into real ones; what
  // is left (tmpfs, overlay) is on no block device. Match the source path all the same.
  const use = snapshot.uses.find((u) => u.devno === devno);
  return use ? (findNode(snapshot.topology, use.source) ?? null) : null;
}

function fileRegion(file: string, snapshot: SystemSnapshot): Region | null {
  try {
    const st = fs.statSync(file, { bigint: true });
    return {
      kind: 'file',
      dev: st.dev,
      ino: st.ino,
      fsNode: filesystemNode(st.dev, snapshot),
      file,
    };
  } catch {
    return null;
  }
}

/** A loop device stands for its backing file. */
function canonical(region: Region, snapshot: SystemSnapshot): Region {
  if (region.kind === 'block' && region.node.type === 'loop' && region.node.backingFile) {
    return fileRegion(region.node.backingFile, snapshot) ?? region;
  }
  return region;
}

/** Keys of the region (as canonical) and of everything it lies within. */
function containers(
  region: Region,
  snapshot: SystemSnapshot,
  seen = new Set<string>(),
): Set<string> {
  const self = canonical(region, snapshot);
  const key = regionKey(self);
  if (seen.has(key)) return seen;
  seen.add(key);
  const below =
    self.kind === 'block'
      ? self.node.parents
          .map((p) => snapshot.topology.nodes.get(p))
          .filter((n): n is BlockNode => !!n)
      : self.fsNode
        ? [self.fsNode]
        : [];
  for (const node of below) containers({ kind: 'block', node }, snapshot, seen);
  return seen;
}

function regionOf(p: string, snapshot: SystemSnapshot): Region | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    // A file still to be created lies on the filesystem of its folder.
    const folder = fileRegion(path.dirname(path.resolve(p)), snapshot);
    return folder?.kind === 'file' ? { ...folder, ino: null, file: path.resolve(p) } : null;
  }
  if (!st.isBlockDevice()) return fileRegion(p, snapshot);
  try {
    return { kind: 'block', node: nodeOfBlockDevice(p, snapshot).node };
  } catch {
    return null;
  }
}

/** "`inner` lies within `outer`", said as precisely as the picture allows. */
function within(
  inner: Region,
  innerLabel: string,
  outer: Region,
  outerLabel: string,
  snapshot: SystemSnapshot,
): string {
  if (inner.kind === 'file') return `${innerLabel} is a file on ${outerLabel}`;
  const parent = snapshot.topology.nodes.get(inner.node.parents[0] ?? '');
  if (inner.node.type === 'part' && parent) {
    if (outer.kind === 'block' && parent.name === outer.node.name)
      return `${innerLabel} is a partition of ${outerLabel}`;
    const disk = canonical({ kind: 'block', node: parent }, snapshot);
    if (regionKey(disk) === regionKey(canonical(outer, snapshot))) {
      return `${innerLabel} is a partition of ${parent.path}, a loop device backed by ${outerLabel}`;
    }
  }
  const backing = loopBacking(snapshot.topology, inner.node);
  return `${innerLabel} lies on ${outerLabel}${backing ? ` (through the loop device's backing file ${backing})` : ''}`;
}

/** Why writing `dest` would write the source `source`, or null. */
function overlapProblem(source: string, dest: string, snapshot: SystemSnapshot): string | null {
  const src = regionOf(source, snapshot);
  const dst = regionOf(dest, snapshot);
  if (!src || !dst) return null;
  const srcCanon = canonical(src, snapshot);
  const dstCanon = canonical(dst, snapshot);
  const also =
    dest === source ? '' : ` (same ${src.kind === 'block' ? 'device' : 'file'} as ${source})`;
  if (regionKey(srcCanon) === regionKey(dstCanon)) {
    if (src.kind === dst.kind && (src.kind === 'file' || regionKey(src) === regionKey(dst))) {
      return `${dest} is the source${also}`;
    }
    if (dst.kind === 'block' && src.kind === 'file')
      return `${dest} is a loop device backed by the source image ${source}`;
    if (src.kind === 'block' && dst.kind === 'file')
      return `the source ${source} is a loop device backed by ${dest}`;
    return `${dest} and the source ${source} are loop devices backed by the same file ${dst.kind === 'block' ? dst.node.backingFile : ''}`;
  }
  if (containers(dst, snapshot).has(regionKey(srcCanon))) {
    return within(dst, dest, src, `the source ${source}`, snapshot);
  }
  if (containers(src, snapshot).has(regionKey(dstCanon))) {
    return within(src, `the source ${source}`, dst, dest, snapshot);
  }
  return null;
}

function inUseProblems(dest: string, info: BlockInfo): string[] {
  const mounts = info.mountpoints.filter((m) => m !== SWAP);
  const problems: string[] = [];
  if (mounts.length > 0) problems.push(`${dest} is mounted at ${mounts.join(', ')}`);
  if (info.mountpoints.includes(SWAP)) problems.push(`${dest} is in use as swap`);
  if (problems.length === 0 && info.holders.length > 0)
    problems.push(`${dest} is in use by ${info.holders.join(', ')}`);
  return problems;
}

/**
 * Why `dest` may not be written when cloning from `source` (block devices or files).
 * Empty: it may. Each problem is a sentence naming the path.
 */
export function destinationProblems(
  source: string,
  dest: string,
  opts: { allowMounted?: boolean; allowSystem?: boolean } = {},
): string[] {
  const problems: string[] = [];
  const snapshot = readSystemSnapshot();
  if (!fs.existsSync(source)) problems.push(`the source ${source} does not exist`);
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(dest);
  } catch {
    if (path.resolve(dest).startsWith('/dev/')) problems.push(`${dest} does not exist`);
    else if (!fs.existsSync(path.dirname(path.resolve(dest)))) {
      problems.push(`the folder of ${dest} (${path.dirname(path.resolve(dest))}) does not exist`);
    }
  }
  if (st && !st.isBlockDevice() && !st.isFile()) {
    problems.push(
      `${dest} is ${st.isDirectory() ? 'a folder' : 'neither a block device nor a regular file'}`,
    );
    return problems;
  }
  const overlap = overlapProblem(source, dest, snapshot);
  if (overlap) problems.push(overlap);
  if (st?.isBlockDevice()) {
    let found: { node: BlockNode; real: string };
    try {
      found = nodeOfBlockDevice(dest, snapshot);
    } catch (err) {
      problems.push((err as Error).message);
      return problems;
    }
    const { node, real } = found;
    const info = blockInfoOf(snapshot, node, real);
    if (info.readOnly) problems.push(`${dest} is read-only`);
    if (!opts.allowMounted) problems.push(...inUseProblems(dest, info));
    if (info.system && !opts.allowSystem) {
      const disk = info.wholeDisk === real ? '' : ` (${dest} is on ${info.wholeDisk})`;
      problems.push(`${dest} is on the system drive, which holds the running system${disk}`);
    }
  } else if (st?.isFile()) {
    try {
      fs.accessSync(dest, fs.constants.W_OK);
    } catch (err) {
      problems.push(`${dest} is read-only (${(err as NodeJS.ErrnoException).code})`);
    }
    if (!opts.allowMounted) {
      // Writing the backing file of a mounted loop device writes under a live filesystem.
      const region = fileRegion(dest, snapshot);
      for (const node of snapshot.topology.nodes.values()) {
        if (!region || node.type !== 'loop' || !node.backingFile) continue;
        const loop = canonical({ kind: 'block', node }, snapshot);
        if (regionKey(loop) !== regionKey(region)) continue;
        const info = blockInfoOf(snapshot, node);
        for (const problem of inUseProblems(node.path, info)) {
          problems.push(
            `${dest} is the backing file of ${node.path}, which ${problem.slice(node.path.length + 1)}`,
          );
        }
      }
    }
  }
  return problems;
}
