// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// OS access lives in two folders: src/host (the HostPort: sysfs, procfs, modprobe, the clock)
// and src/process (the process adapters: state files, sockets, signals, the device-plugin
// folder), plus the composition root src/main.ts. Restricted by folder, so a new file anywhere
// else cannot reach the OS by accident.
const osModules = [
  'fs',
  'fs/promises',
  'child_process',
  'net',
  'dgram',
  'os',
  'http',
  'https',
  'http2',
  'tls',
  'worker_threads',
  'cluster',
].flatMap((m) => [m, `node:${m}`]);

// The core (engine, keeper, model, stores, events, schemas) reads no environment, no wall clock
// and sets no timers of its own: time comes from the injected Clock.
const coreFolders = [
  'engine',
  'keeper',
  'pci',
  'state',
  'events',
  'topology',
  'kernel',
  'schema',
  'doctor',
  'agent',
].map((f) => `src/${f}/**/*.ts`);
const coreGlobals = [
  'process',
  'setTimeout',
  'setInterval',
  'setImmediate',
  'clearTimeout',
  'clearInterval',
  'clearImmediate',
].map((name) => ({ name, message: 'The core gets time and the process through injected ports.' }));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      'no-console': 'error',
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', name: ['test', 'describe', 'it', 'suite'], package: 'node:test' },
          ],
        },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/host/**', 'src/process/**', 'src/main.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: osModules.map((name) => ({
            name,
            message:
              'OS access belongs in src/host (the HostPort) or src/process (the process adapters).',
          })),
        },
      ],
    },
  },
  {
    files: coreFolders,
    ignores: ['src/**/*.test.ts'],
    rules: {
      'no-restricted-globals': ['error', ...coreGlobals],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'Time comes from the injected Clock.' },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'src/**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-console': 'off',
    },
  },
);
