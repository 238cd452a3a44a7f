import { compareAddresses, parsePciAddress } from '../../pci/address.js';
import { vfioModuleGraph } from '../../kernel/vfio-modules.js';
import { TOPOLOGY_FORMAT, validateTopology, type Topology } from '../../topology/format.js';
import { canonicalModuleName } from '../port.js';
import { VFIO_DRIVER, type SimState } from './model.js';

/** A simulated kernel's state from a topology (docs/topology.md). */
export function stateFromTopology(topology: Topology): SimState {
  const topo = validateTopology(topology);
  const s: SimState = {
    name: topo.name,
    description: topo.description,
    release: topo.kernel?.release ?? '6.1.0-sim-amd64',
    cmdline: topo.kernel?.cmdline ?? 'intel_iommu=on iommu=pt',
    iommus: topo.kernel?.iommus ?? ['dmar0'],
    interruptRemapping: topo.kernel?.interruptRemapping ?? 'enabled',
    devices: new Map(),
    removed: new Map(),
    drivers: new Map(),
    modules: new Map(),
    uses: (topo.hostUses ?? []).map((u) => ({ address: parsePciAddress(u.address), use: u.use })),
    usesUnknown: [...(topo.hostUnknown ?? [])],
  };

  for (const d of topo.devices) {
    const address = parsePciAddress(d.address);
    s.devices.set(address, {
      address,
      vendor: d.vendor,
      device: d.device,
      subsystemVendor: d.subsystemVendor ?? '0000',
      subsystemDevice: d.subsystemDevice ?? '0000',
      classId: d.class,
      revision: d.revision ?? '00',
      driver: d.driver ?? null,
      unbinding: false,
      override: d.driverOverride ?? null,
      group: d.iommuGroup ?? null,
      numaNode: d.numaNode ?? -1,
      parent: d.parent ? parsePciAddress(d.parent) : null,
      bootVga: d.bootVga ?? false,
      resetMethods: d.resetMethods ?? [],
      label: d.label ?? null,
      serialNumber: d.serialNumber ?? null,
      sriov: d.sriov
        ? {
            total: d.sriov.totalVfs,
            num: 0,
            vfDevice: d.sriov.vfDevice,
            offset: d.sriov.vfOffset ?? 1,
            stride: d.sriov.vfStride ?? 1,
          }
        : null,
      physfn: d.physfn ? parsePciAddress(d.physfn) : null,
      virtfns: [],
      openCount: 0,
      cdev: null,
    });
  }
  // VFs listed in the topology (a snapshot of a host with VFs enabled) link to their PF.
  for (const dev of s.devices.values()) {
    if (dev.physfn) {
      const pf = s.devices.get(dev.physfn);
      if (pf) pf.virtfns.push(dev.address);
    }
  }
  for (const pf of s.devices.values()) {
    if (pf.sriov) pf.sriov.num = pf.virtfns.length;
  }

  const anyVfio = topo.devices.some((d) => d.driver === VFIO_DRIVER);
  for (const m of vfioModuleGraph(s.release)) {
    s.modules.set(m.name, {
      name: m.name,
      deps: m.deps,
      state: anyVfio ? 'live' : 'absent',
      available: true,
      blocked: undefined,
    });
  }
  s.drivers.set(VFIO_DRIVER, { name: VFIO_DRIVER, module: 'vfio_pci', ids: [] });
  for (const drv of topo.drivers ?? []) {
    s.drivers.set(drv.name, {
      name: drv.name,
      module: drv.module === undefined ? canonicalModuleName(drv.name) : drv.module,
      ids: drv.ids ?? [],
    });
  }
  // Drivers that appear only as a device's current driver: match what they are bound to.
  for (const dev of s.devices.values()) {
    if (dev.driver === null || dev.driver === VFIO_DRIVER) continue;
    let drv = s.drivers.get(dev.driver);
    if (!drv) {
      drv = { name: dev.driver, module: canonicalModuleName(dev.driver), ids: [] };
      s.drivers.set(drv.name, drv);
    }
    if (!(topo.drivers ?? []).some((d) => d.name === dev.driver && d.ids !== undefined)) {
      const id = `${dev.vendor}:${dev.device}`;
      if (!drv.ids.includes(id)) drv.ids.push(id);
    }
  }
  for (const drv of s.drivers.values()) {
    if (drv.module !== null && !s.modules.has(drv.module)) {
      s.modules.set(drv.module, {
        name: drv.module,
        deps: [],
        state: 'live',
        available: true,
        blocked: undefined,
      });
    }
  }
  for (const m of topo.modules ?? []) {
    const name = canonicalModuleName(m.name);
    const prev = s.modules.get(name);
    s.modules.set(name, {
      name,
      deps: (m.deps ?? prev?.deps ?? []).map(canonicalModuleName),
      state: m.state === 'live' ? 'live' : m.state === 'builtin' ? 'builtin' : 'absent',
      available: m.state !== 'missing',
      blocked: m.blocked,
    });
  }
  return s;
}

/** The current state as a topology, so a running simulation can be saved and reloaded. */
export function stateToTopology(s: SimState): Topology {
  const devices = [...s.devices.values()]
    .sort((a, b) => compareAddresses(a.address, b.address))
    .map((d) => {
      const out: Topology['devices'][number] = {
        address: d.address,
        vendor: d.vendor,
        device: d.device,
        subsystemVendor: d.subsystemVendor,
        subsystemDevice: d.subsystemDevice,
        class: d.classId,
        revision: d.revision,
        driver: d.driver,
        iommuGroup: d.group,
        numaNode: d.numaNode,
        parent: d.parent,
      };
      if (d.override !== null) out.driverOverride = d.override;
      if (d.bootVga) out.bootVga = true;
      if (d.resetMethods.length > 0) out.resetMethods = d.resetMethods;
      if (d.label !== null) out.label = d.label;
      if (d.serialNumber !== null) out.serialNumber = d.serialNumber;
      if (d.physfn) out.physfn = d.physfn;
      if (d.sriov) {
        out.sriov = {
          totalVfs: d.sriov.total,
          numVfs: d.sriov.num,
          vfDevice: d.sriov.vfDevice,
          vfOffset: d.sriov.offset,
          vfStride: d.sriov.stride,
        };
      }
      return out;
    });
  const t: Topology = {
    format: TOPOLOGY_FORMAT,
    name: s.name,
    kernel: {
      release: s.release,
      cmdline: s.cmdline,
      iommus: s.iommus,
      interruptRemapping: s.interruptRemapping,
    },
    modules: [...s.modules.values()].map((m) => {
      const tm: NonNullable<Topology['modules']>[number] = {
        name: m.name,
        deps: m.deps,
        state: !m.available
          ? 'missing'
          : m.state === 'live' || m.state === 'unloading'
            ? 'live'
            : m.state === 'builtin'
              ? 'builtin'
              : 'available',
      };
      if (m.blocked !== undefined) tm.blocked = m.blocked;
      return tm;
    }),
    drivers: [...s.drivers.values()].map((d) => ({ name: d.name, module: d.module, ids: d.ids })),
    devices,
    hostUses: s.uses,
  };
  if (s.usesUnknown.length > 0) t.hostUnknown = [...s.usesUnknown];
  if (s.description !== undefined) t.description = s.description;
  return t;
}
