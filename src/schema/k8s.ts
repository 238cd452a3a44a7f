import { FormatRegistry, Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * The custom resources passthru reads and writes (devices.harvesterhci.io/v1beta1). One source
 * for three things: the TypeScript types (Static<...>), the checks on objects as they arrive
 * from the API server (src/k8s/adapter.ts), and the CRDs' openAPIV3Schema (src/k8s/openapi.ts
 * rewrites them into the structural-schema dialect, `npm run gen:crds` writes deploy/crds).
 *
 * Harvester's fields keep Harvester's shape: strings that may be null (Go fields without
 * omitempty serialise as "", and its CRDs say `nullable: true`), nothing required except what
 * passthru needs to act on a claim. passthru's fields are additive. Objects never refuse
 * unknown fields: the API server prunes them, and a newer Harvester may add some.
 */

/** `DDDD:BB:DD.F`, lower-case hex, as ghw (and so Harvester) writes it. */
export const CRD_ADDRESS_PATTERN = '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$';

type Extra = Record<string, unknown>;

/** RFC 3339 as metav1.Time writes it; typebox refuses a format it has no check for. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', (v) => RFC3339.test(v));

/** A string that may be null: OpenAPI's `nullable: true` (see openapi.ts). */
export function NullableString(description: string, extra: Extra = {}) {
  return Type.Union([Type.String(extra), Type.Null()], { description });
}

const immutable = (field: string) => ({
  'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: `${field} is immutable` }],
});

export const K8sConditionSchema = Type.Object({
  type: Type.String({
    description:
      'Ready, ModulesLoaded, Refused (claims); HostCritical, Claimable, Bound (devices).',
  }),
  status: Type.Union([Type.Literal('True'), Type.Literal('False'), Type.Literal('Unknown')]),
  reason: Type.Optional(Type.String({ description: 'CamelCase reason or a passthru error code.' })),
  message: Type.Optional(Type.String()),
  lastTransitionTime: Type.Optional(Type.String({ format: 'date-time' })),
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
});

export const K8sConditionsSchema = Type.Array(K8sConditionSchema, {
  description: 'passthru: conditions, one per type.',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
});

/**
 * The metadata fields the adapter reads. In a CRD the root `metadata` is the API server's
 * (openapi.ts emits `{type: object}`); here it is checked like any other input.
 */
export const K8sObjectMetaSchema = Type.Object({
  name: Type.String({ minLength: 1 }),
  uid: Type.Optional(Type.String()),
  resourceVersion: Type.Optional(Type.String()),
  generation: Type.Optional(Type.Integer({ minimum: 0 })),
  creationTimestamp: Type.Optional(Type.String()),
  deletionTimestamp: Type.Optional(Type.String()),
  labels: Type.Optional(Type.Record(Type.String(), Type.String())),
  annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
  finalizers: Type.Optional(Type.Array(Type.String())),
  ownerReferences: Type.Optional(
    Type.Array(
      Type.Object({
        apiVersion: Type.String(),
        kind: Type.String(),
        name: Type.String(),
        uid: Type.String(),
      }),
    ),
  ),
});

export const PciDeviceStatusSchema = Type.Object({
  address: NullableString('PCI address DDDD:BB:DD.F.'),
  vendorId: NullableString('Vendor id, 4 hex digits.'),
  deviceId: NullableString('Device id, 4 hex digits.'),
  classId: NullableString('Class and subclass, 4 hex digits (no prog-if).'),
  nodeName: NullableString('The node the function is on.'),
  resourceName: NullableString(
    'Extended resource name; kept once written (the override-resource-name annotation wins).',
  ),
  description: NullableString('"<subclass>: <vendor> <product>" from pci.ids.'),
  kernelDriverInUse: Type.Optional(NullableString('The driver bound now, empty when none.')),
  iommuGroup: NullableString('IOMMU group number, empty when none.'),
  subsystemVendorId: Type.Optional(NullableString('passthru: subsystem vendor id, 4 hex digits.')),
  subsystemDeviceId: Type.Optional(NullableString('passthru: subsystem device id, 4 hex digits.')),
  numaNode: Type.Optional(
    Type.Union([Type.Integer(), Type.Null()], {
      description: 'passthru: NUMA node, absent when unknown.',
    }),
  ),
  conditions: Type.Optional(K8sConditionsSchema),
});

export const PciDeviceSchema = Type.Object({
  apiVersion: Type.Optional(Type.String()),
  kind: Type.Optional(Type.String()),
  metadata: K8sObjectMetaSchema,
  spec: Type.Optional(Type.Object({})),
  status: Type.Optional(Type.Partial(PciDeviceStatusSchema)),
});

export const PciDeviceClaimSpecSchema = Type.Object({
  address: NullableString('PCI address of the function to pass through, DDDD:BB:DD.F.', {
    pattern: CRD_ADDRESS_PATTERN,
    ...immutable('spec.address'),
  }),
  nodeName: NullableString('The node the function is on.', {
    minLength: 1,
    maxLength: 253,
    ...immutable('spec.nodeName'),
  }),
  userName: Type.Optional(NullableString('Who asked for it (the Harvester UI writes its user).')),
  disableResourcePooling: Type.Optional(
    Type.Boolean({
      description:
        'Harvester: a per-device resource name <vendor>/<PCIDevice name> instead of the pooled one.',
    }),
  ),
});

/** Which pod's container holds the device, from the kubelet's pod-resources API. */
export const PodHolderSchema = Type.Object(
  {
    namespace: Type.String(),
    pod: Type.String(),
    container: Type.String(),
  },
  {
    description: 'passthru: the pod holding the device (kubelet pod-resources); absent when none.',
  },
);

export const PciDeviceClaimStatusSchema = Type.Object({
  kernelDriverToUnbind: Type.Optional(
    NullableString('The driver the device had before the claim (restored on release).'),
  ),
  passthroughEnabled: Type.Optional(Type.Boolean({ description: 'The device is on vfio-pci.' })),
  observedGeneration: Type.Optional(
    Type.Integer({
      minimum: 0,
      description: 'passthru: the metadata.generation this status describes.',
    }),
  ),
  heldBy: Type.Optional(PodHolderSchema),
  conditions: Type.Optional(K8sConditionsSchema),
});

export const PciDeviceClaimSchema = Type.Object({
  apiVersion: Type.Optional(Type.String()),
  kind: Type.Optional(Type.String()),
  metadata: K8sObjectMetaSchema,
  spec: PciDeviceClaimSpecSchema,
  status: Type.Optional(PciDeviceClaimStatusSchema),
});

export type K8sCondition = Static<typeof K8sConditionSchema>;
export type K8sObjectMeta = Static<typeof K8sObjectMetaSchema>;
export type PciDeviceStatus = Static<typeof PciDeviceStatusSchema>;
export type PciDeviceObject = Static<typeof PciDeviceSchema>;
export type PciDeviceClaimSpec = Static<typeof PciDeviceClaimSpecSchema>;
export type PciDeviceClaimStatus = Static<typeof PciDeviceClaimStatusSchema>;
export type PciDeviceClaimObject = Static<typeof PciDeviceClaimSchema>;
export type PodHolder = Static<typeof PodHolderSchema>;

/** For openapi.ts: any of the schemas above. */
export type K8sSchema = TSchema;
