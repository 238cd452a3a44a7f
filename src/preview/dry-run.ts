import { Agent, type ReleaseOutcome } from '../agent/agent.js';
import type { ClaimStatus } from '../engine/engine.js';
import { isPtError } from '../errors.js';
import { MemoryHistory } from '../state/history.js';
import type { Clock } from '../host/clock.js';
import type { HostPort, HostUses } from '../host/port.js';
import { SimKernel } from '../host/sim/kernel.js';
import { vfioModuleGraph } from '../kernel/vfio-modules.js';
import { compareAddresses, type PciAddress } from '../pci/address.js';
import { discover } from '../pci/discovery.js';
import { VFIO_PCI } from '../pci/model.js';
import type { PciIdNames } from '../pci/pciids.js';
import { inventoryToTopology } from '../pci/snapshot.js';
import { emptyState, MemoryStore } from '../state/model.js';
import type { Claims, Ledger } from '../state/stores.js';
import type { Topology, TopologyModule } from '../topology/format.js';
import { silentLogger } from '../util/logger.js';
import { RecordingHost } from './recording-host.js';

/**
 * One write or module load the request makes, in order. `op` and `address` and `value` are
 * exactly what the simulated kernel records of the call (SimCall), `path` the sysfs file a
 * Linux host writes (null for modprobe).
 */
export interface PlanStep {
  op:
    | 'driver_override'
    | 'unbind'
    | 'bind'
    | 'drivers_probe'
    | 'rescan'
    | 'sriov_numvfs'
    | 'remove'
    | 'modprobe';
  address?: PciAddress;
  /** The text written (`\n` clears driver_override), or the module name for modprobe. */
  value: string;
  path: string | null;
  /** For unbind: the driver the device leaves. */
  from?: string | null;
}

/** A driver this request unbinds, and what the host uses that device for now. */
export interface UnbindImpact {
  address: PciAddress;
  driver: string;
  /** Host uses of the device found by the host-critical tracer (mounts, swap, addresses, boot VGA). */
  serves: string[];
}

export interface Refusal {
  address: PciAddress | null;
  /** A PT_ERR_* code (docs/errors.md). */
  code: string;
  message: string;
}

/**
 * The answer of `claim --dry-run` / `release --dry-run` and of POST /v1/claims/dry-run and
 * /v1/release/dry-run (docs/api.md). The plan is what the real engine did on a simulated copy
 * of the host, so it is by construction what a claim or release does now; the guards (host
 * uses, VM holders) were evaluated on the real host.
 */
export interface DryRunPlan {
  kind: 'claim' | 'release';
  /** The host the copy was taken from. */
  host: string;
  addresses: PciAddress[];
  /** Every write and modprobe of this request, in order. Empty when refused. */
  steps: PlanStep[];
  /** Group companions a --with-group claim takes along, by claim. */
  companions: { address: PciAddress; members: PciAddress[] }[];
  unbinds: UnbindImpact[];
  refusals: Refusal[];
  /** What the request would answer: claim statuses, or release outcomes. */
  claims?: ClaimStatus[];
  released?: ReleaseOutcome[];
  /**
   * Writes that re-applying the existing claims and ledger needs first (a direct-mode command
   * or an agent start makes them before this request); usually empty.
   */
  repairs: PlanStep[];
}

export interface DryRunDeps {
  /** The real host: read, never written. */
  host: HostPort;
  names?: PciIdNames;
  clock: Clock;
  /** The desired state as it stands (copied, never changed). */
  claims: Readonly<Claims>;
  ledger: Readonly<Ledger>;
}

export interface DryRunClaimOptions {
  withGroup: boolean;
  force: boolean;
  acceptChange?: boolean;
}

