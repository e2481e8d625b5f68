// GNU ddrescue mapfiles, read: to seed a job with what ddrescue already rescued.
//
// The format (ddrescue's manual, "Mapfile structure"): '#' starts a comment (at a
// line's start or after whitespace); blank lines are ignored. The first data line is
// the status line `current_pos current_status [current_pass]`; every further line is
// `pos size status`. Numbers are read as C's strtoll with base 0 does: 0x… hex,
// 0… octal, else decimal. Blocks are contiguous and in order, as ddrescue writes them;
// the first may start after 0 (ddrescue treats the gap as non-tried).

export type BlockStatus = '?' | '*' | '/' | '-' | '+';

export interface RescueMap {
  currentPos: number;
  /** '?' copying, '*' trimming, '/' scraping, '-' retrying, 'F' filling, 'G' generating, '+' finished. */
  currentStatus: string;
  currentPass: number;
  blocks: Array<{ pos: number; size: number; status: BlockStatus }>;
}

/** A mapfile that can't be read; names the 1-based line. */
export class MapfileError extends Error {
  constructor(
    readonly line: number,
    readonly problem: string,
  ) {
    super(line > 0 ? `mapfile line ${line}: ${problem}` : `mapfile: ${problem}`);
    this.name = 'MapfileError';
  }
}

const CURRENT_STATUSES = new Set(['?', '*', '/', '-', 'F', 'G', '+']);
const BLOCK_STATUSES = new Set(['?', '*', '/', '-', '+']);

/** strtoll(…, 0) on a whole token, as a bigint; null when it is no number. */
function parseNumber(token: string): bigint | null {
  const m = /^\+?(?:(0[xX][0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))$/.exec(token);
  if (!m) return null;
  if (m[1]) return BigInt(m[1]);
  if (m[2]) return m[2] === '0' ? 0n : BigInt(`0o${m[2].slice(1)}`);
  return BigInt(m[3]);
}

const MAX = BigInt(Number.MAX_SAFE_INTEGER);

export function parseMapfile(text: string): RescueMap {
  let status: Pick<RescueMap, 'currentPos' | 'currentStatus' | 'currentPass'> | null = null;
  const blocks: RescueMap['blocks'] = [];
  let end = 0n; // end of the last block
  let open = false; // the last block ran to "the end" (beyond what a number holds here)

  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const fail = (problem: string): never => {
      const shown = lines[i].trim();
      throw new MapfileError(
        lineNo,
        `${problem}: "${shown.length > 80 ? `${shown.slice(0, 77)}...` : shown}"`,
      );
    };
    const tokens: string[] = [];
    for (const t of lines[i].trim().split(/\s+/)) {
      if (t === '' || t.startsWith('#')) break;
      tokens.push(t);
    }
    if (tokens.length === 0) continue;

    if (!status) {
      if (tokens.length < 2 || tokens.length > 3)
        fail('the status line is "current_pos current_status [current_pass]"');
      const pos = parseNumber(tokens[0]);
      if (pos === null) fail(`current_pos "${tokens[0]}" is not a number`);
      if (pos! > MAX) fail('current_pos is too large');
      if (!CURRENT_STATUSES.has(tokens[1])) fail(`"${tokens[1]}" is not a current status`);
      let pass = 1;
      if (tokens.length === 3) {
        if (!/^\+?[0-9]+$/.test(tokens[2]) || Number(tokens[2]) < 1)
          fail(`current_pass "${tokens[2]}" is not a positive number`);
        pass = Number(tokens[2]);
      }
      status = { currentPos: Number(pos), currentStatus: tokens[1], currentPass: pass };
      continue;
    }

    if (tokens.length !== 3) fail('a block line is "pos size status"');
    const pos = parseNumber(tokens[0]);
    const size = parseNumber(tokens[1]);
    if (pos === null) fail(`pos "${tokens[0]}" is not a number`);
    if (size === null) fail(`size "${tokens[1]}" is not a number`);
    if (!BLOCK_STATUSES.has(tokens[2])) fail(`"${tokens[2]}" is not a block status (?*/-+)`);
    const st = tokens[2] as BlockStatus;
    if (open) fail('a block follows one that runs to the end of the device');
    if (size === 0n && !(pos === 0n && blocks.length === 0)) fail('the block is empty');
    if (blocks.length > 0 && pos !== end)
      fail(
        pos! < end
          ? `the block starts at ${pos} and overlaps the previous one, which ends at ${end}`
          : `the block starts at ${pos}, leaving a gap after the previous one, which ends at ${end}`,
      );
    if (pos! > MAX) fail('pos is too large');
    let blockEnd = pos! + size!;
    if (blockEnd > MAX) {
      // ddrescue writes unknown sizes as "to the end": keep them when nothing was rescued there.
      if (st === '+') fail('a finished block ends past 2^53 bytes');
      blockEnd = MAX;
      open = true;
    }
    end = blockEnd;
    if (blockEnd > pos!)
      blocks.push({ pos: Number(pos), size: Number(blockEnd - pos!), status: st });
  }
  if (!status) throw new MapfileError(0, 'no status line: this is not a ddrescue mapfile');
  return { ...status, blocks };
}

/**
 * Regions wholly inside finished ('+') blocks: ddrescue already rescued them on the
 * destination. A region's bytes past `size` don't count (the last region may be
 * short). Throws when finished data lies past `size`: the map is of another device.
 */
export function finishedRegions(
  map: RescueMap,
  size: number,
  regionSize: number,
): Array<{ first: number; count: number }> {
  if (!(regionSize > 0)) throw new RangeError(`bad region size ${regionSize}`);
  const runs: Array<{ first: number; count: number }> = [];
  let at = -1; // end of the current finished stretch (merging adjacent '+' blocks)
  let start = 0;
  const flush = (): void => {
    if (at < 0) return;
    const first = Math.ceil(start / regionSize);
    // A region ends at min(next boundary, size): the stretch may end at `size` mid-region.
    const endRegion = at >= size ? Math.ceil(size / regionSize) : Math.floor(at / regionSize);
    if (endRegion > first) {
      const last = runs[runs.length - 1];
      if (last && last.first + last.count === first) last.count += endRegion - first;
      else runs.push({ first, count: endRegion - first });
    }
    at = -1;
  };
  for (const b of map.blocks) {
    if (b.status !== '+') {
      flush();
      continue;
    }
    if (b.pos + b.size > size)
      throw new MapfileError(
        0,
        `finished data runs to byte ${b.pos + b.size}, past the source's ${size} bytes: the mapfile is of another device`,
      );
    if (at !== b.pos) {
      flush();
      start = b.pos;
    }
    at = b.pos + b.size;
  }
  flush();
  return runs;
}
