// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Only the host adapters may touch the OS; everything above them goes through the HostPort.
const osModules = ['fs', 'fs/promises', 'child_process', 'net', 'dgram', 'os'].flatMap((m) => [
  m,
  `node:${m}`,
]);

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
    ignores: [
      'src/host/**',
      'src/main.ts',
      'src/agent/socket*.ts',
      'src/state/file-*.ts',
      'src/deviceplugin/plugin-dir.ts',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: osModules.map((name) => ({
            name,
            message: 'OS access belongs in src/host (the HostPort) or the process adapters.',
          })),
        },
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