async function moduleStates(host: HostPort, release: string): Promise<TopologyModule[]> {
  const graph = vfioModuleGraph(release);
  const st = await host.moduleStatus(graph.map((m) => m.name));
  const out: TopologyModule[] = [];
  for (const m of graph) {
    const s = st.get(m.name) ?? null;
    let state: TopologyModule['state'];
    let blocked: string | undefined;
    if (s?.state === 'builtin') state = 'builtin';
    else if (s?.state === 'live') state = 'live';
    else {
      const a = await host.moduleAvailability(m.name);
      state = a.kind === 'builtin' ? 'builtin' : a.kind === 'missing' ? 'missing' : 'available';
      blocked = a.blocked;
    }
    out.push({ name: m.name, deps: m.deps, state, ...(blocked !== undefined ? { blocked } : {}) });
  }
  return out;
}

/**
 * The host as a topology: devices, the vfio modules as they are, and the original drivers the
 * ledger names that are registered here (so a release's probe finds them on the copy as it
 * would on the host).
 */
async function copyOfHost(
  d: DryRunDeps,
): Promise<{ topo: Topology; uses: HostUses; bootVga: Set<PciAddress> }> {
  const [inv, kernel, uses, drivers] = await Promise.all([
    discover(d.host, d.names),
    d.host.kernelInfo(),
    d.host.hostUses(),
    d.host.listDrivers(),
  ]);
  const topo = inventoryToTopology(inv, 'dry-run', kernel, uses);
  topo.modules = await moduleStates(d.host, kernel.release);
  const owed = new Map<string, Set<string>>();
  for (const e of Object.values(d.ledger)) {
    if (e.originalDriver === null || !drivers.includes(e.originalDriver)) continue;
    const ids = owed.get(e.originalDriver) ?? new Set<string>();
    ids.add(`${e.vendorId}:${e.deviceId}`);
    owed.set(e.originalDriver, ids);
  }
  for (const dev of inv.devices)
    if (dev.driver !== null && owed.has(dev.driver))
      owed.get(dev.driver)?.add(`${dev.vendorId}:${dev.deviceId}`);
  topo.drivers = [...owed].map(([name, ids]) => ({ name, ids: [...ids].sort() }));
  const bootVga = new Set(inv.devices.filter((x) => x.bootVga).map((x) => x.address));
  return { topo, uses, bootVga };
}

interface Rehearsal {
  agent: Agent;
  host: RecordingHost;
  repairs: PlanStep[];
  uses: HostUses;
  bootVga: Set<PciAddress>;
}

/** An agent on a simulated copy of the host, started (its own repairs recorded apart). */
async function rehearse(d: DryRunDeps): Promise<Rehearsal> {
  const { topo, uses, bootVga } = await copyOfHost(d);
  const kernel = new SimKernel(topo, d.clock);
  const host = new RecordingHost(kernel.port(), d.host, uses);
  const store = new MemoryStore();
  store.setRaw(
    JSON.stringify({
      ...emptyState(),
      claims: structuredClone(d.claims),
      ledger: structuredClone(d.ledger),
    }),
  );
  const agent = new Agent({
    host,
    store,
    history: new MemoryHistory(),
    clock: d.clock,
    logger: silentLogger(),
    ...(d.names ? { names: d.names } : {}),
  });
  await agent.start();
  return { agent, host, repairs: host.take(), uses, bootVga };
}

function refusalOf(e: unknown, addresses: PciAddress[]): Refusal {
  if (!isPtError(e)) throw e;
  return {
    address: addresses.length === 1 ? (addresses[0] ?? null) : null,
    code: e.code,
    message: e.message,
  };
}

