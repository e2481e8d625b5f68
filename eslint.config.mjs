import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';
import svelte from 'eslint-plugin-svelte';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bin/', 'scripts/*.js'] },
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
  {
    // engine/ runs under plain Node: it must never reach for Electron.
    files: ['engine/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: ['electron'] }],
    },
  },
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
