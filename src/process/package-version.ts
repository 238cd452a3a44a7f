import { readFileSync } from 'node:fs';

/**
 * passthru's version as package.json says, read once. The built file sits at
 * dist/src/process/, the source at src/process/: package.json is found by walking up.
 */
let cached: string | null = null;

export function packageVersion(): string {
  if (cached !== null) return cached;
  for (const up of ['../../../package.json', '../../package.json']) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8'));
      if (typeof pkg === 'object' && pkg !== null && 'name' in pkg && pkg.name === 'passthru') {
        const v = 'version' in pkg ? pkg.version : undefined;
        if (typeof v === 'string') return (cached = v);
      }
    } catch {
      // Not at this level: try the next one up.
    }
  }
  return (cached = 'unknown');
}
