/**
 * JSON Schemas of the API's request bodies, in one place. fastify validates every body with
 * them before a handler runs. They become typebox schemas when the project's schema layer
 * (src/schema/) lands, so the types and the validation come from one source.
 */

/** A PCI address is parsed again by parsePciAddress; the schema only bounds the shape. */
const address = { type: 'string', minLength: 1, maxLength: 64 } as const;
/** The same names the host port accepts for modules (`vfio_pci`, `vfio-pci`). */
const moduleName = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } as const;
const times = { type: 'integer', minimum: 1, maximum: 1_000_000 } as const;

function body(properties: Record<string, unknown>, required: string[]): Record<string, unknown> {
  return { type: 'object', additionalProperties: false, properties, required };
}

export const claimBody = body(
  {
    addresses: { type: 'array', minItems: 1, maxItems: 4096, items: address },
    withGroup: { type: 'boolean' },
    force: { type: 'boolean' },
    acceptChange: { type: 'boolean' },
    source: { type: 'string', enum: ['cli', 'api'] },
  },
  ['addresses'],
);

export const releaseBody = body(
  {
    addresses: { type: 'array', minItems: 1, maxItems: 4096, items: address },
    wait: { type: 'boolean' },
    abandon: { type: 'boolean' },
  },
  ['addresses'],
);

export const simModuleBody = body({ module: moduleName }, ['module']);
export const simRmmodBody = body({ module: moduleName, linger: { type: 'boolean' } }, ['module']);
export const simAvailableBody = body({ module: moduleName, available: { type: 'boolean' } }, [
  'module',
]);
export const simFailLoadBody = body({ module: moduleName, times }, ['module']);
export const simFailWriteBody = body(
  {
    op: {
      type: 'string',
      enum: [
        'driver_override',
        'sriov_numvfs',
        'remove',
        'unbind',
        'bind',
        'drivers_probe',
        'rescan',
      ],
    },
    errno: { type: 'string', pattern: '^E[A-Z0-9]{1,15}$' },
    address,
    times,
  },
  ['op', 'errno'],
);
export const simDeviceBody = body({ address }, ['address']);
