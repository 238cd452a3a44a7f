import { Type, type Static } from '@sinclair/typebox';
import { ModuleNameSchema } from './names.js';

/**
 * Request bodies of the agent's API. fastify validates every body with these before a handler
 * runs (src/agent/routes.ts); the request types below come from the same schemas.
 */

/** A PCI address is parsed again by parsePciAddress (which trims and lowercases): the schema only bounds the shape. */
const address = Type.String({ minLength: 1, maxLength: 64 });
const addresses = Type.Array(address, { minItems: 1, maxItems: 4096 });
const times = Type.Integer({ minimum: 1, maximum: 1_000_000 });

export const ClaimBodySchema = Type.Object(
  {
    addresses,
    withGroup: Type.Optional(Type.Boolean()),
    force: Type.Optional(Type.Boolean()),
    /** Take the card that now sits at a claimed address (after a swap). */
    acceptChange: Type.Optional(Type.Boolean()),
    /** Who asks: recorded with the claim (the Kubernetes adapter writes its own). */
    source: Type.Optional(Type.Union([Type.Literal('cli'), Type.Literal('api')])),
  },
  { additionalProperties: false },
);

export const ReleaseBodySchema = Type.Object(
  {
    addresses,
    /** Keep the release pending while a VM holds the device, instead of refusing. */
    wait: Type.Optional(Type.Boolean()),
    /** Give up restoring: drop the ledger entries, write nothing. */
    abandon: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const SimModuleBodySchema = Type.Object(
  { module: ModuleNameSchema },
  { additionalProperties: false },
);

export const SimRmmodBodySchema = Type.Object(
  { module: ModuleNameSchema, linger: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

export const SimAvailableBodySchema = Type.Object(
  { module: ModuleNameSchema, available: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

export const SimFailLoadBodySchema = Type.Object(
  { module: ModuleNameSchema, times: Type.Optional(times) },
  { additionalProperties: false },
);

export const SIM_WRITE_OPS = [
  'driver_override',
  'sriov_numvfs',
  'remove',
  'unbind',
  'bind',
  'drivers_probe',
  'rescan',
] as const;

export const SimFailWriteBodySchema = Type.Object(
  {
    op: Type.Union(SIM_WRITE_OPS.map((op) => Type.Literal(op))),
    errno: Type.String({ pattern: '^E[A-Z0-9]{1,15}$' }),
    address: Type.Optional(address),
    times: Type.Optional(times),
  },
  { additionalProperties: false },
);

export const SimDeviceBodySchema = Type.Object({ address }, { additionalProperties: false });

export type ClaimBody = Static<typeof ClaimBodySchema>;
export type ReleaseBody = Static<typeof ReleaseBodySchema>;
export type SimModuleBody = Static<typeof SimModuleBodySchema>;
export type SimRmmodBody = Static<typeof SimRmmodBodySchema>;
export type SimAvailableBody = Static<typeof SimAvailableBodySchema>;
export type SimFailLoadBody = Static<typeof SimFailLoadBodySchema>;
export type SimFailWriteBody = Static<typeof SimFailWriteBodySchema>;
export type SimDeviceBody = Static<typeof SimDeviceBodySchema>;
