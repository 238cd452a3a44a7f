import type { ErrorCode } from '../errors.js';
import type { HostUses } from '../host/port.js';
import { compareAddresses, type PciAddress } from '../pci/address.js';
import { bridgeKind, claimGuards } from '../pci/guards.js';
import { PASSTHROUGH_DRIVERS, VFIO_PCI, type Inventory, type PciFunction } from '../pci/model.js';
import type { ClaimSpec, DeviceIdentity, LedgerEntry } from '../state/model.js';

/** The vfio modules as the keeper last saw them. */
export interface ModuleHealth {
  /** Every required module is live or built in. */
  ready: boolean;
  /** The keeper is reloading them (it owns the retries); otherwise nobody is. */
  recovering: boolean;
  /** Why they are not ready (modprobe's words), when known. */
  reason: string | null;
}

/** What was observed of the host, plus what the engine knows is pending on it. */
export interface Observed {
  inv: Inventory;
  uses: HostUses;
  /** Groups whose /dev/vfio/<group> node exists. */
  vfioNodes: ReadonlySet<number>;
  modules: ModuleHealth;
  /** Devices with a kernel operation still pending: nothing else is issued to them. */
  busy: ReadonlyMap<PciAddress, { op: string; since: number }>;
  /**
   * Device Serial Numbers read for the devices claims and ledger entries name (never in
   * discovery): null when the device has none or it could not be read; absent when not read.
   */
  serials?: ReadonlyMap<PciAddress, string | null>;
}

/** What users want (claims) and what the node must give back (the ledger). */
export interface Desired {
  claims: Readonly<Record<string, ClaimSpec>>;
  ledger: Readonly<Record<string, LedgerEntry>>;
}

/** Work is keyed by the claim it serves, or by the ledger entry it restores. */
export type WorkKey = PciAddress;

export type Action =
  /** Load the vfio modules once (only when no keeper recovery owns the retries). */
  | { kind: 'ensure-modules'; key: WorkKey }
  | {
      kind: 'bind';
      key: WorkKey;
      address: PciAddress;
      group: number;
      claim: PciAddress;
      /** The driver seen now; recorded as the original only when the ledger has no entry. */
      currentDriver: string | null;
      identity: DeviceIdentity;
    }
  /** Bound to vfio-pci without the override: pin it so a module reload re-binds it. */
  | { kind: 'pin-override'; key: WorkKey; address: PciAddress; group: number }
  /** Give the device back to the ledger's original driver. */
  | {
      kind: 'release';
      key: WorkKey;
      address: PciAddress;
      group: number | null;
      originalDriver: string | null;
    }
  /** The device is verifiably on its original driver: the ledger entry may go. */
  | { kind: 'forget'; key: WorkKey; address: PciAddress };

export type ClaimState =
  'ready' | 'pending' | 'waiting' | 'busy' | 'refused' | 'missing' | 'changed';

export interface ClaimPlan {
  address: PciAddress;
  state: ClaimState;
  /** The functions this claim binds: itself, plus group companions with --with-group. */
  members: PciAddress[];
  group: number | null;
  /** The device's identity now, when present (recorded for claims that have none yet). */
  observedIdentity?: DeviceIdentity;
  code?: ErrorCode;
  message?: string;
}

export type LedgerState = 'held' | 'releasing' | 'absent' | 'changed' | 'busy' | 'restored';

/** Where each ledger entry stands: passthru still owes the host these devices. */
export interface LedgerPlan {
  address: PciAddress;
  state: LedgerState;
  message?: string;
}

export interface Plan {
  actions: Action[];
  claims: ClaimPlan[];
  ledger: LedgerPlan[];
}

/** The device's identity: its ids, and its Device Serial Number when one was read. */
export function identityOf(d: PciFunction, serial?: string | null): DeviceIdentity {
  return {
    vendorId: d.vendorId,
    deviceId: d.deviceId,
    subsystemVendorId: d.subsystemVendorId,
    subsystemDeviceId: d.subsystemDeviceId,
    ...(typeof serial === 'string' ? { serialNumber: serial } : {}),
  };
}

