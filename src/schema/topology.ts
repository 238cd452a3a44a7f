import { Type, type Static } from '@sinclair/typebox';
import {
  DeviceSerialSchema,
  DriverNameSchema,
  ModuleNameSchema,
  PciAddressTextSchema as PciAddressSchema,
  hexId,
} from './names.js';

/**
 * The topology format (docs/topology.md): a host's PCI functions, drivers and modules as JSON.
 * `passthru snapshot` writes it; `--sim FILE` loads it into the simulated kernel. A topology is
 * input from anyone (a bug report, a download), so every name that reaches a path, a
 * modprobe.d line or a terminal has a pattern, and every number a range.
 */
export const TOPOLOGY_FORMAT = 'passthru-topology/1';

/** Free text shown to people: no control characters (no ANSI escapes, no newlines). */
const text = (max: number) =>
  Type.String({ pattern: '^[^\\u0000-\\u001f\\u007f]*$', maxLength: max });
const int = (minimum: number, maximum: number) => Type.Integer({ minimum, maximum });

export const TopologySriovSchema = Type.Object(
  {
    totalVfs: int(0, 65535),
    numVfs: Type.Optional(int(0, 65535)),
    /** Device id of the VFs (4 hex digits). */
    vfDevice: hexId(4, 'device id of the VFs'),
    /** Routing-id offset of the first VF and stride between VFs, as in the SR-IOV capability. */
    vfOffset: Type.Optional(int(0, 65535)),
    vfStride: Type.Optional(int(0, 65535)),
  },
  { additionalProperties: false },
);

export const TopologyDeviceSchema = Type.Object(
  {
    address: PciAddressSchema,
    vendor: hexId(4, 'vendor id'),
    device: hexId(4, 'device id'),
    subsystemVendor: Type.Optional(hexId(4, 'subsystem vendor id')),
    subsystemDevice: Type.Optional(hexId(4, 'subsystem device id')),
    class: hexId(6, 'class code'),
    revision: Type.Optional(hexId(2, 'revision')),
    driver: Type.Optional(Type.Union([DriverNameSchema, Type.Null()])),
    driverOverride: Type.Optional(Type.Union([DriverNameSchema, Type.Null()])),
    iommuGroup: Type.Optional(Type.Union([int(0, 2 ** 31 - 1), Type.Null()])),
    numaNode: Type.Optional(int(-1, 4095)),
    parent: Type.Optional(Type.Union([PciAddressSchema, Type.Null()])),
    bootVga: Type.Optional(Type.Boolean()),
    resetMethods: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z_]{1,32}$' }))),
    label: Type.Optional(text(256)),
    /** PCIe Device Serial Number, as lspci -vv prints it (`00-11-22-33-44-55-66-77`). */
    serialNumber: Type.Optional(DeviceSerialSchema),
    sriov: Type.Optional(TopologySriovSchema),
    physfn: Type.Optional(PciAddressSchema),
  },
  { additionalProperties: false },
);

export const TopologyDriverSchema = Type.Object(
  {
    name: DriverNameSchema,
    /** Module providing the driver; null for drivers built into the kernel. */
    module: Type.Optional(Type.Union([ModuleNameSchema, Type.Null()])),
    /** `vvvv:dddd`, `vvvv:*` or `class:cccccc` match entries. */
    ids: Type.Optional(
      Type.Array(Type.String({ pattern: '^([0-9a-f]{4}:([0-9a-f]{4}|\\*)|class:[0-9a-f]{6})$' })),
    ),
  },
  { additionalProperties: false },
);

export const TopologyModuleSchema = Type.Object(
  {
    name: ModuleNameSchema,
    deps: Type.Optional(Type.Array(ModuleNameSchema)),
    /** live: loaded; available: loadable but not loaded; builtin; missing: not on this kernel. */
    state: Type.Union([
      Type.Literal('live'),
      Type.Literal('available'),
      Type.Literal('builtin'),
      Type.Literal('missing'),
    ]),
    blocked: Type.Optional(text(256)),
  },
  { additionalProperties: false },
);

export const TopologySchema = Type.Object(
  {
    format: Type.Literal(TOPOLOGY_FORMAT),
    name: Type.String({ pattern: '^[^\\u0000-\\u001f\\u007f]{1,128}$' }),
    description: Type.Optional(text(1024)),
    kernel: Type.Optional(
      Type.Object(
        {
          release: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._+~-]{1,64}$' })),
          cmdline: Type.Optional(text(4096)),
          iommus: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,64}$' }))),
          interruptRemapping: Type.Optional(
            Type.Union([
              Type.Literal('enabled'),
              Type.Literal('disabled'),
              Type.Literal('unknown'),
            ]),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    modules: Type.Optional(Type.Array(TopologyModuleSchema)),
    drivers: Type.Optional(Type.Array(TopologyDriverSchema)),
    devices: Type.Array(TopologyDeviceSchema),
    hostUses: Type.Optional(
      Type.Array(
        Type.Object({ address: PciAddressSchema, use: text(256) }, { additionalProperties: false }),
      ),
    ),
    /**
     * What the simulated host could not trace ("cannot tell what backs /srv: ..."): storage and
     * network claims are then refused unless forced, as on a real host.
     */
    hostUnknown: Type.Optional(Type.Array(text(512))),
  },
  { additionalProperties: false },
);

export type TopologySriov = Static<typeof TopologySriovSchema>;
export type TopologyDevice = Static<typeof TopologyDeviceSchema>;
export type TopologyDriver = Static<typeof TopologyDriverSchema>;
export type TopologyModule = Static<typeof TopologyModuleSchema>;
export type Topology = Static<typeof TopologySchema>;
