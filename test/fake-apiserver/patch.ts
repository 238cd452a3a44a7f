import type { Obj } from './selectors.js';

export class PatchError extends Error {
  constructor(
    message: string,
    readonly code = 422,
  ) {
    super(message);
  }
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Obj =
    target !== null && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Obj) }
      : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) Reflect.deleteProperty(out, k);
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

interface Op {
  op: string;
  path: string;
  value?: unknown;
  from?: string;
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new PatchError(`invalid JSON pointer ${path}`);
  return path
    .slice(1)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc: unknown, parts: string[]): { parent: Obj | unknown[]; key: string } {
  const parent = parts.slice(0, -1).reduce<unknown>((cur, p) => {
    if (cur === null || typeof cur !== 'object')
      throw new PatchError(`path not found: /${parts.join('/')}`);
    return Array.isArray(cur) ? cur[Number(p)] : (cur as Obj)[p];
  }, doc);
  if (parent === null || typeof parent !== 'object') {
    throw new PatchError(`path not found: /${parts.join('/')}`);
  }
  return { parent: parent as Obj | unknown[], key: parts[parts.length - 1] ?? '' };
}

/** RFC 6902 JSON patch, including `test` (the guard clients use for finalizers). */
export function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new PatchError('json patch must be an array', 400);
  let out: unknown = structuredClone(doc);
  for (const raw of ops as Op[]) {
    const parts = pointer(raw.path);
    if (parts.length === 0) {
      if (raw.op === 'replace' || raw.op === 'add') out = structuredClone(raw.value);
      else if (raw.op === 'test') {
        if (JSON.stringify(out) !== JSON.stringify(raw.value)) throw new PatchError('test failed');
      } else throw new PatchError(`unsupported op ${raw.op} on the root`);
      continue;
    }
    const { parent, key } = parentOf(out, parts);
    const arr = Array.isArray(parent) ? parent : null;
    const idx = arr ? (key === '-' ? arr.length : Number(key)) : -1;
    switch (raw.op) {
      case 'add':
        if (arr) arr.splice(idx, 0, structuredClone(raw.value));
        else (parent as Obj)[key] = structuredClone(raw.value);
        break;
      case 'replace':
        if (arr ? idx >= arr.length : !(key in parent)) {
          throw new PatchError(`replace operation does not apply: doc is missing key: ${raw.path}`);
        }
        if (arr) arr[idx] = structuredClone(raw.value);
        else (parent as Obj)[key] = structuredClone(raw.value);
        break;
      case 'remove':
        if (arr ? idx >= arr.length : !(key in parent)) {
          throw new PatchError(`remove operation does not apply: doc is missing path: ${raw.path}`);
        }
        if (arr) arr.splice(idx, 1);
        else Reflect.deleteProperty(parent, key);
        break;
      case 'test': {
        const v = parts.reduce<unknown>(
          (cur, p) =>
            cur !== null && typeof cur === 'object'
              ? Array.isArray(cur)
                ? cur[Number(p)]
                : (cur as Obj)[p]
              : undefined,
          out,
        );
        if (JSON.stringify(v) !== JSON.stringify(raw.value)) {
          throw new PatchError(`testing value ${raw.path} failed`);
        }
        break;
      }
      default:
        throw new PatchError(`unsupported json patch op ${raw.op}`, 400);
    }
  }
  return out;
}
