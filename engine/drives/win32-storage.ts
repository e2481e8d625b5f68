// What Windows' Storage module says, as text in and plain data out (tests feed it
// fixtures; win32.ts runs the scripts): Get-Disk, Get-Partition, Get-Volume and, where
// permitted, Get-BitLockerVolume, as one JSON object from STORAGE_SCRIPT. One
// SystemSnapshot (topology.ts) comes out: disks \\.\PhysicalDriveN, their partitions,
// their volumes (\\?\Volume{…}) with drive letters as mountpoints, the disks Windows
// boots from, BitLocker and dynamic disks flagged.

import * as path from 'node:path';
import {
  addNode,
  type BlockNode,
  childOf,
  type DriveNote,
  type MountUse,
  type SystemSnapshot,
} from './topology';

/** Every line is PowerShell 5.1 (Windows PowerShell, on every Windows since 8). */
const PRELUDE = [
  "$ErrorActionPreference = 'SilentlyContinue'",
  '[Console]::OutputEncoding = [Text.Encoding]::UTF8',
  // Enum-like properties as text: their names where the Storage module gives them.
  'function Text($v) { if ($null -eq $v) { $null } else { "$v" } }',
];

/** The drives, partitions, volumes and BitLocker states, as one JSON object. */
export const STORAGE_SCRIPT = [
  ...PRELUDE,
  "$disks = @(Get-Disk | Select-Object Number, FriendlyName, SerialNumber, @{n='BusType';e={Text $_.BusType}}, Size, LogicalSectorSize, PhysicalSectorSize, IsBoot, IsSystem, IsReadOnly, IsOffline, @{n='OperationalStatus';e={Text $_.OperationalStatus}}, @{n='PartitionStyle';e={Text $_.PartitionStyle}})",
  "$partitions = @(Get-Partition | Select-Object DiskNumber, PartitionNumber, @{n='DriveLetter';e={Text $_.DriveLetter}}, Offset, Size, Type, GptType, MbrType, IsBoot, IsSystem, AccessPaths)",
  "$volumes = @(Get-Volume | Select-Object @{n='DriveLetter';e={Text $_.DriveLetter}}, Path, FileSystem, FileSystemLabel, @{n='DriveType';e={Text $_.DriveType}}, Size)",
  // Needs an administrator and the BitLocker module (not on Home): empty otherwise.
  "$bitlocker = @(Get-BitLockerVolume | Select-Object MountPoint, @{n='VolumeStatus';e={Text $_.VolumeStatus}}, @{n='ProtectionStatus';e={Text $_.ProtectionStatus}}, @{n='LockStatus';e={Text $_.LockStatus}})",
  '[pscustomobject]@{ SystemDrive = $env:SystemDrive; Disks = $disks; Partitions = $partitions; Volumes = $volumes; BitLocker = $bitlocker } | ConvertTo-Json -Depth 4 -Compress',
].join('\n');

/**
 * The programs that run from, or have loaded a library from, one of `roots` (E:\):
 * what Windows can say about who holds a volume without a handle walk.
 */
export function holdersScript(roots: string[]): string {
  const list = roots.map((r) => `'${r.replace(/'/g, "''")}'`).join(', ');
  return [
    ...PRELUDE,
    `$roots = @(${list})`,
    'ConvertTo-Json -Compress -InputObject @(Get-Process | Where-Object { $p = $_; $roots | Where-Object { $p.Path -like "$_*" -or ($p.Modules | Where-Object FileName -like "$_*") } } | Select-Object Id, ProcessName)',
  ].join('\n');
}

type Json = Record<string, unknown>;

/** ConvertTo-Json gives one object where a list held one item, nothing where it held none. */
function list(value: unknown): Json[] {
  if (value === null || value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).filter(
    (v): v is Json => typeof v === 'object' && v !== null,
  );
}

const text = (v: unknown): string | null =>
  typeof v === 'string' && v.trim() !== '' ? v.trim() : typeof v === 'number' ? String(v) : null;
const number = (v: unknown): number => (typeof v === 'number' ? v : Number(v) || 0);

function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  return Array.isArray(v) ? v.filter((a): a is string => typeof a === 'string') : [];
}

/** A drive letter, or null for none ([char]0 comes out as "\u0000"). */
function letter(v: unknown): string | null {
  const s = typeof v === 'string' ? v.trim() : '';
  return /^[A-Za-z]$/.test(s) ? s.toUpperCase() : null;
}

/** MSFT_Disk.BusType: its name, or its number where the Storage module's names were not applied. */
const BUS_TYPES = [
  'Unknown', 'SCSI', 'ATAPI', 'ATA', '1394', 'SSA', 'Fibre Channel', 'USB', 'RAID', 'iSCSI',
  'SAS', 'SATA', 'SD', 'MMC', 'Virtual', 'File Backed Virtual', 'Storage Spaces', 'NVMe',
]; // prettier-ignore

function busOf(v: unknown): string | null {
  const name = /^\d+$/.test(text(v) ?? '') ? BUS_TYPES[number(v)] : text(v);
  if (!name || name === 'Unknown') return null;
  const known: Record<string, string> = { SD: 'mmc', MMC: 'mmc', 'File Backed Virtual': 'virtual' };
  return known[name] ?? name.toLowerCase();
}

/** Buses whose disks come and go: USB sticks, card readers. */
const REMOVABLE_BUSES = new Set(['usb', 'mmc', '1394']);

