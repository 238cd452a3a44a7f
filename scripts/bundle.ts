/**
 * Bundles the CLI (dist/src/main.js, as tsc built it) and commander into dist/bundle/: the
 * `passthru` that package.json's bin, the image and the process tests run. Node 20 loads
 * ES modules one file at a time (a resolve, a realpath and a package scope lookup each) and
 * commander through the CommonJS loader: one file for what `passthru list` needs took
 * `list --json` on 1000 functions from 163.6 to 155.9 ms (issue 11, docs/adr/0011). What only some
 * commands use (the agent, the API server) stays in chunks loaded on demand, and every other
 * package stays in node_modules, loaded as before: fastify, gRPC and the Kubernetes client
 * resolve files of their own at run time.
 */
import { chmodSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};
const BUNDLED = new Set(['commander']);
const external = Object.keys(pkg.dependencies)
  .filter((d) => !BUNDLED.has(d))
  .flatMap((d) => [d, `${d}/*`]);

const outdir = path.join(root, 'dist', 'bundle');
await build({
  entryPoints: { passthru: path.join(root, 'dist', 'src', 'main.js') },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  // commander is CommonJS and requires Node's built-ins: an ES module has no `require`.
  banner: {
    js: "import { createRequire as __ptCreateRequire } from 'node:module'; const require = __ptCreateRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  logLevel: 'warning',
});
chmodSync(path.join(outdir, 'passthru.js'), 0o755);
