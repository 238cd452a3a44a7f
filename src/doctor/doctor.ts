import type { HostPort } from '../host/port.js';
import { requiredVfioModules } from '../keeper/modules.js';
import { discover } from '../pci/discovery.js';
import { emptyPciIds, type PciIdNames } from '../pci/pciids.js';
import { hostUseChecks } from './host-checks.js';

/** info: a fact worth seeing (what backs a mount, why a device is host-critical), no verdict. */
export type CheckStatus = 'pass' | 'info' | 'warn' | 'fail';

export interface Check {
  id: string;
  status: CheckStatus;
  summary: string;
  /** How to fix it, when not passing. */
  hint?: string;
}

export interface DoctorReport {
  ok: boolean;
  checks: Check[];
}

/** Can this host do PCI passthrough, and if not, what to change. */
export async function runDoctor(
  host: HostPort,
  names: PciIdNames = emptyPciIds,
): Promise<DoctorReport> {
  const k = await host.kernelInfo();
  const checks: Check[] = [];
  const add = (c: Check): void => {
    checks.push(c);
  };
  const cmd = ` ${k.cmdline} `;
  const iommuOff = / (intel_iommu|amd_iommu)=off /.test(cmd);

  if (k.iommus.length > 0) {
    add({ id: 'iommu', status: 'pass', summary: `IOMMU active (${k.iommus.join(', ')})` });
  } else {
    add({
      id: 'iommu',
      status: 'fail',
      summary: 'no IOMMU active (/sys/class/iommu is empty)',
      hint: iommuOff
        ? 'remove intel_iommu=off / amd_iommu=off from the kernel command line'
        : 'enable VT-d / AMD-Vi in the firmware, then add intel_iommu=on (Intel) or amd_iommu=on (AMD) to the kernel command line and reboot',
    });
  }
  if (k.iommuGroupCount > 0) {
    add({ id: 'iommu-groups', status: 'pass', summary: `${k.iommuGroupCount} IOMMU groups` });
  } else {
    add({
      id: 'iommu-groups',
      status: 'fail',
      summary:
        'no IOMMU groups (/sys/kernel/iommu_groups is empty): no device can be passed through',
      hint: 'IOMMU groups appear once the IOMMU is enabled and the kernel has booted with it',
    });
  }
  if (k.interruptRemapping === 'enabled') {
    add({ id: 'interrupt-remapping', status: 'pass', summary: 'interrupt remapping enabled' });
  } else if (k.interruptRemapping === 'disabled') {
    add({
      id: 'interrupt-remapping',
      status: 'warn',
      summary:
        'interrupt remapping not in use: vfio_iommu_type1 refuses devices unless allow_unsafe_interrupts=1',
      hint: 'enable x2APIC / interrupt remapping in the firmware',
    });
  } else {
    add({
      id: 'interrupt-remapping',
      status: 'warn',
      summary: 'interrupt remapping could not be determined',
    });
  }
  if (/ pcie_acs_override=/.test(cmd)) {
    add({
      id: 'cmdline-acs-override',
      status: 'warn',
      summary: 'pcie_acs_override splits IOMMU groups the hardware does not isolate',
      hint: 'devices in a split group can still reach each other by DMA; prefer hardware with ACS',
    });
  }
  if (/ vfio-pci\.ids=/.test(cmd)) {
    add({
      id: 'cmdline-vfio-ids',
      status: 'warn',
      summary: 'vfio-pci.ids= on the command line binds every device with those ids at boot',
      hint: 'let passthru claim individual devices instead, or keep the list in sync with its claims',
    });
  }
  if (k.iommus.length > 0 && !/ iommu=pt /.test(cmd)) {
    add({
      id: 'cmdline-iommu-pt',
      status: 'warn',
      summary: 'iommu=pt not set: host devices pay for IOMMU translation',
      hint: 'add iommu=pt to the kernel command line',
    });
  }

  const mods = await requiredVfioModules(host);
  const status = await host.moduleStatus(mods);
  const missing: string[] = [];
  const blocked: string[] = [];
  for (const m of mods) {
    const a = await host.moduleAvailability(m);
    const loaded = status.get(m);
    if (a.kind === 'missing' && !loaded) missing.push(m);
    if (a.blocked !== undefined) blocked.push(`${m} (${a.blocked})`);
  }
  if (missing.length === 0) {
    add({
      id: 'vfio-available',
      status: 'pass',
      summary: `vfio modules available: ${mods.join(', ')}`,
    });
  } else {
    add({
      id: 'vfio-available',
      status: 'fail',
      summary: `vfio modules not on this kernel: ${missing.join(', ')}`,
      hint: `install the kernel's module package (linux-modules-*${k.release}) or a kernel built with CONFIG_VFIO_PCI`,
    });
  }
  // `modprobe NAME` ignores blacklist lines (they only hide a module's aliases), so the keeper
  // still loads it; systemd-modules-load and modalias loading honour them. An install line
  // replaces the load itself.
  const blacklisted = blocked.filter((b) => / \(blacklist/.test(b));
  const installed = blocked.filter((b) => !/ \(blacklist/.test(b));
  if (blacklisted.length > 0) {
    add({
      id: 'vfio-blacklisted',
      status: 'warn',
      summary: `modprobe.d blacklists ${blacklisted.join('; ')}: \`modprobe\` by name (what passthru runs) ignores blacklists, but systemd-modules-load and alias loading do not, so the module does not load at boot by itself`,
      hint: 'remove the blacklist line unless you mean to keep other tools from loading it',
    });
  }
  if (installed.length > 0) {
    add({
      id: 'vfio-blocked',
      status: 'fail',
      summary: `modprobe.d replaces loading: ${installed.join('; ')}: modprobe runs that command instead, so the module never loads`,
      hint: 'remove the install line from modprobe.d',
    });
  }
  const notLoaded = mods.filter((m) => {
    const s = status.get(m);
    return !s || (s.state !== 'live' && s.state !== 'builtin');
  });
  if (notLoaded.length === 0) {
    add({ id: 'vfio-loaded', status: 'pass', summary: 'vfio modules loaded' });
  } else {
    add({
      id: 'vfio-loaded',
      status: 'warn',
      summary: `not loaded: ${notLoaded.join(', ')}`,
      hint: 'the agent loads them when it starts; `passthru boot-config` loads them at boot',
    });
  }
  if (k.modprobe !== null) {
    add({ id: 'modprobe', status: 'pass', summary: `modprobe at ${k.modprobe}` });
  } else {
    add({
      id: 'modprobe',
      status: 'fail',
      summary: 'modprobe not found: modules cannot be reloaded',
      hint: 'install kmod, or pass --modprobe PATH',
    });
  }
  const [uses, inv] = await Promise.all([host.hostUses(), discover(host, names)]);
  checks.push(...hostUseChecks(uses, inv));
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}
