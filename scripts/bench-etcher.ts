// One etcher-sdk write, for the bench: SOURCE (an image, compressed or not) onto DEST (a
// file or a drive), as balenaEtcher writes it — decompressThenFlash, no verify. etcher-sdk
// is not a dependency of DriveTwin: it is loaded from the folder named by
// BENCH_ETCHER_SDK (where `npm install etcher-sdk` was run), and the bench leaves it out
// when that is not set or it doesn't load.
//
//   node dist/scripts/bench-etcher.js SOURCE DEST

/** The little of etcher-sdk's API used here. */
interface SourceDestination {
  getInnerSource(): Promise<SourceDestination>;
}
interface EtcherSdk {
  sourceDestination: {
    File: new (options: { path: string; write?: boolean }) => SourceDestination;
  };
  multiWrite: {
    decompressThenFlash(options: {
      source: SourceDestination;
      destinations: SourceDestination[];
      onFail: (destination: SourceDestination, error: Error) => void;
      onProgress: () => void;
      verify: boolean;
      trim: boolean;
    }): Promise<{ failures: Map<SourceDestination, Error>; bytesWritten: number }>;
  };
}

/** etcher-sdk from BENCH_ETCHER_SDK, or why not. */
export function loadEtcherSdk(): EtcherSdk | string {
  const dir = process.env.BENCH_ETCHER_SDK;
  if (!dir) return 'BENCH_ETCHER_SDK is not set (a folder where `npm install etcher-sdk` ran)';
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(require.resolve('etcher-sdk', { paths: [dir] })) as EtcherSdk;
  } catch (e) {
    return `etcher-sdk doesn't load from ${dir}: ${(e as Error).message.split('\n')[0]}`;
  }
}

async function main(source: string, dest: string): Promise<void> {
  const sdk = loadEtcherSdk();
  if (typeof sdk === 'string') throw new Error(sdk);
  const { File } = sdk.sourceDestination;
  const inner = await new File({ path: source }).getInnerSource();
  const failed: string[] = [];
  const result = await sdk.multiWrite.decompressThenFlash({
    source: inner,
    destinations: [new File({ path: dest, write: true })],
    onFail: (_, error) => failed.push(error.message),
    onProgress: () => undefined,
    verify: false,
    trim: false,
  });
  if (failed.length > 0 || result.failures.size > 0) throw new Error(failed.join('; '));
  console.log(JSON.stringify({ bytesWritten: result.bytesWritten }));
}

if (require.main === module) {
  const [source, dest] = process.argv.slice(2);
  main(source, dest).catch((e: Error) => {
    console.error(`bench-etcher: ${e.message}`);
    process.exit(1);
  });
}
