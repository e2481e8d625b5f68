// --new-ids are chosen once per job: the update of a finished copy writes the
// identifiers the job chose the first time (a copy's PARTUUIDs do not change every time
// it is brought up to date), never the source's.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { explain, expectExit, only, runCli } from '../helpers/cli';
import { writeRandomFile } from '../helpers/files';
import { run } from '../helpers/partitioned';
import { workspace } from '../helpers/workspace';

const MIB = 1024 * 1024;

/** The disk identifier and each partition's own (GPT; an MBR's PARTUUIDs are its disk's), as sfdisk reads them. */
function ids(image: string): string[] {
  const { partitiontable: t } = JSON.parse(run('sfdisk', ['--json', image])) as {
    partitiontable: { id: string; partitions: Array<{ uuid?: string }> };
  };
  return [t.id, ...t.partitions.flatMap((p) => (p.uuid ? [p.uuid] : []))];
}

for (const [label, table] of [
  ['GPT', 'label: gpt\nstart=2048, size=20480\nsize=20480\n'],
  ['MBR', 'label: dos\nstart=2048, size=20480, type=83\nsize=20480, type=c\n'],
] as const) {
  test(`${label}: --new-ids chosen once — an update keeps them`, async (t) => {
    const env = workspace(t, `new-ids-${label}`);
    const src = env.file('src.img');
    const dst = env.file('dst.img');
    writeRandomFile(src, 32 * MIB, 61);
    run('sfdisk', ['--quiet', src], table);
    const first = await runCli(['clone', src, dst, '--new-ids', '--verify', '--json'], {
      db: env.db,
    });
    expectExit(first, 0);
    const chosen = ids(dst);
    const source = ids(src);
    chosen.forEach((id, i) => assert.notEqual(id, source[i], `${id}: not the source's`));

    // The source changes in its first partition: the same clone brings the copy up to date.
    const fd = fs.openSync(src, 'r+');
    fs.writeSync(fd, Buffer.alloc(MIB, 0x33), 0, MIB, 2 * MIB);
    fs.closeSync(fd);
    const update = await runCli(['clone', src, dst, '--new-ids', '--verify', '--json'], {
      db: env.db,
    });
    expectExit(update, 0);
    assert.equal(only(update, 'start').intent, 'update', explain(update));
    assert.equal(only(update, 'done').verified, true, explain(update));
    assert.deepEqual(ids(dst), chosen, 'the identifiers the job chose, again');
  });
}
