import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder of passthru's package.json, found by walking up from this module's file, and
 * that package.json, read once. The code runs from dist/src/ (tests), from the CLI bundle in
 * dist/bundle/ (scripts/bundle.ts) and from an image's copy of either: resources beside the
 * package (proto/, topologies/) are found from here, not from a fixed number of `..`.
 */
let found: { root: string; pkg: Record<string, unknown> } | null | undefined;

function find(): { root: string; pkg: Record<string, unknown> } | null {
  if (found !== undefined) return found;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
      if (typeof pkg === 'object' && pkg !== null && 'name' in pkg && pkg.name === 'passthru')
        return (found = { root: dir, pkg });
    } catch {
      // No package.json here, or not a readable one: look further up.
    }
    const up = path.dirname(dir);
    if (up === dir) return (found = null);
    dir = up;
  }
}

/** The package's root folder; without a package.json, the folder that holds dist/. */
export function packageRoot(): string {
  const root = find()?.root;
  if (root !== undefined) return root;
  const here = fileURLToPath(import.meta.url);
  const dist = here.lastIndexOf(`${path.sep}dist${path.sep}`);
  return dist > 0 ? here.slice(0, dist) : path.dirname(here);
}

/** passthru's version as package.json says; 'unknown' without one. */
export function packageVersion(): string {
  const v = find()?.pkg.version;
  return typeof v === 'string' ? v : 'unknown';
}
