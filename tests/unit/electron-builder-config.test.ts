// electron-builder.yml: valid for electron-builder (its own loader and its own
// scheme.json), and the settings that keep the app safe and working once packaged —
// what is unpacked from the asar for the elevated engine, the deb's dependency on
// pkexec, macOS's hardened runtime, Windows' asInvoker — as electron-builder's own file
// matcher reads them.

import assert from 'node:assert/strict';
import { builtinModules, createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import type { ElevationInput } from '../../main/elevation';
import { APP_ID, APP_NAME, LINUX_DESKTOP_FILE } from '../../main/window';
import { productionPackages } from '../../scripts/dist';
import { elevationInput } from '../helpers/backend';

const ROOT = path.join(__dirname, '..', '..', '..');
const fromBuilder = createRequire(
  path.join(ROOT, 'node_modules', 'app-builder-lib', 'package.json'),
);

interface FileMatcherClass {
  new (
    from: string,
    to: string,
    expand: (s: string) => string,
    patterns?: string | string[] | null,
  ): { createFilter(): (file: string, stat: { isDirectory(): boolean }) => boolean };
}
const { FileMatcher } = fromBuilder('./out/fileMatcher.js') as { FileMatcher: FileMatcherClass };
const { getConfig, validateConfiguration } = fromBuilder('./out/util/config/config.js') as {
  getConfig(projectDir: string, configPath: string | null, options: null): Promise<Config>;
  validateConfiguration(config: Config, log: { isEnabled: boolean }): Promise<void>;
};
const yaml = fromBuilder('js-yaml') as { load(text: string): unknown };
// electron-builder logs to stdout, which is the test runner's channel from this process
// (a line written there can break its framing): its lines go to stderr instead.
const { setPrinter } = fromBuilder('builder-util/out/log.js') as {
  setPrinter(printer: ((message: string) => void) | null): void;
};
setPrinter((message) => process.stderr.write(`${message}\n`));

/** A target by name, or by name with the archs it is built for. */
type Target = string | { target: string; arch?: string[] };

/** Target name → archs (the default, x64, when none are named). */
function archsOf(targets: Target[] | undefined): Record<string, string[]> {
  return Object.fromEntries(
    (targets ?? []).map((t) =>
      typeof t === 'string' ? [t, ['x64']] : [t.target, t.arch ?? ['x64']],
    ),
  );
}

/** The parts of the configuration these tests read. */
interface Config {
  appId?: string;
  productName?: string;
  directories?: { output?: string; buildResources?: string };
  files?: string[];
  asar?: boolean;
  asarUnpack?: string[];
  electronFuses?: Record<string, boolean>;
  linux?: { target?: string[]; category?: string; icon?: string; executableName?: string };
  deb?: { depends?: string[]; maintainer?: string };
  rpm?: { depends?: string[] };
  buildDependenciesFromSource?: boolean;
  npmRebuild?: boolean;
  beforeBuild?: string;
  mac?: {
    target?: Target[];
    extendInfo?: Record<string, string>;
    hardenedRuntime?: boolean;
    entitlements?: string;
    entitlementsInherit?: string;
    icon?: string;
  };
  win?: { target?: Target[]; requestedExecutionLevel?: string; icon?: string };
  nsis?: { perMachine?: boolean };
  [key: string]: unknown;
}

const CONFIG_FILE = path.join(ROOT, 'electron-builder.yml');
const config = yaml.load(fs.readFileSync(CONFIG_FILE, 'utf8')) as Config;

const NATIVE_MODULES = [
  'better-sqlite3',
  'drivelist',
  '@ronomon/direct-io',
  'zstd-napi',
  'node-liblzma',
];

// ---------------------------------------------------------------------------
// Schema

interface AjvError {
  instancePath: string;
  message?: string;
}
interface AjvInstance {
  addKeyword(def: {
    keyword: string;
    schemaType: string;
    validate: (schema: string, data: unknown) => boolean;
  }): void;
  compile(schema: unknown): ((data: unknown) => boolean) & { errors?: AjvError[] | null };
}

/** app-builder-lib's own ajv, as FACTS.md says: strict off, and its `typeof` keyword. */
function schemeValidator(): (data: unknown) => string[] {
  const { default: Ajv } = fromBuilder('ajv') as {
    default: new (opts: object) => AjvInstance;
  };
  const ajv = new Ajv({ allErrors: true, strict: false });
  ajv.addKeyword({
    keyword: 'typeof',
    schemaType: 'string',
    validate: (schema, data) => typeof data === schema,
  });
  const scheme = JSON.parse(
    fs.readFileSync(path.join(ROOT, 'node_modules', 'app-builder-lib', 'scheme.json'), 'utf8'),
  ) as unknown;
  const validate = ajv.compile(scheme);
  return (data) =>
    validate(data) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
}

describe('electron-builder.yml is a valid electron-builder configuration', () => {
  const validate = schemeValidator();

  test("it validates against app-builder-lib's scheme.json", () => {
    assert.deepEqual(validate(config), []);
  });

  test('the same schema rejects broken configurations (the check is not vacuous)', () => {
    const broken: Config[] = [
      { ...config, mac: { ...config.mac, hardenedRuntime: 'yes' as unknown as boolean } },
      { ...config, asarUnpack: 5 as unknown as string[] },
      { ...config, winn: { target: ['nsis'] } },
      { ...config, electronFuses: { runAsNodes: true } },
    ];
    for (const c of broken) assert.notDeepEqual(validate(c), [], JSON.stringify(c).slice(0, 80));
  });

  test("electron-builder's own loader reads it and its own validation accepts it", async () => {
    const loaded = await getConfig(ROOT, null, null);
    assert.equal(loaded.appId, config.appId);
    await validateConfiguration(loaded, { isEnabled: false });
  });
});

// ---------------------------------------------------------------------------
// What goes in the app, and what comes out of the asar

function matcher(patterns: string[] | undefined): (relative: string) => boolean {
  const filter = new FileMatcher(ROOT, ROOT, (s) => s, patterns).createFilter();
  return (relative) => filter(path.join(ROOT, relative), { isDirectory: () => false });
}

/** Every file under `dir` (relative to ROOT), or [] when it does not exist. */
function filesUnder(dir: string): string[] {
  const full = path.join(ROOT, dir);
  if (!fs.existsSync(full)) return [];
  return fs.readdirSync(full, { withFileTypes: true, recursive: true }).flatMap((e) => {
    if (!e.isFile()) return [];
    const parent = (e as { parentPath?: string; path?: string }).parentPath ?? e.path ?? full;
    return [path.relative(ROOT, path.join(parent, e.name))];
  });
}

describe('what electron-builder packs', () => {
  const packed = matcher(config.files);
  const unpacked = matcher(config.asarUnpack);

  test('installers go to release/, away from dist/ (which is the app)', () => {
    assert.equal(config.directories?.output, 'release');
    assert.equal(config.directories?.buildResources, 'build');
  });

  test('the app is dist/ and package.json: no tests, scripts, sources or docs', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      main?: string;
    };
    assert.equal(pkg.main, 'dist/main/index.js');
    for (const f of [
      'package.json',
      pkg.main,
      'dist/preload/index.js',
      'dist/preload/api.js',
      'dist/renderer/index.html',
      'dist/renderer/assets/index-abc.js',
      'dist/engine/host/host.js',
      'dist/engine/io/device.js',
    ]) {
      assert.ok(packed(f), `${f} is packed`);
    }
    for (const f of [
      'dist/tests/unit/electron-shell.test.js',
      'dist/scripts/bench.js',
      'tests/unit/electron-shell.test.ts',
      'engine/host/host.ts',
      'main/index.ts',
      'docs/desktop.md',
      'README.md',
      'build/icon.png',
      'scripts/test.js',
      'release/DriveTwin-0.1.0.AppImage',
    ]) {
      assert.ok(!packed(f), `${f} is left out`);
    }
  });

  test("native modules are rebuilt for each target's arch, from source, in the staged app only", () => {
    // electron-builder rebuilds node_modules for every arch before packing it, and the
    // unpacked node_modules/** then carries that arch's .node files (the next test) —
    // those of release/app, the staged copy (tests/unit/electron-dist.test.ts).
    assert.equal(config.npmRebuild, true);
    assert.equal(config.buildDependenciesFromSource, true);
    assert.equal(config.beforeBuild, './scripts/stage-guard.js');
    // The prebuilt-binary downloads stay off for `npm install` too.
    const rc = fs.readFileSync(path.join(ROOT, '.prebuild-installrc'), 'utf8');
    assert.match(rc, /^buildFromSource=true$/m);
  });

  test('the native modules are unpacked from the asar', () => {
    for (const name of NATIVE_MODULES) {
      const files = filesUnder(path.join('node_modules', name));
      assert.ok(files.length > 0, `${name} is installed`);
      for (const f of files) assert.ok(unpacked(f), `${f} is unpacked`);
      assert.ok(
        files.some((f) => f.endsWith('.node')),
        `${name} has its compiled .node file (unpacked with it)`,
      );
    }
  });

  test('the engine and every production dependency it may require are unpacked', () => {
    for (const f of [
      'dist/engine/host/host.js',
      'dist/engine/io/zst-image.js',
      // Each system's drive module, whichever system the package is for.
      'dist/engine/drives/linux.js',
      'dist/engine/drives/darwin.js',
      'dist/engine/drives/win32.js',
    ]) {
      assert.ok(unpacked(f), `${f} is unpacked`);
    }
    for (const f of filesUnder('dist/engine')) assert.ok(unpacked(f), `${f} is unpacked`);
    const packages = productionPackages();
    assert.ok(packages.size >= 8, 'the dependency closure was found');
    for (const [dir, name] of packages) {
      assert.ok(unpacked(path.join(dir, 'package.json')), `${name} (${dir}) is unpacked`);
    }
  });

  test('the window, preload and renderer stay inside the asar', () => {
    for (const f of [
      'dist/main/index.js',
      'dist/main/api.js',
      'dist/preload/index.js',
      'dist/renderer/index.html',
      'package.json',
    ]) {
      assert.ok(!unpacked(f), `${f} stays in the asar`);
    }
  });

  test('the host.js the elevated engine runs is where asarUnpack puts it', async () => {
    // Ask main/engine-host.ts itself which script it hands to the elevation prompt.
    const start = (hostScript?: string): Promise<ElevationInput> =>
      elevationInput({ dbPath: path.join(ROOT, 'nonexistent.db'), hostScript });

    // By default: dist/engine/host/host.js of the app (this checkout's dist/ here).
    const byDefault = await start();
    assert.equal(
      path.relative(ROOT, byDefault.hostScript),
      path.join('dist', 'engine', 'host', 'host.js'),
    );
    assert.ok(unpacked(path.relative(ROOT, byDefault.hostScript)));

    // Packaged: the same path inside app.asar becomes its twin in app.asar.unpacked.
    const resources = path.join(path.sep, 'opt', 'DriveTwin', 'resources');
    const packaged = await start(
      path.join(resources, 'app.asar', 'dist', 'engine', 'host', 'host.js'),
    );
    assert.equal(
      packaged.hostScript,
      path.join(resources, 'app.asar.unpacked', 'dist', 'engine', 'host', 'host.js'),
    );
  });
});

