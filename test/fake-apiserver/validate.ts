import type { JsonSchema } from '../../src/k8s/schemas.js';
import type { Obj } from './selectors.js';

/**
 * OpenAPI v3 structural-schema checks as the API server applies them to custom resources:
 * pruning of unknown fields (or a strict-decoding error with fieldValidation=Strict), types,
 * nullable, pattern, enum, lengths, minimum, required, and x-kubernetes-validations.
 *
 * CEL twin: the fake evaluates only the rules it knows (`self == oldSelf`, a transition rule
 * skipped on create, as the real server does). Any other rule makes the fake refuse to load the
 * CRD, so a new rule cannot pass here unevaluated.
 */

export interface FieldError {
  field: string;
  message: string;
}

const KNOWN_RULES = new Set(['self == oldSelf']);

export function checkRulesSupported(s: JsonSchema, at = ''): void {
  for (const r of s['x-kubernetes-validations'] ?? []) {
    if (!KNOWN_RULES.has(r.rule))
      throw new Error(`fake apiserver: unsupported CEL rule at ${at}: ${r.rule}`);
  }
  for (const [k, v] of Object.entries(s.properties ?? {})) checkRulesSupported(v, `${at}.${k}`);
  if (s.items) checkRulesSupported(s.items, `${at}[]`);
}

function typeOk(s: JsonSchema, v: unknown): boolean {
  switch (s.type) {
    case 'object':
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    case 'array':
      return Array.isArray(v);
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'boolean':
      return typeof v === 'boolean';
    default:
      return true;
  }
}

export interface ValidateOptions {
  strict: boolean;
  /** The stored object, for transition rules; undefined on create. */
  old: unknown;
}

/**
 * Prunes `v` in place (unknown fields) and returns the errors. Root `metadata` is handled by
 * the server, not here.
 */
export function validate(
  s: JsonSchema,
  v: unknown,
  opts: ValidateOptions,
  path = '',
  errors: FieldError[] = [],
): FieldError[] {
  if (v === null) {
    if (s.nullable !== true) errors.push({ field: path, message: 'Invalid value: "null"' });
    return errors;
  }
  if (!typeOk(s, v)) {
    errors.push({ field: path, message: `Invalid value: must be of type ${s.type ?? 'any'}` });
    return errors;
  }
  if (typeof v === 'string') {
    if (s.pattern !== undefined && !new RegExp(s.pattern).test(v)) {
      errors.push({ field: path, message: `Invalid value: "${v}": should match '${s.pattern}'` });
    }
    if (s.enum && !s.enum.includes(v)) {
      errors.push({ field: path, message: `Unsupported value: "${v}"` });
    }
    if (s.minLength !== undefined && v.length < s.minLength) {
      errors.push({
        field: path,
        message: `Invalid value: should be at least ${s.minLength} chars long`,
      });
    }
    if (s.maxLength !== undefined && v.length > s.maxLength) {
      errors.push({ field: path, message: `Too long: may not be more than ${s.maxLength} bytes` });
    }
  }
  if (typeof v === 'number' && s.minimum !== undefined && v < s.minimum) {
    errors.push({
      field: path,
      message: `Invalid value: should be greater than or equal to ${s.minimum}`,
    });
  }
  if (s.type === 'object' && s.properties !== undefined) {
    const o = v as Obj;
    for (const req of s.required ?? []) {
      if (!(req in o)) errors.push({ field: `${path}.${req}`, message: 'Required value' });
    }
    for (const k of Object.keys(o)) {
      const sub = s.properties[k];
      if (sub === undefined) {
        if (path === '' && k === 'metadata') continue;
        if (opts.strict)
          errors.push({
            field: `${path}.${k}`,
            message: `unknown field "${path.slice(1)}${path === '' ? '' : '.'}${k}"`,
          });
        Reflect.deleteProperty(o, k);
        continue;
      }
      const oldSub =
        opts.old !== null && typeof opts.old === 'object' ? (opts.old as Obj)[k] : undefined;
      validate(sub, o[k], { strict: opts.strict, old: oldSub }, `${path}.${k}`, errors);
    }
  }
  if (s.type === 'array' && s.items) {
    (v as unknown[]).forEach((item, i) => {
      if (s.items)
        validate(s.items, item, { strict: opts.strict, old: undefined }, `${path}[${i}]`, errors);
    });
  }
  for (const r of s['x-kubernetes-validations'] ?? []) {
    // Transition rule: only when the field existed before.
    if (r.rule === 'self == oldSelf' && opts.old !== undefined && opts.old !== null) {
      if (JSON.stringify(v) !== JSON.stringify(opts.old)) {
        errors.push({ field: path, message: `Invalid value: "string": ${r.message}` });
      }
    }
  }
  return errors;
}
