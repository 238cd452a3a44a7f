import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { packageRoot, packageVersion } from './package-root.js';

test("packageVersion() is package.json's version, found from the built file's folder", () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  assert.match(pkg.version, /^\d+\.\d+\.\d+/);
  assert.equal(packageVersion(), pkg.version);
});

test('packageRoot() is the folder holding package.json, from dist/src/process/', () => {
  assert.equal(packageRoot(), path.resolve('.'));
});
