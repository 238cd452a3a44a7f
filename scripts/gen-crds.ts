// Writes the CRDs and the admission policy generated from src/k8s/ under deploy/.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedManifests } from '../src/k8s/manifests.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
for (const [rel, text] of Object.entries(generatedManifests())) {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  process.stdout.write(`wrote ${rel}\n`);
}