export function identityText(i: DeviceIdentity): string {
  const ids = `${i.vendorId}:${i.deviceId} (subsystem ${i.subsystemVendorId}:${i.subsystemDeviceId})`;
  return i.serialNumber === undefined ? ids : `${ids} serial ${i.serialNumber}`;
}

/**
 * Serials are compared only when both are known: a claim recorded before serials were (or by
 * a reader that could not read config space) is not `changed` for lacking one. Two cards of
 * one model differ only here.
 */
function sameSerial(recorded: string | undefined, now: string | undefined): boolean {
  return recorded === undefined || now === undefined || recorded === now;
}

/** Null when the same card sits there; otherwise what differs. */
function identityChange(want: DeviceIdentity, now: DeviceIdentity): string | null {
  if (
    want.vendorId === now.vendorId &&
    want.deviceId === now.deviceId &&
    want.subsystemVendorId === now.subsystemVendorId &&
    want.subsystemDeviceId === now.subsystemDeviceId &&
    sameSerial(want.serialNumber, now.serialNumber)
  )
    return null;
  return `claimed ${identityText(want)}, found ${identityText(now)}`;
}

function ledgerIdentityChange(e: LedgerEntry, now: DeviceIdentity): string | null {
  const same =
    e.vendorId === now.vendorId &&
    e.deviceId === now.deviceId &&
    (e.subsystemVendorId === undefined || e.subsystemVendorId === now.subsystemVendorId) &&
    (e.subsystemDeviceId === undefined || e.subsystemDeviceId === now.subsystemDeviceId) &&
    sameSerial(e.serialNumber, now.serialNumber);
  if (same) return null;
  const serial = e.serialNumber === undefined ? '' : ` serial ${e.serialNumber}`;
  return `ledger recorded ${e.vendorId}:${e.deviceId}${serial}, found ${identityText(now)}`;
}

/** The device is where the ledger says it was before passthru touched it. */
export function isRestored(e: LedgerEntry, d: PciFunction): boolean {
  return d.driver === e.originalDriver && d.driverOverride !== VFIO_PCI;
}

/** A refusal from the guards, or null when the claim may proceed. */
function guardRefusal(
  c: ClaimSpec,
  members: PciAddress[],
  obs: Observed,
): { code: ErrorCode; message: string } | null {
  const { inv } = obs;
  const verdicts = members.flatMap((m) => {
    const md = inv.byAddress.get(m);
    return md ? [{ m, v: claimGuards(md, obs.uses) }] : [];
  });
  const list = (xs: typeof verdicts, pick: 'hard' | 'soft'): string =>
    xs.map((x) => `${x.m} (${x.v[pick].join('; ')})`).join(', ');
  const hard = verdicts.filter((x) => x.v.hard.length > 0);
  if (hard.length > 0) {
    return {
      code: 'PT_ERR_HOST_CRITICAL',
      message: `refusing to take ${list(hard, 'hard')} from the host; --force does not override this`,
    };
  }
  if (!c.force) {
    const soft = verdicts.filter((x) => x.v.soft.length > 0);
    if (soft.length > 0) {
      return {
        code: 'PT_ERR_HOST_CRITICAL',
        message: `refusing to take ${list(soft, 'soft')} from the host; use --force to override`,
      };
    }
    // Unbinding a physical function's driver tears down its VFs, possibly under running VMs.
    const withVfs = members.filter((m) => {
      const md = inv.byAddress.get(m);
      return md !== undefined && md.driver !== VFIO_PCI && (md.sriovNumVfs ?? 0) > 0;
    });
    if (withVfs.length > 0) {
      return {
        code: 'PT_ERR_HAS_VFS',
        message: `${withVfs.map((m) => `${m} has ${String(inv.byAddress.get(m)?.sriovNumVfs)} active VFs`).join(', ')}: unbinding its driver would remove them, possibly under running VMs; set sriov_numvfs to 0 first or use --force`,
      };
    }
  }
  return null;
}

