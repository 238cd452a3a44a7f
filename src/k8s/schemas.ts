import {
  CRD_ADDRESS_PATTERN,
  PciDeviceClaimSchema,
  PciDeviceSchema,
  type K8sCondition,
  type K8sObjectMeta,
  type PciDeviceClaimObject,
  type PciDeviceClaimStatus,
  type PciDeviceObject,
  type PciDeviceStatus,
  type PodHolder,
} from '../schema/k8s.js';
import { checker } from '../schema/validate.js';
import { crdSchema, type JsonSchema } from './openapi.js';

/**
 * The devices.harvesterhci.io/v1beta1 kinds passthru serves. The definitions live in the schema
 * layer (src/schema/k8s.ts); this file names the group and version, derives the CRDs'
 * openAPIV3Schema from them, and compiles the checks applied to objects from the API server.
 */

export type { JsonSchema };
export type Condition = K8sCondition;
export type ObjectMeta = K8sObjectMeta;
export type { PciDeviceClaimStatus, PciDeviceStatus, PodHolder };
export type PciDevice = PciDeviceObject;
export type PciDeviceClaim = PciDeviceClaimObject;

export const GROUP = 'devices.harvesterhci.io';
export const VERSION = 'v1beta1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const ADDRESS_PATTERN = CRD_ADDRESS_PATTERN;

export const pciDeviceSchema: JsonSchema = crdSchema(PciDeviceSchema);
export const pciDeviceClaimSchema: JsonSchema = crdSchema(PciDeviceClaimSchema);

export const pciDeviceCheck = checker(PciDeviceSchema);
export const pciDeviceClaimCheck = checker(PciDeviceClaimSchema);