// ---------------------------------------------------------------------------
// Every module the app loads at run time must be packed

/** Bare modules `file` (TypeScript) and what it imports at run time pull in. */
function runtimePackages(entries: string[]): Map<string, string> {
  const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
  const needed = new Map<string, string>(); // package → first file that needs it
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = fs.readFileSync(file, 'utf8');
    const specifiers = [
      // import … from '…' (not `import type`), import '…', export … from '…'
      ...source.matchAll(/^\s*(?:import|export)\s+(?!type\b)(?:[^;'"]*?\bfrom\s+)?'([^']+)'/gm),
      ...source.matchAll(/\brequire\('([^']+)'\)/g),
    ].map((m) => m[1]);
    for (const spec of specifiers) {
      if (spec.startsWith('.')) {
        const base = path.resolve(path.dirname(file), spec);
        const resolved = [`${base}.ts`, path.join(base, 'index.ts')].find((p) => fs.existsSync(p));
        if (resolved) visit(resolved);
        continue;
      }
      if (builtins.has(spec) || builtins.has(spec.split('/')[0]) || spec === 'electron') continue;
      const name = spec.startsWith('@')
        ? spec.split('/').slice(0, 2).join('/')
        : spec.split('/')[0];
      if (!needed.has(name)) needed.set(name, path.relative(ROOT, file));
    }
  };
  for (const e of entries) visit(path.join(ROOT, e));
  return needed;
}

test('every package the app loads at run time is a production dependency (so it is packed)', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  // The app's entry points: the main process, the preload, the engine host it forks.
  const needed = runtimePackages(['main/index.ts', 'preload/index.ts', 'engine/host/host.ts']);
  assert.ok(needed.has('better-sqlite3'), 'the import walk reaches the engine');
  const missing = [...needed]
    .filter(([name]) => !(name in pkg.dependencies))
    .map(([name, file]) => `${name} (imported by ${file})`);
  assert.deepEqual(missing, [], 'move these from devDependencies to dependencies');
});

// ---------------------------------------------------------------------------
// Per platform

describe('per platform', () => {
  test('Linux: AppImage, deb and rpm, category System, the deb and the rpm depend on pkexec', () => {
    assert.deepEqual(config.linux?.target, ['AppImage', 'deb', 'rpm']);
    assert.equal(config.linux?.category, 'System');
    const depends = config.deb?.depends ?? [];
    const polkit = depends.find((d) => /\bpkexec\b/.test(d));
    assert.ok(polkit, 'the deb depends on pkexec');
    assert.deepEqual(
      polkit.split('|').map((s) => s.trim()),
      ['pkexec', 'policykit-1'],
      'pkexec (Debian 12 and later) or policykit-1 (older releases)',
    );
    // `depends` replaces electron-builder's list: Electron's own libraries must stay.
    for (const lib of ['libgtk-3-0', 'libnss3', 'libnotify4', 'xdg-utils']) {
      assert.ok(depends.includes(lib), `the deb still depends on ${lib}`);
    }
    // The rpm names the program: Fedora's polkit and openSUSE's pkexec both provide it.
    const rpm = config.rpm?.depends ?? [];
    assert.ok(rpm.includes('/usr/bin/pkexec'), 'the rpm depends on /usr/bin/pkexec');
    assert.ok(rpm.includes('libbz2.so.1()(64bit)'), 'and on libbzip2, which koffi loads');
    for (const lib of ['gtk3', 'nss', 'libnotify', 'xdg-utils']) {
      assert.ok(rpm.includes(lib), `the rpm still depends on ${lib}`);
    }
  });

  test('the deb can be built: it has a homepage and a maintainer with an email', () => {
    // electron-builder's deb target refuses to build without them (FpmTarget).
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      homepage?: string;
      repository?: unknown;
      author?: { email?: string } | string;
    };
    assert.ok(pkg.homepage || pkg.repository, 'package.json needs "homepage" (or "repository")');
    const authorEmail =
      typeof pkg.author === 'string'
        ? /<[^>]+@[^>]+>/.test(pkg.author)
        : Boolean(pkg.author?.email);
    assert.ok(
      config.deb?.maintainer || authorEmail,
      'package.json needs "author" with an email (or electron-builder.yml deb.maintainer)',
    );
  });

  test('macOS: a dmg for Apple silicon and one for Intel, hardened runtime, entitlements from build/', () => {
    assert.deepEqual(archsOf(config.mac?.target), { dmg: ['arm64', 'x64'] });
    // Said when macOS asks about removable volumes (the engine names Full Disk Access itself).
    assert.match(config.mac?.extendInfo?.NSRemovableVolumesUsageDescription ?? '', /drives/);
    assert.equal(config.mac?.hardenedRuntime, true);
    assert.equal(config.mac?.entitlements, 'build/entitlements.mac.plist');
    const plist = fs.readFileSync(path.join(ROOT, 'build', 'entitlements.mac.plist'), 'utf8');
    const granted = [...plist.matchAll(/<key>([^<]+)<\/key>\s*<true\/>/g)].map((m) => m[1]);
    assert.deepEqual(granted.sort(), [
      'com.apple.security.cs.allow-jit',
      'com.apple.security.cs.allow-unsigned-executable-memory',
      'com.apple.security.cs.disable-library-validation',
    ]);
  });

  test('Windows: nsis for x64, the app runs asInvoker, installed per machine', () => {
    assert.deepEqual(archsOf(config.win?.target), { nsis: ['x64'] });
    assert.equal(config.win?.requestedExecutionLevel, 'asInvoker');
    assert.equal(config.nsis?.perMachine, true);
  });

  test('fuses: Node mode stays on for the elevated engine; NODE_OPTIONS and --inspect are off', () => {
    assert.equal(config.electronFuses?.runAsNode, true);
    assert.equal(config.electronFuses?.enableNodeOptionsEnvironmentVariable, false);
    assert.equal(config.electronFuses?.enableNodeCliInspectArguments, false);
  });

  test('identity: appId and productName, as the app calls itself', () => {
    assert.equal(config.appId, 'org.drivetwin.app');
    assert.equal(config.productName, 'DriveTwin');
    // Windows notifications need the installer's AppUserModelID; Linux taskbar progress
    // the .desktop file's name.
    assert.equal(APP_ID, config.appId);
    assert.equal(APP_NAME, config.productName);
    assert.equal(LINUX_DESKTOP_FILE, `${config.linux?.executableName}.desktop`);
  });
});

// ---------------------------------------------------------------------------
// Icons

function pngSize(file: string): { width: number; height: number } {
  const head = fs.readFileSync(file).subarray(0, 24);
  assert.equal(head.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', `${file} is a PNG`);
  assert.equal(head.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: head.readUInt32BE(16), height: head.readUInt32BE(20) };
}

test('the icon set: build/icons/NxN.png from 16 to 1024, build/icon.png at 512', () => {
  for (const n of [16, 24, 32, 48, 64, 128, 256, 512, 1024]) {
    assert.deepEqual(pngSize(path.join(ROOT, 'build', 'icons', `${n}x${n}.png`)), {
      width: n,
      height: n,
    });
  }
  assert.deepEqual(pngSize(path.join(ROOT, 'build', 'icon.png')), { width: 512, height: 512 });
  assert.equal(config.linux?.icon, 'build/icons');
  // electron-builder derives .icns and .ico from these on the build machine.
  assert.deepEqual(pngSize(path.join(ROOT, config.mac?.icon ?? '')).width, 1024);
  assert.deepEqual(pngSize(path.join(ROOT, config.win?.icon ?? '')).width, 256);
});