function busyText(b: { op: string; since: number }, now: number): string {
  return `${b.op} pending in the kernel for ${String(Math.max(0, Math.round((now - b.since) / 1000)))} s`;
}

/**
 * Pure: compares desired claims and the ledger with the observed host and returns the actions
 * that close the gap, each keyed by the claim or ledger entry it serves. Nothing here trusts
 * an earlier pass. `now` only dates "busy for N s".
 */
export function plan(obs: Observed, desired: Desired, now = 0): Plan {
  const { inv } = obs;
  const claims = Object.values(desired.claims).sort((a, b) =>
    compareAddresses(a.address, b.address),
  );
  const claimedDirect = new Set<PciAddress>(claims.map((c) => c.address));
  // Everything a claim covers: kept bound, never released, even while the claim is refused.
  const wanted = new Set<PciAddress>();
  const actions: Action[] = [];
  const out: ClaimPlan[] = [];
  let ensureModulesFor: WorkKey | null = null;

  // Group companions that --with-group claims pull in, so another claim's viability sees them.
  const companions = new Set<PciAddress>();
  for (const c of claims) {
    const d = inv.byAddress.get(c.address);
    if (!c.withGroup || d?.iommuGroup == null) continue;
    for (const m of inv.groups.get(d.iommuGroup)?.members ?? []) {
      const md = inv.byAddress.get(m);
      if (md && bridgeKind(md) === null) companions.add(m);
    }
  }

  for (const c of claims) {
    wanted.add(c.address);
    const d = inv.byAddress.get(c.address);
    if (!d) {
      out.push({
        address: c.address,
        state: 'missing',
        members: [c.address],
        group: null,
        code: 'PT_ERR_DEVICE_NOT_FOUND',
        message: `${c.address} is not present on this host; it is bound when it appears`,
      });
      continue;
    }
    const observedIdentity = identityOf(d, obs.serials?.get(d.address));
    const base = { address: c.address, group: d.iommuGroup, observedIdentity };
    const changed = c.identity ? identityChange(c.identity, observedIdentity) : null;
    if (changed !== null) {
      out.push({
        ...base,
        state: 'changed',
        members: [c.address],
        code: 'PT_ERR_DEVICE_CHANGED',
        message: `a different device sits at ${c.address}: ${changed}; nothing was bound (claim --accept-change ${c.address} to take the new one)`,
      });
      continue;
    }
    if (d.iommuGroup === null) {
      out.push({
        ...base,
        state: 'refused',
        members: [c.address],
        code: 'PT_ERR_NO_IOMMU_GROUP',
        message: `${c.address} has no IOMMU group: the IOMMU is off or the device is not isolated (see passthru doctor)`,
      });
      continue;
    }
    const groupMembers = (inv.groups.get(d.iommuGroup)?.members ?? [c.address]).filter((m) => {
      const md = inv.byAddress.get(m);
      return md !== undefined && bridgeKind(md) === null;
    });
    const members = c.withGroup && bridgeKind(d) === null ? groupMembers : [c.address];
    for (const m of members) wanted.add(m);

    const refusal = guardRefusal(c, members, obs);
    if (refusal) {
      out.push({ ...base, state: 'refused', members, ...refusal });
      continue;
    }
    if (!c.withGroup) {
      const blockers = groupMembers.filter((m) => {
        if (m === c.address || claimedDirect.has(m) || companions.has(m)) return false;
        const drv = inv.byAddress.get(m)?.driver ?? null;
        return drv !== null && !PASSTHROUGH_DRIVERS.includes(drv);
      });
      if (blockers.length > 0) {
        const list = blockers
          .map((b) => `${b} (${inv.byAddress.get(b)?.driver ?? '?'})`)
          .join(', ');
        out.push({
          ...base,
          state: 'refused',
          members,
          code: 'PT_ERR_GROUP_NOT_VIABLE',
          message: `IOMMU group ${String(d.iommuGroup)} is not viable: ${list} ${blockers.length === 1 ? 'is' : 'are'} on a host driver; claim with --with-group to pass the whole group through`,
        });
        continue;
      }
    }

    const busy = members.map((m) => [m, obs.busy.get(m)] as const).find(([, b]) => b);
    if (busy?.[1]) {
      out.push({
        ...base,
        state: 'busy',
        members,
        message: `${busy[0]}: ${busyText(busy[1], now)}`,
      });
      continue;
    }

    const needBind = members.filter((m) => inv.byAddress.get(m)?.driver !== VFIO_PCI);
    if (needBind.length > 0 && !obs.modules.ready) {
      // vfio-pci is not there to bind to: wait for the keeper, or load it once when no keeper
      // recovery owns the retries (a one-shot CLI claim).
      if (!obs.modules.recovering) ensureModulesFor ??= c.address;
      out.push({
        ...base,
        state: 'waiting',
        members,
        code: 'PT_ERR_MODULE_UNAVAILABLE',
        message: `waiting for vfio-pci: ${obs.modules.reason ?? 'not loaded'}`,
      });
      continue;
    }
    for (const m of members) {
      const md = inv.byAddress.get(m);
      if (!md) continue;
      if (md.driver !== VFIO_PCI) {
        actions.push({
          kind: 'bind',
          key: c.address,
          address: m,
          group: d.iommuGroup,
          claim: c.address,
          currentDriver: md.driver,
          identity: identityOf(md, obs.serials?.get(md.address)),
        });
      } else if (md.driverOverride !== VFIO_PCI) {
        actions.push({ kind: 'pin-override', key: c.address, address: m, group: d.iommuGroup });
      }
    }
    const ready = needBind.length === 0 && obs.vfioNodes.has(d.iommuGroup);
    out.push({ ...base, state: ready ? 'ready' : 'pending', members });
  }
  if (ensureModulesFor !== null) actions.unshift({ kind: 'ensure-modules', key: ensureModulesFor });

  const ledger: LedgerPlan[] = [];
  for (const entry of Object.values(desired.ledger).sort((a, b) =>
    compareAddresses(a.address, b.address),
  )) {
    const key = entry.address;
    // A companion stays bound while the claim that pulled it in exists, even when that
    // claim's own device has gone missing (it may come back after a reset or rescan).
    if (
      wanted.has(entry.address) ||
      (entry.claim !== undefined && desired.claims[entry.claim] !== undefined)
    ) {
      ledger.push({ address: key, state: 'held' });
      continue;
    }
    const d = inv.byAddress.get(entry.address);
    if (!d) {
      // Not gone for good until the user says so: it may come back after a rescan or reboot.
      ledger.push({
        address: key,
        state: 'absent',
        message: `${key} is not present; its original driver (${entry.originalDriver ?? 'none'}) is restored when it reappears, or give up with release --abandon`,
      });
      continue;
    }
    const changed = ledgerIdentityChange(entry, identityOf(d, obs.serials?.get(d.address)));
    if (changed !== null) {
      ledger.push({
        address: key,
        state: 'changed',
        message: `a different device sits at ${key} (${changed}); it is left alone`,
      });
      continue;
    }
    const busy = obs.busy.get(entry.address);
    if (busy) {
      ledger.push({ address: key, state: 'busy', message: busyText(busy, now) });
      continue;
    }
    if (isRestored(entry, d)) {
      actions.push({ kind: 'forget', key, address: entry.address });
      ledger.push({ address: key, state: 'restored' });
      continue;
    }
    actions.push({
      kind: 'release',
      key,
      address: entry.address,
      group: d.iommuGroup,
      originalDriver: entry.originalDriver,
    });
    ledger.push({
      address: key,
      state: 'releasing',
      message: `on ${d.driver ?? 'no driver'}, owed back to ${entry.originalDriver ?? 'no driver'}`,
    });
  }
  return { actions, claims: out, ledger };
}
