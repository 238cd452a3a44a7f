import { canonicalModuleName, type HostPort } from '../host/port.js';
import { vfioModuleGraph } from '../kernel/vfio-modules.js';

/**
 * The modules vfio-pci needs on the running kernel, by exact name. Prefers the kernel's own
 * modules.dep (closure of vfio_pci's dependencies), falls back to what the release implies
 * (vfio_virqfd before 6.2, vfio_pci_core from 5.16). vfio_iommu_type1 is not a hard dependency
 * of vfio_pci but without it no container can be set up, so it is always required.
 */
export async function requiredVfioModules(host: HostPort): Promise<string[]> {
  const required = new Set<string>(['vfio_pci']);
  const queue = ['vfio_pci'];
  let fromDep = false;
  while (queue.length > 0) {
    const name = queue.shift();
    if (name === undefined) break;
    const a = await host.moduleAvailability(name);
    if (a.kind === 'loadable') fromDep = true;
    for (const d of a.deps) {
      const n = canonicalModuleName(d);
      if (!required.has(n)) {
        required.add(n);
        queue.push(n);
      }
    }
  }
  if (!fromDep || required.size === 1) {
    const { release } = await host.kernelInfo();
    for (const m of vfioModuleGraph(release)) required.add(m.name);
  }
  required.add('vfio_iommu_type1');
  required.add('vfio');
  return orderByDependency([...required]);
}

/** Fixed order for display and loading: helpers first, vfio_pci last. */
function orderByDependency(names: string[]): string[] {
  const rank = [
    'irqbypass',
    'vfio',
    'vfio_virqfd',
    'vfio_iommu_type1',
    'vfio_pci_core',
    'vfio_pci',
  ];
  const r = (n: string): number => {
    const i = rank.indexOf(n);
    return i < 0 ? rank.length - 1 : i;
  };
  return names.sort((a, b) => r(a) - r(b) || a.localeCompare(b));
}
