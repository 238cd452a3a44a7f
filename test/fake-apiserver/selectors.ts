/**
 * Label and field selectors as the API server parses them. Field selectors are limited the way
 * the real server limits them: only the fields a resource declares (metadata.name,
 * metadata.namespace, and a CRD's selectableFields); anything else is a 400.
 */

export type Obj = Record<string, unknown>;

export function getPath(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const part of dotted.replace(/^\./, '').split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Obj)[part];
  }
  return cur;
}

/** How the server renders a scalar field for selectors and table cells. */
export function scalar(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return '';
}

export type Matcher = (o: Obj) => boolean;

export class SelectorError extends Error {}

export function parseFieldSelector(sel: string | null, allowed: readonly string[]): Matcher {
  if (sel === null || sel === '') return () => true;
  const terms = sel.split(',').map((t) => {
    const m = /^([^!=]+)(==|!=|=)(.*)$/.exec(t.trim());
    if (!m) throw new SelectorError(`invalid field selector: ${t}`);
    const [, field = '', op, value = ''] = m;
    if (!allowed.includes(field)) {
      throw new SelectorError(`field label not supported: ${field}`);
    }
    return { field, neg: op === '!=', value };
  });
  return (o) =>
    terms.every((t) => {
      const s = scalar(getPath(o, t.field));
      return t.neg ? s !== t.value : s === t.value;
    });
}

export function parseLabelSelector(sel: string | null): Matcher {
  if (sel === null || sel === '') return () => true;
  // Split on commas outside parentheses.
  const terms: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of sel) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      terms.push(cur);
      cur = '';
    } else cur += ch;
  }
  terms.push(cur);
  const tests = terms.map((raw): ((l: Record<string, string>) => boolean) => {
    const t = raw.trim();
    let m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(t);
    if (m) {
      const key = m[1] ?? '';
      const vals = (m[3] ?? '').split(',').map((v) => v.trim());
      const notin = m[2] === 'notin';
      return (l) => (notin ? !vals.includes(l[key] ?? '\0') : vals.includes(l[key] ?? '\0'));
    }
    m = /^([\w./-]+)\s*(==|!=|=)\s*([\w.-]*)$/.exec(t);
    if (m) {
      const key = m[1] ?? '';
      const val = m[3] ?? '';
      return m[2] === '!=' ? (l) => l[key] !== val : (l) => l[key] === val;
    }
    m = /^(!?)([\w./-]+)$/.exec(t);
    if (m) {
      const key = m[2] ?? '';
      return m[1] === '!' ? (l) => !(key in l) : (l) => key in l;
    }
    throw new SelectorError(`unable to parse requirement: ${t}`);
  });
  return (o) => {
    const labels = (getPath(o, 'metadata.labels') ?? {}) as Record<string, string>;
    return tests.every((f) => f(labels));
  };
}
