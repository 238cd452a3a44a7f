import type { TSchema } from '@sinclair/typebox';

/**
 * The OpenAPI v3 subset a CRD's structural schema accepts. typebox writes JSON Schema; this
 * file turns the schema layer's k8s schemas (src/schema/k8s.ts) into it, so the CRDs and the
 * checks on incoming objects come from one definition.
 */
export interface JsonSchema {
  type?: 'object' | 'string' | 'integer' | 'boolean' | 'array';
  nullable?: boolean;
  description?: string;
  pattern?: string;
  format?: string;
  enum?: string[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  required?: string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  'x-kubernetes-validations'?: { rule: string; message: string }[];
  'x-kubernetes-list-type'?: 'map' | 'set' | 'atomic';
  'x-kubernetes-list-map-keys'?: string[];
}

type Raw = Record<string, unknown>;

const COPIED = [
  'description',
  'pattern',
  'format',
  'minLength',
  'maxLength',
  'minimum',
  'x-kubernetes-validations',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
] as const;

function fail(at: string, what: string): never {
  throw new Error(`schema at ${at === '' ? '/' : at} cannot be a CRD schema: ${what}`);
}

/**
 * One schema node. Handled: objects (no additionalProperties: the API server prunes), arrays,
 * strings, integers, booleans, a union of string literals (enum), and `X | null` (nullable).
 * Anything else throws, so a schema the API server would reject never reaches deploy/.
 */
function convert(s: Raw, at: string): JsonSchema {
  const anyOf = s.anyOf as Raw[] | undefined;
  if (anyOf !== undefined) {
    const nonNull = anyOf.filter((x) => x.type !== 'null');
    if (nonNull.length === 1 && anyOf.length === 2) {
      const inner = convert(nonNull[0] as Raw, at);
      return order({
        ...inner,
        nullable: true,
        ...(s.description !== undefined ? { description: s.description as string } : {}),
      });
    }
    if (anyOf.every((x) => typeof x.const === 'string'))
      return order({
        type: 'string',
        enum: anyOf.map((x) => x.const as string),
        ...(s.description !== undefined ? { description: s.description as string } : {}),
      });
    fail(at, 'a union other than X | null or string literals');
  }
  const out: JsonSchema = {};
  switch (s.type) {
    case 'object': {
      out.type = 'object';
      const props = s.properties as Record<string, Raw> | undefined;
      if (s.patternProperties !== undefined) fail(at, 'patternProperties (a map)');
      if (props !== undefined && Object.keys(props).length > 0) {
        out.properties = Object.fromEntries(
          Object.entries(props).map(([k, v]) => [k, convert(v, `${at}/${k}`)]),
        );
      }
      const req = s.required as string[] | undefined;
      if (req !== undefined && req.length > 0) out.required = [...req];
      break;
    }
    case 'array':
      out.type = 'array';
      out.items = convert(s.items as Raw, `${at}/items`);
      break;
    case 'string':
    case 'integer':
    case 'boolean':
      out.type = s.type;
      break;
    default:
      fail(at, `type ${JSON.stringify(s.type)}`);
  }
  for (const k of COPIED) if (s[k] !== undefined) (out as Raw)[k] = s[k];
  return order(out);
}

const ORDER = [
  'type',
  'nullable',
  'description',
  'enum',
  'pattern',
  'format',
  'minLength',
  'maxLength',
  'minimum',
  'required',
  'properties',
  'items',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-validations',
];

/** A fixed key order, so the generated YAML does not depend on how a schema was written. */
function order(s: JsonSchema): JsonSchema {
  const src: Raw = { ...s };
  const out: Raw = {};
  for (const k of ORDER) if (src[k] !== undefined) out[k] = src[k];
  return out;
}

/**
 * A kind's openAPIV3Schema from its typebox schema. The root `metadata` is the API server's
 * own (a CRD may only say `type: object` there), whatever the code checks in it.
 */
export function crdSchema(kind: TSchema): JsonSchema {
  const raw = kind as unknown as Raw;
  const props = { ...(raw.properties as Record<string, Raw>) };
  // The API server requires nothing at the root: an object without status is a valid object.
  const rest = Object.fromEntries(Object.entries(props).filter(([k]) => k !== 'metadata'));
  const root = convert({ ...raw, properties: rest, required: [] }, '');
  if ('metadata' in props && root.properties !== undefined) {
    const converted = root.properties;
    const out: Record<string, JsonSchema> = {};
    for (const k of Object.keys(props)) {
      const v = k === 'metadata' ? { type: 'object' as const } : converted[k];
      if (v !== undefined) out[k] = v;
    }
    root.properties = out;
  }
  return root;
}
