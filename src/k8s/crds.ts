import {
  API_VERSION,
  GROUP,
  pciDeviceClaimSchema,
  pciDeviceSchema,
  VERSION,
  type JsonSchema,
} from './schemas.js';

/**
 * The manifests generated from the schema layer: the two CRDs and the admission policy.
 * `npm run gen:crds` writes them under deploy/; a test fails when the committed files differ.
 */

export interface PrinterColumn {
  name: string;
  type: 'string';
  jsonPath: string;
}

export interface Crd {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; annotations?: Record<string, string> };
  spec: {
    group: string;
    names: { kind: string; plural: string; singular: string; listKind: string };
    scope: 'Cluster';
    preserveUnknownFields: false;
    versions: {
      name: string;
      served: true;
      storage: true;
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
      selectableFields: { jsonPath: string }[];
      schema: { openAPIV3Schema: JsonSchema };
    }[];
  };
}

// Harvester types every column as string, booleans included, and its column title has Greek
// Tau and Omicron in "Το": kept verbatim so `kubectl get` output matches.
const col = (name: string, jsonPath: string): PrinterColumn => ({ name, type: 'string', jsonPath });

function crd(
  kind: string,
  plural: string,
  schema: JsonSchema,
  columns: PrinterColumn[],
  selectable: string[],
): Crd {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${plural}.${GROUP}`,
      annotations: { 'passthru.dev/generated-by': 'npm run gen:crds (src/k8s/crds.ts)' },
    },
    spec: {
      group: GROUP,
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      scope: 'Cluster',
      preserveUnknownFields: false,
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns,
          selectableFields: selectable.map((jsonPath) => ({ jsonPath })),
          schema: { openAPIV3Schema: schema },
        },
      ],
    },
  };
}

export const pciDeviceCrd: Crd = crd(
  'PCIDevice',
  'pcidevices',
  pciDeviceSchema,
  [
    col('Address', '.status.address'),
    col('Vendor Id', '.status.vendorId'),
    col('Device Id', '.status.deviceId'),
    col('Node Name', '.status.nodeName'),
    col('Description', '.status.description'),
    col('Kernel Driver In Use', '.status.kernelDriverInUse'),
  ],
  ['.status.nodeName'],
);

export const pciDeviceClaimCrd: Crd = crd(
  'PCIDeviceClaim',
  'pcideviceclaims',
  pciDeviceClaimSchema,
  [
    col('Address', '.spec.address'),
    col('Node Name', '.spec.nodeName'),
    col('User Name', '.spec.userName'),
    col('Kernel Driver \u03a4\u03bf Unbind', '.status.kernelDriverToUnbind'),
    col('Passthrough Enabled', '.status.passthroughEnabled'),
  ],
  ['.spec.nodeName'],
);

export const POLICY_NAME = 'pcideviceclaims.passthru.dev';

/**
 * Claim rules a schema cannot express (the name ties the claim to its PCIDevice). Checked by
 * the API server itself (no webhook to keep up), failing closed. It applies on CREATE and
 * UPDATE; apart from immutability every rule is checked on CREATE only, so a claim stored before
 * the policy (by Harvester's controller) can still lose its finalizers.
 */
export const claimPolicy = {
  apiVersion: 'admissionregistration.k8s.io/v1',
  kind: 'ValidatingAdmissionPolicy',
  metadata: { name: POLICY_NAME },
  spec: {
    failurePolicy: 'Fail',
    matchConstraints: {
      resourceRules: [
        {
          apiGroups: [GROUP],
          apiVersions: [VERSION],
          operations: ['CREATE', 'UPDATE'],
          resources: ['pcideviceclaims'],
        },
      ],
    },
    variables: [
      {
        name: 'addr',
        expression:
          "has(object.spec.address) && object.spec.address != null ? object.spec.address : ''",
      },
      {
        name: 'node',
        expression:
          "has(object.spec.nodeName) && object.spec.nodeName != null ? object.spec.nodeName : ''",
      },
    ],
    validations: [
      {
        expression:
          "request.operation != 'CREATE' || variables.addr.matches('^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}[.][0-7]$')",
        messageExpression: "'spec.address ' + variables.addr + ' is not DDDD:BB:DD.F'",
      },
      {
        expression: "request.operation != 'CREATE' || variables.node != ''",
        message: 'spec.nodeName is required',
      },
      {
        expression:
          "request.operation != 'CREATE' || object.metadata.name == variables.node + '-' + variables.addr.replace(':', '').replace('.', '')",
        message: "name must equal the PCIDevice name <nodeName>-<address without ':' and '.'>",
      },
      {
        expression: "request.operation != 'UPDATE' || object.spec == oldObject.spec",
        message: 'spec is immutable',
      },
    ],
  },
};

export const claimPolicyBinding = {
  apiVersion: 'admissionregistration.k8s.io/v1',
  kind: 'ValidatingAdmissionPolicyBinding',
  metadata: { name: POLICY_NAME },
  spec: { policyName: POLICY_NAME, validationActions: ['Deny'] },
};

export { API_VERSION };
