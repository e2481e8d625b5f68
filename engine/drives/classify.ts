// Drives: what drivelist lists, described from the picture of the block layer, and
// image files the user picked, as one Drive shape.

import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  type BlockNode,
  type DriveNote,
  findNode,
  holdersOf,
  isSystemNode,
  mountpointsOf,
  naturalCompare,
  notesOf,
  SYSTEM_MOUNTS,
  type SystemSnapshot,
  systemDisks,
  unique,
} from './topology';

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
  /** /dev paths of what holds it open: device-mapper or md devices on it or its partitions. */
  holders: string[];
  /** Holds the running OS (the filesystem at /) or its boot partition (/boot, /boot/efi). */
  system: boolean;
  kind: 'block' | 'file';
  serial: string | null;
  backingFile: string | null;
  /** What the user must hear before it is written: BitLocker, a dynamic disk. */
  notes?: DriveNote[];
}

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

/** A name a person recognises: vendor and model, or what kind of disk it is. */
export function driveName(node: BlockNode): string {
  // A loop device is known by the file behind it (its full path is shown beside).
  if (node.type === 'loop') {
    return node.backingFile
      ? `${node.backingFile.split(/[\\/]/).pop()} (loop device)`
      : 'Loop device (no file behind it)';
  }
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
    holders: holdersOf(snapshot.topology, node),
    system: isSystemNode(snapshot, node.name, disks),
    kind: 'block',
    serial: node.type === 'loop' ? null : node.serial,
    backingFile: node.type === 'loop' ? node.backingFile : null,
    ...withNotes(notesOf(snapshot, node.name)),
  };
}

/** Only drives that have notes carry the field. */
function withNotes(notes: DriveNote[]): { notes?: DriveNote[] } {
  return notes.length > 0 ? { notes } : {};
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
    holders: [],
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
  return fileDrive({ path: real, name: path.basename(real), size, bus: 'file', readOnly });
}

/** A file (an image, or a download) as a Drive: never mounted, held, or the system's. */
export function fileDrive(
  known: Pick<Drive, 'path' | 'name' | 'size' | 'bus' | 'readOnly'>,
): Drive {
  return {
    ...known,
    logicalBlockSize: 512,
    removable: false,
    mountpoints: [],
    holders: [],
    system: false,
    kind: 'file',
    serial: null,
    backingFile: null,
  };
}
