import { Type, type Static } from '@sinclair/typebox';
import { ModuleNameSchema } from '../schema/names.js';

/**
 * The API's request bodies, in one place, as typebox schemas (src/schema/): fastify validates
 * every body with them before a handler runs, and the handlers' types are Static<> of the same
 * schemas. Addresses are only bounded here: parsePciAddress checks them, so a bad one answers
 * PT_ERR_INVALID_ADDRESS like everywhere else.
 */
const Address = Type.String({ minLength: 1, maxLength: 64 });
const Addresses = Type.Array(Address, { minItems: 1, maxItems: 4096 });
const Times = Type.Integer({ minimum: 1, maximum: 1_000_000 });
const closed = { additionalProperties: false } as const;

export const ClaimBody = Type.Object(
  {
    addresses: Addresses,
    withGroup: Type.Optional(Type.Boolean()),
    force: Type.Optional(Type.Boolean()),
    acceptChange: Type.Optional(Type.Boolean()),
    source: Type.Optional(Type.Union([Type.Literal('cli'), Type.Literal('api')])),
  },
  closed,
);
export type ClaimBody = Static<typeof ClaimBody>;

export const ReleaseBody = Type.Object(
  {
    addresses: Addresses,
    wait: Type.Optional(Type.Boolean()),
    abandon: Type.Optional(Type.Boolean()),
  },
  closed,
);
export type ReleaseBody = Static<typeof ReleaseBody>;

export const SimModuleBody = Type.Object({ module: ModuleNameSchema }, closed);
export type SimModuleBody = Static<typeof SimModuleBody>;
export const SimRmmodBody = Type.Object(
  { module: ModuleNameSchema, linger: Type.Optional(Type.Boolean()) },
  closed,
);
export type SimRmmodBody = Static<typeof SimRmmodBody>;
export const SimAvailableBody = Type.Object(
  { module: ModuleNameSchema, available: Type.Optional(Type.Boolean()) },
  closed,
);
export const SimFailLoadBody = Type.Object(
  { module: ModuleNameSchema, times: Type.Optional(Times) },
  closed,
);
export type SimFailLoadBody = Static<typeof SimFailLoadBody>;

export const SIM_WRITE_OPS = [
  'driver_override',
  'sriov_numvfs',
  'remove',
  'unbind',
  'bind',
  'drivers_probe',
  'rescan',
] as const;

export const SimFailWriteBody = Type.Object(
  {
    op: Type.Union(SIM_WRITE_OPS.map((op) => Type.Literal(op))),
    errno: Type.String({ pattern: '^E[A-Z0-9]{1,15}$' }),
    address: Type.Optional(Address),
    times: Type.Optional(Times),
  },
  closed,
);
export type SimFailWriteBody = Static<typeof SimFailWriteBody>;

export const SimDeviceBody = Type.Object({ address: Address }, closed);
export type SimDeviceBody = Static<typeof SimDeviceBody>;
