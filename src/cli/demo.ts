import type { Agent } from '../agent/agent.js';
import { PtError } from '../errors.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import type { SimKernel } from '../host/sim/kernel.js';
import { runDoctor } from '../doctor/doctor.js';
import { parsePciAddress } from '../pci/address.js';
import { discover } from '../pci/discovery.js';
import type { PciIdNames } from '../pci/pciids.js';
import { claimsText, statusText } from './render.js';
import { listTable } from './views.js';
import type { HostUses } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { claimGuards } from '../pci/guards.js';
import type { Inventory } from '../pci/model.js';

export interface DemoDeps {
  realHost: HostPort;
  sim: SimKernel;
  agent: Agent;
  clock: Clock;
  names: PciIdNames;
  out: (s: string) => void;
}

const LAB_NICS = ['0000:01:00.0', '0000:02:00.0'].map((a) => parsePciAddress(a));

/**
 * The devices the demo claims: the QEMU guest's two NICs when the topology has them, else (an
 * imported server, say) up to two functions on a host driver that no guard refuses, GPUs and
 * accelerators first, then NICs, storage, USB; with their IOMMU group companions when the group
 * holds more (`withGroup`), provided no companion is refused either.
 */
export function demoDevices(
  inv: Inventory,
  uses: HostUses,
): { devices: PciAddress[]; withGroup: boolean } {
  if (LAB_NICS.every((a) => inv.byAddress.get(a)?.driver === 'e1000e'))
    return { devices: LAB_NICS, withGroup: false };
  const rank = (cls: string): number => {
    const i = ['03', '12', '02', '01', '0c03', '04'].findIndex((p) => cls.startsWith(p));
    return i < 0 ? 99 : i;
  };
  const free = (a: PciAddress): boolean => {
    const d = inv.byAddress.get(a);
    if (d === undefined) return false;
    if (d.isBridge) return true;
    const g = claimGuards(d, uses);
    return g.hard.length === 0 && g.soft.length === 0;
  };
  const candidates = inv.devices
    .filter((d) => d.driver !== null && d.iommuGroup !== null && !d.isBridge)
    .sort((a, b) => rank(a.classId) - rank(b.classId));
  const picked: PciAddress[] = [];
  const groups = new Set<number>();
  let withGroup = false;
  for (const d of candidates) {
    if (picked.length === 2) break;
    if (d.iommuGroup === null || groups.has(d.iommuGroup)) continue;
    const members = inv.groups.get(d.iommuGroup)?.members ?? [];
    if (!members.every(free)) continue;
    if (members.some((a) => a !== d.address && inv.byAddress.get(a)?.isBridge !== true))
      withGroup = true;
    picked.push(d.address);
    groups.add(d.iommuGroup);
  }
  if (picked.length === 0)
    throw new PtError(
      'PT_ERR_GROUP_NOT_VIABLE',
      'the demo found no device to claim on this topology (every candidate, or something in its IOMMU group, is refused by a guard, or has no driver)',
    );
  return { devices: picked, withGroup };
}

/** The field failure and its recovery, narrated, on the simulated QEMU guest. */
export async function runDemo(d: DemoDeps): Promise<void> {
  const { sim, agent, clock, out } = d;
  const report = await runDoctor(d.realHost);
  const failing = report.checks.filter((c) => c.status === 'fail').map((c) => c.summary);
  out(
    report.ok
      ? 'This host looks able to do passthrough; the demo still runs on a simulated kernel so nothing here changes.\n'
      : `This host cannot do PCI passthrough (${failing.join('; ')}).\nRunning the demo on the simulated kernel of the "${sim.name}" topology instead.\n`,
  );
  out(
    '(The simulated kernel is paced like Debian 6.1 under QEMU: modprobe 400 ms, uevents 250 ms.)\n',
  );
  const inv = await discover(sim.port(), d.names);
  const pick = demoDevices(inv, await sim.port().hostUses());
  const NICS = pick.devices;
  const classes = [...new Set(NICS.map((a) => inv.byAddress.get(a)?.classId.slice(0, 2) ?? ''))];
  out(
    `\n$ passthru --sim ${sim.name} list${classes.length === 1 ? ` --class ${classes.join('')}` : ''}\n${listTable(inv.devices.filter((x) => classes.some((c) => x.classId.startsWith(c))))}\n`,
  );

  out(`\n$ passthru claim ${pick.withGroup ? '--with-group ' : ''}${NICS.join(' ')}\n`);
  const claims = await agent.claim(NICS, { withGroup: pick.withGroup, force: false });
  out(claimsText(claims));

  out('\nAnother component on the node now runs: modprobe -r vfio_pci vfio_pci_core vfio_virqfd\n');
  const t0 = clock.now();
  for (const m of ['vfio_pci', 'vfio_pci_core', 'vfio_virqfd']) sim.rmmod(m);
  out(
    `  right after: ${NICS.map((a) => `${a} on ${sim.driverOf(a) ?? 'no driver'}`).join(', ')}; vfio_pci ${sim.moduleState('vfio_pci') ?? '?'}\n`,
  );
  while (clock.now() - t0 < 5_000) {
    const recs = agent.recoveries.recoveries();
    if (recs.length > 0 && recs.at(-1)?.reboundAt !== null) break;
    await clock.sleep(10);
  }
  const rec = agent.recoveries.recoveries().at(-1);
  if (rec) {
    out(
      `  passthru noticed after ${rec.detectedAt - t0} ms (${rec.via === 'uevent' ? 'a kernel uevent' : 'its poll'}), reloaded ${rec.modules.join(', ')} ` +
        `after ${rec.detectToReloadMs ?? '?'} ms and had ${NICS === LAB_NICS ? 'both NICs' : NICS.length === 1 ? 'it' : `all ${NICS.length}`} verified on vfio-pci after ${rec.detectToReboundMs ?? '?'} ms.\n`,
    );
  } else {
    throw new PtError('PT_ERR_MODULE_UNAVAILABLE', 'the demo saw no recovery within 5 s');
  }
  out(`  now: ${NICS.map((a) => `${a} on ${sim.driverOf(a) ?? 'no driver'}`).join(', ')}\n`);

  out('\n$ passthru status\n');
  out(statusText(await agent.status(0)));

  out(`\n$ passthru release ${NICS.join(' ')}\n`);
  for (const r of await agent.release(NICS))
    out(`${r.address}  released  now on ${r.driver ?? 'no driver'}\n`);
}