/** Each driver the steps unbind, with what the host uses its device for now (real host). */
async function impacts(
  real: HostPort,
  steps: PlanStep[],
  uses: HostUses,
  bootVga: Set<PciAddress>,
): Promise<UnbindImpact[]> {
  const out: UnbindImpact[] = [];
  for (const s of steps) {
    if (s.op !== 'unbind' || s.address === undefined || s.from == null) continue;
    const a = s.address;
    const mine = uses.uses.filter((u) => u.address === a).map((u) => u.use);
    const serves = [...mine];
    // Unbinding from vfio-pci takes nothing from the host: its class devices are not there yet.
    const cls = s.from === VFIO_PCI ? { net: [], block: [], drm: [] } : await real.classDevices(a);
    for (const n of cls.net)
      if (!mine.some((u) => u.includes(`interface ${n} `)))
        serves.push(`network interface ${n} (no global address or route seen)`);
    for (const b of cls.block) {
      const mounts = uses.backing
        .filter((k) => k.devices.includes(a) && k.via.includes(b))
        .map((k) => k.target);
      serves.push(
        `block device ${b}${mounts.length > 0 ? ` (under ${mounts.join(', ')})` : ' (no mount or swap seen)'}`,
      );
    }
    for (const c of cls.drm) serves.push(`DRM card ${c}`);
    if (bootVga.has(a)) serves.push('boot VGA: the console the firmware set up');
    out.push({ address: a, driver: s.from, serves: [...new Set(serves)] });
  }
  return out;
}

/** A dry run of what this agent would do: its host, its clock, its desired state as it stands. */
export function dryRunDeps(agent: Agent): DryRunDeps {
  return {
    host: agent.host,
    clock: agent.clock,
    claims: agent.engine.claims,
    ledger: agent.engine.ledger,
  };
}

/**
 * Rehearses one action on a fresh copy of the host: the plan's steps are what the copy saw
 * written, and a thrown error is the plan's refusal, as the real command would report it.
 */
async function rehearsePlan(
  d: DryRunDeps,
  kind: DryRunPlan['kind'],
  addresses: PciAddress[],
  act: (agent: Agent, plan: DryRunPlan) => Promise<void>,
): Promise<DryRunPlan> {
  const r = await rehearse(d);
  const plan: DryRunPlan = {
    kind,
    host: d.host.description,
    addresses,
    steps: [],
    companions: [],
    unbinds: [],
    refusals: [],
    repairs: r.repairs,
  };
  try {
    await act(r.agent, plan);
  } catch (e) {
    plan.refusals.push(refusalOf(e, addresses));
  }
  plan.steps = r.host.take();
  plan.unbinds = await impacts(d.host, plan.steps, r.uses, r.bootVga);
  return plan;
}

/** What `passthru claim ADDR...` would do now: nothing on the host is written. */
export function dryRunClaim(
  d: DryRunDeps,
  addresses: PciAddress[],
  opts: DryRunClaimOptions,
): Promise<DryRunPlan> {
  return rehearsePlan(d, 'claim', addresses, async (agent, plan) => {
    const claims = await agent.claim(addresses, {
      withGroup: opts.withGroup,
      force: opts.force,
      acceptChange: opts.acceptChange === true,
      source: 'dry-run',
    });
    plan.claims = claims;
    for (const c of claims) {
      if ((c.state === 'refused' || c.state === 'changed') && c.code !== undefined)
        plan.refusals.push({ address: c.address, code: c.code, message: c.message ?? '' });
      const others = c.members.filter((m) => m !== c.address);
      if (others.length > 0) plan.companions.push({ address: c.address, members: others });
    }
  });
}

/** What `passthru release ADDR...` would do now: nothing on the host is written. */
export function dryRunRelease(
  d: DryRunDeps,
  addresses: PciAddress[],
  opts: { wait?: boolean } = {},
): Promise<DryRunPlan> {
  return rehearsePlan(d, 'release', addresses, async (agent, plan) => {
    const released = await agent.release(addresses, { wait: opts.wait === true });
    plan.released = released;
    for (const o of released)
      if (!o.ok && o.code !== undefined)
        plan.refusals.push({ address: o.address, code: o.code, message: o.message ?? '' });
    const members = released.map((o) => o.address).filter((a) => !addresses.includes(a));
    if (members.length > 0 && addresses.length === 1 && addresses[0] !== undefined)
      plan.companions.push({ address: addresses[0], members: members.sort(compareAddresses) });
  });
}
