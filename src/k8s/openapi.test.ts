import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Type } from '@sinclair/typebox';
import { NullableString } from '../schema/k8s.js';
import { crdSchema } from './openapi.js';

test('crdSchema: X | null becomes nullable, string literals an enum, root metadata {type: object}, nothing required at the root', () => {
  const kind = Type.Object({
    metadata: Type.Object({ name: Type.String({ minLength: 1 }) }),
    spec: Type.Object({
      address: NullableString('where', { pattern: '^a$' }),
      mode: Type.Optional(Type.Union([Type.Literal('on'), Type.Literal('off')])),
      n: Type.Optional(Type.Integer({ minimum: 0 })),
    }),
  });
  assert.deepEqual(crdSchema(kind), {
    type: 'object',
    properties: {
      metadata: { type: 'object' },
      spec: {
        type: 'object',
        required: ['address'],
        properties: {
          address: { type: 'string', nullable: true, description: 'where', pattern: '^a$' },
          mode: { type: 'string', enum: ['on', 'off'] },
          n: { type: 'integer', minimum: 0 },
        },
      },
    },
  });
});

test('crdSchema: shapes a structural schema cannot hold (a map, a union of objects) fail the generation with their path', () => {
  assert.throws(
    () =>
      crdSchema(
        Type.Object({ spec: Type.Object({ m: Type.Record(Type.String(), Type.String()) }) }),
      ),
    /\/spec\/m .*patternProperties/,
  );
  assert.throws(
    () =>
      crdSchema(
        Type.Object({ spec: Type.Union([Type.Object({ a: Type.String() }), Type.Object({})]) }),
      ),
    /\/spec .*union/,
  );
});
