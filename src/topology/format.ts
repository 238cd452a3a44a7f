import { PtError } from '../errors.js';

import { checker, describeIssues } from '../schema/validate.js';
import {
  TOPOLOGY_FORMAT,
  TopologySchema,
  type Topology,
  type TopologyDevice,
  type TopologyDriver,
  type TopologyModule,
  type TopologySriov,
} from '../schema/topology.js';

/** The format itself is a schema (src/schema/topology.ts); these names stay for importers. */
export { TOPOLOGY_FORMAT };
export type { Topology, TopologyDevice, TopologyDriver, TopologyModule, TopologySriov };

function bad(msg: string): never {
  throw new PtError('PT_ERR_TOPOLOGY_INVALID', `invalid topology: ${msg}`);
}

const topologyChecker = checker(TopologySchema);

/**
 * Checks parsed JSON against the topology schema, then what a schema cannot say: addresses are
 * unique, `parent` and `physfn` name devices of the topology, `physfn` an SR-IOV PF, and parent
 * links end at a root.
 */
export function validateTopology(raw: unknown): Topology {
  if (typeof raw === 'object' && raw !== null && 'format' in raw && raw.format !== TOPOLOGY_FORMAT)
    bad(`format must be "${TOPOLOGY_FORMAT}"`);
  if (!topologyChecker.check(raw)) bad(describeIssues(topologyChecker.issues(raw)));
  const byAddress = new Map<string, TopologyDevice>();
  raw.devices.forEach((d, i) => {
    if (byAddress.has(d.address)) bad(`devices[${i}]: duplicate address ${d.address}`);
    byAddress.set(d.address, d);
  });
  for (const d of raw.devices) {
    for (const k of ['parent', 'physfn'] as const) {
      const v = d[k];
      if (typeof v === 'string' && !byAddress.has(v))
        bad(`${d.address}.${k} names unknown device ${v}`);
      if (v === d.address) bad(`${d.address}.${k} names the device itself`);
    }
    // As the kernel: a VF's PF is an SR-IOV PF (it has sriov_totalvfs and a virtfn link to
    // each VF) and never a VF itself. A tree written from the topology has those links, and a
    // pass over it takes a VF's physfn from them (discover).
    const pf = d.physfn === undefined ? undefined : byAddress.get(d.physfn);
    if (pf !== undefined && (pf.sriov === undefined || pf.physfn !== undefined))
      bad(`${d.address}.physfn names ${pf.address}, which is not an SR-IOV PF`);
    // A parent chain longer than the device list goes round in a circle.
    let up = d.parent ?? null;
    for (let n = 0; up !== null; n++) {
      if (n > raw.devices.length) bad(`${d.address}: parent links form a cycle`);
      up = byAddress.get(up)?.parent ?? null;
    }
  }
  return raw;
}