/** A partition of Logical Disk Manager: the disk is dynamic (GPT type, or MBR type 0x42). */
const LDM_GPT_TYPES = new Set([
  '{5808c8aa-7e8f-42e0-85d2-e1e90434cfb3}', // LDM metadata
  '{af9b60a0-1431-4f62-bc68-3311714a69ad}', // LDM data
]);

function isLdm(partition: Json): boolean {
  return (
    LDM_GPT_TYPES.has((text(partition.GptType) ?? '').toLowerCase()) ||
    number(partition.MbrType) === 0x42
  );
}

export const diskPath = (n: number): string => `\\\\.\\PhysicalDrive${n}`;

/** The node name of disk `n`, as \\.\PhysicalDriveN ends. */
const diskName = (n: number): string => `PhysicalDrive${n}`;

/** Without the trailing backslash, \\?\Volume{…} opens the volume itself, not its root folder. */
const volumeDevice = (p: string): string => p.replace(/\\$/, '');

/** Get-BitLockerVolume names a volume by its letter (C:) or, without one, by its \\?\Volume{…}\ path. */
function bitlockerNotes(guidPath: string, volLetter: string | null, states: Json[]): DriveNote[] {
  const keys = new Set([guidPath.toUpperCase(), ...(volLetter ? [`${volLetter}:`] : [])]);
  const state = states.find((b) => keys.has((text(b.MountPoint) ?? '').toUpperCase()));
  if (!state) return [];
  const notes: DriveNote[] = [];
  const status = text(state.VolumeStatus);
  if ((status !== null && status !== 'FullyDecrypted') || text(state.ProtectionStatus) === 'On') {
    notes.push('bitlocker');
  }
  if (text(state.LockStatus) === 'Locked') notes.push('bitlocker-locked');
  return notes;
}

/** The picture from STORAGE_SCRIPT's JSON. */
export function win32Snapshot(json: string): SystemSnapshot {
  const data = JSON.parse(json) as Json;
  const topology = { nodes: new Map<string, BlockNode>() };
  const uses: MountUse[] = [];
  const systemNodes: string[] = [];
  const partitions = list(data.Partitions);
  const volumes = list(data.Volumes);
  const bitlocker = list(data.BitLocker);
  const systemDrive = letter((text(data.SystemDrive) ?? '').replace(/:$/, ''));
  for (const disk of list(data.Disks)) {
    const n = number(disk.Number);
    const bus = busOf(disk.BusType);
    const node: BlockNode = {
      name: diskName(n),
      path: diskPath(n),
      aliases: [diskPath(n), `\\\\.\\PHYSICALDRIVE${n}`],
      devno: null,
      type: 'disk',
      parents: [],
      // An empty card reader: Size 0, OperationalStatus "No Media".
      size: number(disk.Size),
      logicalBlockSize: number(disk.LogicalSectorSize) || 512,
      readOnly: disk.IsReadOnly === true,
      removable: bus !== null && REMOVABLE_BUSES.has(bus),
      bus,
      vendor: null,
      model: text(disk.FriendlyName),
      serial: text(disk.SerialNumber),
      backingFile: null,
    };
    const own = partitions.filter((p) => number(p.DiskNumber) === n);
    if (own.some(isLdm)) node.notes = ['dynamic'];
    addNode(topology, node);
    if (disk.IsBoot === true || disk.IsSystem === true) systemNodes.push(node.name);
    for (const partition of own) addPartition(partition, node);
  }

  function addPartition(partition: Json, disk: BlockNode): void {
    const k = number(partition.PartitionNumber);
    const n = disk.name.slice('PhysicalDrive'.length);
    const partPath = `\\\\?\\GLOBALROOT\\Device\\Harddisk${n}\\Partition${k}`;
    const part = childOf(disk, {
      name: `${disk.name}p${k}`,
      path: partPath,
      aliases: [partPath],
      type: 'part',
      size: number(partition.Size),
    });
    addNode(topology, part);
    const access = strings(partition.AccessPaths);
    const volume = volumes.find((v) => access.includes(text(v.Path) ?? ''));
    if (!volume) return;
    const guidPath = text(volume.Path) ?? '';
    const volLetter = letter(volume.DriveLetter) ?? letter(partition.DriveLetter);
    const node = childOf(part, {
      name: path.win32.basename(volumeDevice(guidPath)),
      path: volumeDevice(guidPath),
      aliases: [
        volumeDevice(guidPath),
        guidPath,
        ...(volLetter ? [`${volLetter}:`, `${volLetter}:\\`] : []),
      ],
      type: 'volume',
      size: number(volume.Size) || part.size,
    });
    const notes = bitlockerNotes(guidPath, volLetter, bitlocker);
    if (notes.length > 0) node.notes = notes;
    addNode(topology, node);
    const fstype = text(volume.FileSystem) ?? '';
    for (const at of access.filter((a) => !a.startsWith('\\\\?\\'))) {
      uses.push({ devno: null, source: guidPath, mountpoint: at, fstype });
    }
    if (volLetter && volLetter === systemDrive) systemNodes.push(node.name);
  }

  return { topology, uses, systemNodes };
}

/** "explorer (PID 4120)" for each program holdersScript found. */
export function parseHolders(json: string): string[] {
  let data: unknown;
  try {
    data = JSON.parse(json || '[]');
  } catch {
    return [];
  }
  return list(data).map((p) => `${text(p.ProcessName) ?? 'a program'} (PID ${number(p.Id)})`);
}
