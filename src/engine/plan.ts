import type { ErrorCode } from '../errors.js';
import type { HostUses } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { claimGuards } from '../pci/guards.js';
import { PASSTHROUGH_DRIVERS, VFIO_PCI, type Inventory } from '../pci/model.js';
import type { State } from '../state/model.js';

/** What one pass observed of the host. */
export interface Observed {
  inv: Inventory;
  uses: HostUses;
  /** Groups whose /dev/vfio/<group> node exists. */
  vfioNodes: Set<number>;
}

export type Action =
  | {
      kind: 'bind';
      address: PciAddress;
      group: number;
      claim: PciAddress;
      currentDriver: string | null;
      vendorId: string;
      deviceId: string;
    }
  /** Bound to vfio-pci without the override: pin it so a module reload re-binds it. */
  | { kind: 'pin-override'; address: PciAddress; group: number }
  | { kind: 'release'; address: PciAddress; group: number | null; originalDriver: string | null }
  /** Ledger entry whose device is already back (or gone): drop it. */
  | { kind: 'forget'; address: PciAddress };

export type ClaimState = 'ready' | 'pending' | 'refused' | 'missing';

export interface ClaimPlan {
  address: PciAddress;
  state: ClaimState;
  /** The functions this claim binds: itself, plus group companions with --with-group. */
  members: PciAddress[];
  group: number | null;
  code?: ErrorCode;
  message?: string;
}

export interface Plan {
  actions: Action[];
  claims: ClaimPlan[];
}

/**
 * Pure: compares desired claims (and the ledger of what passthru bound) with the observed host
 * and returns the actions that close the gap. Nothing here trusts an earlier pass.
 */
export function plan(obs: Observed, state: State): Plan {
  const { inv } = obs;
  const claims = Object.values(state.claims).sort((a, b) => (a.address < b.address ? -1 : 1));
  const claimedDirect = new Set<PciAddress>(claims.map((c) => c.address));
  // Everything a claim covers: kept bound, never released, even while the claim is refused.
  const wanted = new Set<PciAddress>();
  const actions: Action[] = [];
  const out: ClaimPlan[] = [];

  // Group companions that --with-group claims pull in, so another claim's viability sees them.
  const companions = new Set<PciAddress>();
  for (const c of claims) {
    const d = inv.byAddress.get(c.address);
    if (!c.withGroup || d?.iommuGroup == null) continue;
    for (const m of inv.groups.get(d.iommuGroup)?.members ?? []) {
      const md = inv.byAddress.get(m);
      if (md && !md.isBridge) companions.add(m);
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
        message: `${c.address} is not present on this host`,
      });
      continue;
    }
    const refuse = (
      code: ErrorCode,
      message: string,
      members: PciAddress[] = [c.address],
    ): void => {
      out.push({
        address: c.address,
        state: 'refused',
        members,
        group: d.iommuGroup,
        code,
        message,
      });
    };
    if (d.iommuGroup === null) {
      refuse(
        'PT_ERR_NO_IOMMU_GROUP',
        `${c.address} has no IOMMU group: the IOMMU is off or the device is not isolated (see passthru doctor)`,
      );
      continue;
    }
    const groupMembers = (inv.groups.get(d.iommuGroup)?.members ?? [c.address]).filter((m) => {
      const md = inv.byAddress.get(m);
      return md !== undefined && !md.isBridge;
    });
    const members = c.withGroup ? groupMembers : [c.address];
    if (!c.withGroup && d.isBridge) members.splice(0, members.length, c.address);
    for (const m of members) wanted.add(m);

    const verdicts = members.flatMap((m) => {
      const md = inv.byAddress.get(m);
      return md ? [{ m, v: claimGuards(md, obs.uses) }] : [];
    });
    const hard = verdicts.filter((x) => x.v.hard.length > 0);
    const soft = c.force ? [] : verdicts.filter((x) => x.v.soft.length > 0);
    if (hard.length > 0 || soft.length > 0) {
      const list = (xs: typeof verdicts, pick: 'hard' | 'soft'): string =>
        xs.map((x) => `${x.m} (${x.v[pick].join('; ')})`).join(', ');
      refuse(
        'PT_ERR_HOST_CRITICAL',
        hard.length > 0
          ? `refusing to take ${list(hard, 'hard')} from the host; --force does not override this`
          : `refusing to take ${list(soft, 'soft')} from the host; use --force to override`,
        members,
      );
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
        refuse(
          'PT_ERR_GROUP_NOT_VIABLE',
          `IOMMU group ${d.iommuGroup} is not viable: ${list} ${blockers.length === 1 ? 'is' : 'are'} on a host driver; claim with --with-group to pass the whole group through`,
        );
        continue;
      }
    }
    let ready = true;
    for (const m of members) {
      const md = inv.byAddress.get(m);
      if (!md) continue;
      if (md.driver !== VFIO_PCI) {
        ready = false;
        actions.push({
          kind: 'bind',
          address: m,
          group: d.iommuGroup,
          claim: c.address,
          currentDriver: md.driver,
          vendorId: md.vendorId,
          deviceId: md.deviceId,
        });
      } else if (md.driverOverride !== VFIO_PCI) {
        actions.push({ kind: 'pin-override', address: m, group: d.iommuGroup });
      }
    }
    if (ready && !obs.vfioNodes.has(d.iommuGroup)) ready = false;
    out.push({
      address: c.address,
      state: ready ? 'ready' : 'pending',
      members,
      group: d.iommuGroup,
    });
  }

  for (const entry of Object.values(state.ledger)) {
    // A companion stays bound while the claim that pulled it in exists, even when that
    // claim's own device has gone missing (it may come back after a reset or rescan).
    if (wanted.has(entry.address)) continue;
    if (entry.claim !== undefined && state.claims[entry.claim] !== undefined) continue;
    const d = inv.byAddress.get(entry.address);
    if (!d) {
      actions.push({ kind: 'forget', address: entry.address });
    } else if (d.driver === VFIO_PCI || d.driverOverride === VFIO_PCI) {
      actions.push({
        kind: 'release',
        address: entry.address,
        group: d.iommuGroup,
        originalDriver: entry.originalDriver,
      });
    } else {
      actions.push({ kind: 'forget', address: entry.address });
    }
  }
  return { actions, claims: out };
}
