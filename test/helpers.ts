import { Agent, type AgentDeps } from '../src/agent/agent.js';
import { AgentLifecycle, type ApiContext } from '../src/agent/routes.js';
import { buildApiServer } from '../src/process/socket-server.js';
import { ManualClock } from '../src/host/clock.js';
import type { HostPort } from '../src/host/port.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { TOPOLOGY_FORMAT, type Topology } from '../src/topology/format.js';
import { parsePciAddress, type PciAddress } from '../src/pci/address.js';
import type { DomainEvent } from '../src/events/events.js';
import { MemoryHistory } from '../src/state/history.js';
import { MemoryStore, type StateStore } from '../src/state/model.js';
import { silentLogger } from '../src/util/logger.js';

export const NIC = [1, 2, 3, 4].map((b) => parsePciAddress(`0000:0${b}:00.0`));
export const MF0 = parsePciAddress('0000:00:05.0');
export const MF1 = parsePciAddress('0000:00:05.1');
export const EDU = parsePciAddress('0000:00:06.0');
export const ROOTFS = parsePciAddress('0000:00:02.0');

/** Four e1000e NICs in their own groups, a two-function e1000 sharing one, edu, the 9p root. */
export function labTopology(release = '6.1.0-26-amd64'): Topology {
  return {
    format: TOPOLOGY_FORMAT,
    name: 'lab',
    kernel: { release },
    drivers: [
      { name: 'e1000e', ids: ['8086:10d3'] },
      { name: 'e1000', ids: ['8086:100e'] },
      { name: 'virtio-pci', module: 'virtio_pci', ids: ['1af4:*'] },
      { name: 'pcieport', module: null, ids: ['class:060400'] },
    ],
    devices: [
      { address: '0000:00:00.0', vendor: '8086', device: '29c0', class: '060000', iommuGroup: 0 },
      {
        address: ROOTFS,
        vendor: '1af4',
        device: '1009',
        class: '000200',
        driver: 'virtio-pci',
        iommuGroup: 5,
      },
      {
        address: MF0,
        vendor: '8086',
        device: '100e',
        class: '020000',
        driver: 'e1000',
        iommuGroup: 7,
      },
      {
        address: MF1,
        vendor: '8086',
        device: '100e',
        class: '020000',
        driver: 'e1000',
        iommuGroup: 7,
      },
      {
        address: EDU,
        vendor: '1234',
        device: '11e8',
        class: '00ff00',
        driver: null,
        iommuGroup: 8,
      },
      ...NIC.map((a, i) => ({
        address: a,
        vendor: '8086',
        device: '10d3',
        class: '020000',
        driver: 'e1000e',
        iommuGroup: 10 + i,
        numaNode: 0,
      })),
    ],
    hostUses: [{ address: ROOTFS, use: '9p filesystem at / (hostfs)' }],
  };
}

export interface Rig {
  clock: ManualClock;
  kernel: SimKernel;
  store: MemoryStore;
  history: MemoryHistory;
  agent: Agent;
  ac: AbortController;
  running: Promise<void> | null;
}

export function makeAgent(
  kernel: SimKernel,
  clock: ManualClock,
  store: StateStore,
  host: HostPort = kernel.port(),
  extra: Partial<AgentDeps> = {},
): { agent: Agent; history: MemoryHistory } {
  const history = new MemoryHistory();
  let seed = 7;
  const agent = new Agent({
    host,
    store,
    history,
    clock,
    logger: silentLogger(),
    random: () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    },
    ...extra,
  });
  return { agent, history };
}

export interface RigOptions {
  /** Start the engine and keeper loops (default true). */
  run?: boolean;
  /** Without a uevent source the keeper relies on its poll alone (default true). */
  uevents?: boolean;
  /** Wrap the kernel's port, e.g. to act between the agent's calls. */
  wrap?: (base: HostPort, kernel: SimKernel) => HostPort;
}

/** Without uevents: the same port, but watchUevents reports no source. */
export function pollingOnly(base: HostPort): HostPort {
  return Object.assign(Object.create(base) as HostPort, { watchUevents: () => null });
}

export async function rig(topo: Topology = labTopology(), opts: RigOptions = {}): Promise<Rig> {
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(topo, clock);
  const store = new MemoryStore();
  let host = kernel.port();
  if (opts.uevents === false) host = pollingOnly(host);
  if (opts.wrap) host = opts.wrap(host, kernel);
  const { agent, history } = makeAgent(kernel, clock, store, host);
  await agent.start({ loadModules: opts.run !== false });
  const ac = new AbortController();
  const running = opts.run === false ? null : agent.run(ac.signal);
  return { clock, kernel, store, history, agent, ac, running };
}

export async function stop(r: Rig): Promise<void> {
  r.ac.abort();
  await r.clock.advance(1);
  await r.running;
}

export function onVfio(k: SimKernel, addrs: PciAddress[]): boolean {
  return addrs.every((a) => k.driverOf(a) === 'vfio-pci');
}

export const VFIO_SET_61 = [
  'irqbypass',
  'vfio',
  'vfio_virqfd',
  'vfio_iommu_type1',
  'vfio_pci_core',
  'vfio_pci',
];

export function modulesLive(k: SimKernel, names = VFIO_SET_61): boolean {
  return names.every((m) => k.moduleState(m) === 'live');
}

export function eventsOf<T extends DomainEvent['type']>(
  h: MemoryHistory,
  type: T,
): Extract<DomainEvent, { type: T }>[] {
  return h.events.filter((e): e is Extract<DomainEvent, { type: T }> => e.type === type);
}

/** The agent's API app over a rig, as the process serves it (no listener; `app.inject`). */
export async function apiServer(
  r: Rig,
  opts: { sim?: boolean; running?: boolean; maxInFlight?: number } = {},
): Promise<{ server: Awaited<ReturnType<typeof buildApiServer>>; lifecycle: AgentLifecycle }> {
  const lifecycle = new AgentLifecycle();
  if (opts.running !== false) lifecycle.running();
  const ctx: ApiContext = {
    agent: r.agent,
    sim: opts.sim === false ? null : r.kernel,
    lifecycle,
    logger: silentLogger(),
  };
  const server = await buildApiServer(
    ctx,
    opts.maxInFlight !== undefined ? { maxInFlight: opts.maxInFlight } : {},
  );
  return { server, lifecycle };
}
