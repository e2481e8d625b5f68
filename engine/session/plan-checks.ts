// The checks a plan makes of a job's source and destinations before anything is written:
// the source is the one the job started from, each destination is there, the same one,
// and safe to write (the one target-safety rule, drives/safety.ts, with the source's size).

import { type VerdictOptions, destinationProblems } from '../drives/safety';
import { type Device, knownSize } from '../io/device';
import { isUrl } from '../io/http/url';
import { type Identity, identify, identifyPath, identityProblem } from '../io/identity';
import { type Probe, Refused, isZstPath, probe } from '../io/open';
import type { JobOptions } from '../options';
import type { PartitionTable } from '../partitions/table';
import type { DestinationRecord, JobRecord } from '../store/job-record';

export interface Allow {
  allowMounted?: boolean;
  allowSystem?: boolean;
}

/** The source must be the one the job started from; an update allows new content. */
export async function checkSource(
  record: JobRecord,
  source: Device,
  sameContent: boolean,
): Promise<Identity> {
  const now = await identify(source, true);
  const then = sameContent
    ? record.sourceIdentity
    : { ...record.sourceIdentity, headSha256: undefined };
  const problem = identityProblem(`source ${record.source}`, then, now);
  if (problem) throw new Refused(`${problem}; job ${record.id} can't go on from it`);
  return now;
}

/** A destination of an existing job: there, the same one, and still safe to write. */
export function checkJobDestination(
  record: JobRecord,
  d: DestinationRecord,
  source: Device,
  allow: Allow,
  sizes: SizeRule,
): Probe {
  const found = probe(d.path);
  const dropHint = `, or finish without it: drivetwin resume ${record.id} --drop ${d.path}`;
  if (found.kind === 'missing') {
    throw new Refused(`destination ${d.path} is gone: reattach it${dropHint}`);
  }
  // Said before the size checks: a detached drive or a swapped one is not "too small".
  if (found.kind === 'block' && found.size !== d.size) {
    const now = found.size === 0 ? 'has no medium (size 0)' : `changed size to ${found.size} bytes`;
    throw new Refused(
      `destination ${d.path} ${now}; job ${record.id} wrote to ${d.size} bytes there: ` +
        `reattach the same drive${dropHint}`,
    );
  }
  checkDestination(source, d.path, allow, sizes);
  const now = identifyPath(d.path, { ...found, kind: found.kind === 'block' ? 'block' : 'file' });
  const why = identityProblem(`destination ${d.path}`, d.identity, now);
  if (why) throw new Refused(`${why}; job ${record.id} can't go on onto it${dropHint}`);
  return found;
}

export type SizeRule = Pick<VerdictOptions, 'partitions' | 'fit'>;

/** What the size rule weighs besides the source's size: its partitions, and whether the copy is fitted. */
export function sizeRule(partitions: PartitionTable | null, options: JobOptions): SizeRule {
  const fit = options.fit;
  return partitions
    ? { partitions: { end: partitions.partitionsEnd, fitSize: partitions.fitSize }, fit }
    : { fit };
}

/**
 * The one target-safety rule (drives/safety.ts), with the source's real size (measured,
 * where its file doesn't say it and the user asked).
 */
export function checkDestination(
  source: Device,
  dest: string,
  allow: Allow,
  sizes: SizeRule,
  size = knownSize(source),
): Probe {
  if (isUrl(dest)) throw new Refused(`${dest}: a destination can't be a URL (only a source can)`);
  // A stream of unknown size is checked as it is copied: past a drive's end, it stops.
  const sourceSize = size ?? undefined;
  const problems = destinationProblems(source.path, dest, { ...allow, sourceSize, ...sizes });
  if (problems.length > 0) throw new Refused(problems.join('; '));
  const found = probe(dest);
  return found.kind === 'missing' ? { ...found, kind: isZstPath(dest) ? 'zst' : 'file' } : found;
}
