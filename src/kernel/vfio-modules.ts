/**
 * Kernel facts about vfio that production code and the simulator share: which modules make up
 * vfio-pci on a given kernel release, and how they depend on each other.
 */

/** Parses a kernel release ("6.1.0-26-amd64") into [major, minor]. */
export function kernelVersion(release: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * The vfio module graph of a kernel release: vfio_virqfd was merged into vfio in 6.2, and
 * vfio_pci_core split out of vfio_pci in 5.16.
 */
export function vfioModuleGraph(release: string): { name: string; deps: string[] }[] {
  const [maj, min] = kernelVersion(release);
  const atLeast = (a: number, b: number): boolean => maj > a || (maj === a && min >= b);
  const virqfd = !atLeast(6, 2);
  const core = atLeast(5, 16);
  const mods: { name: string; deps: string[] }[] = [
    { name: 'irqbypass', deps: [] },
    { name: 'vfio', deps: [] },
    { name: 'vfio_iommu_type1', deps: ['vfio'] },
  ];
  if (virqfd) mods.push({ name: 'vfio_virqfd', deps: ['vfio'] });
  const helperDeps = ['vfio', 'irqbypass', ...(virqfd ? ['vfio_virqfd'] : [])];
  if (core) {
    mods.push({ name: 'vfio_pci_core', deps: helperDeps });
    mods.push({ name: 'vfio_pci', deps: ['vfio_pci_core', 'vfio'] });
  } else {
    mods.push({ name: 'vfio_pci', deps: helperDeps });
  }
  return mods;
}
