/**
 * The OpenAPI v3 schemas of the devices.harvesterhci.io/v1beta1 kinds passthru serves, as plain
 * JSON-Schema objects. One source for the CRD YAML (scripts/gen-crds.ts), the fake API server's
 * validation and the adapter's types. Harvester's fields keep Harvester's shape (nullable
 * strings); passthru's fields are additive. Written so a typebox layer can replace the literals
 * later without changing the generated YAML.
 */

export interface JsonSchema {
  type?: 'object' | 'string' | 'integer' | 'boolean' | 'array';
  description?: string;
  nullable?: boolean;
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

export const GROUP = 'devices.harvesterhci.io';
export const VERSION = 'v1beta1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** `DDDD:BB:DD.F`, lower-case hex, as ghw (and so Harvester) writes it. */
export const ADDRESS_PATTERN = '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$';

const str = (description: string): JsonSchema => ({ type: 'string', nullable: true, description });

type Rule = { rule: string; message: string };
const immutable = (field: string): Rule[] => [
  { rule: 'self == oldSelf', message: `${field} is immutable` },
];

export const conditionsSchema: JsonSchema = {
  type: 'array',
  description: 'passthru: conditions, one per type.',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  items: {
    type: 'object',
    required: ['type', 'status'],
    properties: {
      type: {
        type: 'string',
        description: 'Ready, ModulesLoaded, Refused (claims); HostCritical, Claimable, Bound (devices).',
      },
      status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
      reason: { type: 'string', description: 'CamelCase reason or a passthru error code.' },
      message: { type: 'string' },
      lastTransitionTime: { type: 'string', format: 'date-time' },
      observedGeneration: { type: 'integer', minimum: 0 },
    },
  },
};

export const pciDeviceStatusSchema: JsonSchema = {
  type: 'object',
  properties: {
    address: str('PCI address DDDD:BB:DD.F.'),
    vendorId: str('Vendor id, 4 hex digits.'),
    deviceId: str('Device id, 4 hex digits.'),
    classId: str('Class and subclass, 4 hex digits (no prog-if).'),
    nodeName: str('The node the function is on.'),
    resourceName: str('Extended resource name; kept once written.'),
    description: str('"<subclass>: <vendor> <product>" from pci.ids.'),
    kernelDriverInUse: str('The driver bound now, empty when none.'),
    iommuGroup: str('IOMMU group number, empty when none.'),
    subsystemVendorId: str('passthru: subsystem vendor id, 4 hex digits.'),
    subsystemDeviceId: str('passthru: subsystem device id, 4 hex digits.'),
    numaNode: {
      type: 'integer',
      nullable: true,
      description: 'passthru: NUMA node, null when unknown.',
    },
    conditions: conditionsSchema,
  },
};

export const pciDeviceSchema: JsonSchema = {
  type: 'object',
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    metadata: { type: 'object' },
    spec: { type: 'object' },
    status: pciDeviceStatusSchema,
  },
};

export const pciDeviceClaimSpecSchema: JsonSchema = {
  type: 'object',
  required: ['address', 'nodeName'],
  properties: {
    address: {
      ...str('PCI address of the function to pass through, DDDD:BB:DD.F.'),
      pattern: ADDRESS_PATTERN,
      'x-kubernetes-validations': immutable('spec.address'),
    },
    nodeName: {
      ...str('The node the function is on.'),
      minLength: 1,
      maxLength: 253,
      'x-kubernetes-validations': immutable('spec.nodeName'),
    },
    userName: str('Who asked for it (the Harvester UI writes its user).'),
    disableResourcePooling: {
      type: 'boolean',
      description: 'Harvester: a per-device resource name instead of the pooled one.',
    },
  },
};

export const pciDeviceClaimStatusSchema: JsonSchema = {
  type: 'object',
  properties: {
    kernelDriverToUnbind: str('The driver the device had before the claim (restored on release).'),
    passthroughEnabled: { type: 'boolean', description: 'The device is on vfio-pci.' },
    observedGeneration: {
      type: 'integer',
      minimum: 0,
      description: 'passthru: the metadata.generation this status describes.',
    },
    conditions: conditionsSchema,
  },
};

export const pciDeviceClaimSchema: JsonSchema = {
  type: 'object',
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    metadata: { type: 'object' },
    spec: pciDeviceClaimSpecSchema,
    status: pciDeviceClaimStatusSchema,
  },
};

/** Types the adapter reads and writes, matching the schemas above. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export interface ObjectMeta {
  name: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[];
}

export interface PciDeviceStatus {
  address: string;
  vendorId: string;
  deviceId: string;
  classId: string;
  nodeName: string;
  resourceName: string;
  description: string;
  kernelDriverInUse?: string;
  iommuGroup: string;
  subsystemVendorId?: string;
  subsystemDeviceId?: string;
  numaNode?: number | null;
  conditions?: Condition[];
}

export interface PciDevice {
  apiVersion: string;
  kind: 'PCIDevice';
  metadata: ObjectMeta;
  spec?: Record<string, never>;
  status?: Partial<PciDeviceStatus>;
}

export interface PciDeviceClaimStatus {
  kernelDriverToUnbind?: string;
  passthroughEnabled?: boolean;
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface PciDeviceClaim {
  apiVersion: string;
  kind: 'PCIDeviceClaim';
  metadata: ObjectMeta;
  spec: { address?: string | null; nodeName?: string | null; userName?: string | null };
  status?: PciDeviceClaimStatus;
}
