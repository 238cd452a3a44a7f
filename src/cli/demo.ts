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

export interface DemoDeps {
  realHost: HostPort;
  sim: SimKernel;
  agent: Agent;
  clock: Clock;
  names: PciIdNames;
  out: (s: string) => void;
}

const NICS = ['0000:01:00.0', '0000:02:00.0'].map((a) => parsePciAddress(a));

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
  out(
    `\n$ passthru --sim ${sim.name} list --class 02\n${listTable(inv.devices.filter((x) => x.classId.startsWith('02')))}\n`,
  );

  out(`\n$ passthru claim ${NICS.join(' ')}\n`);
  const claims = await agent.claim(NICS, { withGroup: false, force: false });
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
        `after ${rec.detectToReloadMs ?? '?'} ms and had both NICs verified on vfio-pci after ${rec.detectToReboundMs ?? '?'} ms.\n`,
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
