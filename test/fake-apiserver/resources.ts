import type { Crd, PrinterColumn } from '../../src/k8s/crds.js';
import type { JsonSchema } from '../../src/k8s/schemas.js';
import { checkRulesSupported } from './validate.js';

/** What the fake serves for one resource type. */
export interface ResourceDef {
  group: string;
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  status: boolean;
  /** A custom resource: schema-driven, no strategic merge patch. */
  custom: boolean;
  schema?: JsonSchema;
  columns: PrinterColumn[];
  /** Field-selector labels the server accepts for this type. */
  fields: string[];
}

export const gv = (r: ResourceDef): string =>
  r.group === '' ? r.version : `${r.group}/${r.version}`;

/** A resource from a CRD as shipped in deploy/crds (the YAML drives schema, columns, fields). */
export function fromCrd(crd: Crd): ResourceDef {
  const v = crd.spec.versions[0];
  if (v === undefined) throw new Error(`CRD ${crd.metadata.name} has no storage version`);
  checkRulesSupported(v.schema.openAPIV3Schema);
  return {
    group: crd.spec.group,
    version: v.name,
    kind: crd.spec.names.kind,
    listKind: crd.spec.names.listKind,
    plural: crd.spec.names.plural,
    singular: crd.spec.names.singular,
    namespaced: false,
    status: true,
    custom: true,
    schema: v.schema.openAPIV3Schema,
    columns: v.additionalPrinterColumns,
    fields: ['metadata.name', ...v.selectableFields.map((f) => f.jsonPath.replace(/^\./, ''))],
  };
}

/** Built-in types the agent touches; field labels as the real server registers them. */
export const builtins: ResourceDef[] = [
  {
    group: '',
    version: 'v1',
    kind: 'Node',
    listKind: 'NodeList',
    plural: 'nodes',
    singular: 'node',
    namespaced: false,
    status: true,
    custom: false,
    columns: [],
    fields: ['metadata.name', 'spec.unschedulable'],
  },
  {
    group: '',
    version: 'v1',
    kind: 'Event',
    listKind: 'EventList',
    plural: 'events',
    singular: 'event',
    namespaced: true,
    status: false,
    custom: false,
    columns: [
      { name: 'Type', type: 'string', jsonPath: '.type' },
      { name: 'Reason', type: 'string', jsonPath: '.reason' },
      { name: 'Object', type: 'string', jsonPath: '.involvedObject.name' },
      { name: 'Message', type: 'string', jsonPath: '.message' },
    ],
    fields: [
      'metadata.name',
      'metadata.namespace',
      'involvedObject.kind',
      'involvedObject.namespace',
      'involvedObject.name',
      'involvedObject.uid',
      'involvedObject.apiVersion',
      'involvedObject.resourceVersion',
      'involvedObject.fieldPath',
      'reason',
      'reportingComponent',
      'source',
      'type',
    ],
  },
  {
    // KubeVirt's CRD has its own schema; the fake keeps what it is given.
    group: 'kubevirt.io',
    version: 'v1',
    kind: 'KubeVirt',
    listKind: 'KubeVirtList',
    plural: 'kubevirts',
    singular: 'kubevirt',
    namespaced: true,
    status: true,
    custom: true,
    columns: [],
    fields: ['metadata.name', 'metadata.namespace'],
  },
];
