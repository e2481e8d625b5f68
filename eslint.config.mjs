import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';
import svelte from 'eslint-plugin-svelte';
import globals from 'globals';

/** The engine's rooms above the devices (io, drives, partitions, filesystems). */
const ABOVE_DEVICES = ['store', 'hydration', 'serve', 'session', 'host', 'cli'];

/** One no-restricted-imports rule per room: Electron, and the rooms it must not reach. */
function engineLayers(rooms) {
  return rooms.map(([files, above]) => ({
    files,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['electron'],
          patterns: above.length
            ? [
                {
                  regex: `^(\\.\\.?/)+(${above.join('|')})/`,
                  message: 'a lower room of engine/ never imports from a room above it',
                },
              ]
            : [],
        },
      ],
    },
  }));
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bin/', 'scripts/*.js', 'electron-native/', 'release/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...svelte.configs.recommended,
  prettier,
  ...svelte.configs.prettier,
  {
    // Components and rune modules: TypeScript inside, browser globals.
    files: ['renderer/**/*.svelte', 'renderer/**/*.svelte.ts'],
    languageOptions: {
      parserOptions: { parser: tseslint.parser, extraFileExtensions: ['.svelte'] },
      globals: globals.browser,
    },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  // engine/ runs under plain Node: it must never reach for Electron. Its rooms are
  // layered (README, "How it is built"): each imports only from its own room, the
  // top-level files and the rooms below it, never from a room above.
  ...engineLayers([
    [['engine/*.ts'], ['io', 'drives', 'partitions', 'filesystems', ...ABOVE_DEVICES]],
    [['engine/{io,drives,partitions,filesystems}/**/*.ts'], ABOVE_DEVICES],
    [['engine/store/**/*.ts'], ['hydration', 'serve', 'session', 'host', 'cli']],
    [['engine/hydration/**/*.ts'], ['serve', 'session', 'host', 'cli']],
    [['engine/serve/**/*.ts'], ['session', 'host', 'cli']],
    [['engine/session/**/*.ts'], ['host', 'cli']],
    [['engine/host/**/*.ts'], ['cli']],
    [['engine/cli/**/*.ts'], []],
  ]),
  {
    // main/ is plain Node (tests and the web bridge load it) except the thin Electron
    // files; preload/api.ts and preload/events.ts are the contract, types and constants only.
    files: ['main/**/*.ts', 'preload/api.ts', 'preload/events.ts'],
    ignores: ['main/index.ts', 'main/ipc.ts', 'main/electron-*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: ['electron'] }],
    },
  },
  {
    // The browser side knows only the contract.
    files: ['renderer/bridge-client.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: ['electron'], patterns: ['node:*', '../main/*', '../engine/*'] },
      ],
    },
  },
);
