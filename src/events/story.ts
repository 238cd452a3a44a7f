import type { ClaimStatus, LedgerStatus } from '../engine/status.js';
import type { PciAddress } from '../pci/address.js';
import type { HistoryRead } from '../state/history.js';
import type { ClaimSpec } from '../state/model.js';
import type { DomainEvent } from './events.js';

/** Every device an event is about: its own address, a claim's members, a loss's devices. */
export function addressesOf(e: DomainEvent): PciAddress[] {
  const out = new Set<PciAddress>();
  if ('address' in e) out.add(e.address);
  if (e.type === 'claim.state') for (const m of e.members) out.add(m);
  if (e.type === 'module.lost') for (const d of e.devices ?? []) out.add(d);
  return [...out];
}

export type StoryKind =
  | 'older'
  | 'claimed'
  | 'unclaimed'
  | 'bound'
  | 'bind-failed'
  | 'refused'
  | 'state'
  | 'module-lost'
  | 'back'
  | 'drift'
  | 'released'
  | 'release-failed'
  | 'abandoned'
  | 'changed';

export interface StoryEntry {
  at: number;
  kind: StoryKind;
  /** One line for people. */
  text: string;
  code?: string;
  /** Who asked (claimed): cli, api, kubernetes. */
  source?: string;
  /** How long something took or lasted: a bind, a recovery, a stretch on vfio-pci. */
  ms?: number;
}

/** Where the device stands now, and what to do when it is not where its claim wants it. */
export interface StoryNow {
  present: boolean;
  driver: string | null;
  /** The claim that covers the device (its own or the one that took it as a companion). */
  claim: PciAddress | null;
  source: string | null;
  state: string | null;
  /** The device is where its claim wants it (ready), or it is not claimed and owes nothing. */
  ok: boolean;
  /** Why not, in one sentence. */
  reason: string | null;
  fix: string | null;
}

/** `passthru why ADDR`: the device's history from the agent's events, and where it stands. */
export interface DeviceStory {
  address: PciAddress;
  /** Entries before this (ms since the epoch) were left out (--since). */
  since: number | null;
  entries: StoryEntry[];
  counts: {
    claims: number;
    binds: number;
    refusals: Record<string, number>;
    losses: number;
    drifts: number;
    releases: number;
  };
  now: StoryNow;
}

/** What the agent knows of the device now. */
export interface StoryState {
  present: boolean;
  driver: string | null;
  claims: Readonly<Record<string, ClaimSpec>>;
  statuses: ClaimStatus[];
  ledger: LedgerStatus[];
  /** Whether an agent is running (it re-applies claims by itself). */
  agentRunning: boolean;
}

export function durationText(ms: number): string {
  if (ms < 1_000) return `${String(Math.round(ms))} ms`;
  const s = ms / 1_000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = s / 60;
  if (m < 60) return `${m.toFixed(m < 10 ? 1 : 0)} min`;
  const h = m / 60;
  if (h < 48) return `${h.toFixed(h < 10 ? 1 : 0)} h`;
  return `${(h / 24).toFixed(1)} d`;
}

/**
 * The story of one device. Events must be oldest first. Claims the device is a member of count
 * as its own (a GPU's audio function taken with --with-group). `since` limits the entries, not
 * what is known about the ongoing stretch (a bind before `since` still dates a loss after it).
 */
export function buildStory(
  history: HistoryRead,
  addr: PciAddress,
  state: StoryState,
  since: number | null = null,
): DeviceStory {
  const own = history.digest[addr] ?? [];
  // Claims that covered the device at some point: their own events belong to its story.
  const keys = new Set<PciAddress>([addr]);
  for (const e of [...own, ...history.events])
    if (e.type === 'claim.state' && e.members.includes(addr)) keys.add(e.address);
  // From the digest: the device's own share, and its claims' claim events from theirs.
  const seen = new Set<string>();
  const older: DomainEvent[] = [];
  for (const e of [
    ...own,
    ...[...keys]
      .filter((k) => k !== addr)
      .flatMap((k) =>
        (history.digest[k] ?? []).filter(
          (e) =>
            (e.type === 'claim.added' ||
              e.type === 'claim.removed' ||
              e.type === 'claim.refused') &&
            e.address === k,
        ),
      ),
  ]) {
    const j = JSON.stringify(e);
    if (!seen.has(j)) {
      seen.add(j);
      older.push(e);
    }
  }
  older.sort((x, y) => x.at - y.at);
  const events = [...older, ...history.events];
  const entries: StoryEntry[] = [];
  const counts: DeviceStory['counts'] = {
    claims: 0,
    binds: 0,
    refusals: {},
    losses: 0,
    drifts: 0,
    releases: 0,
  };
  let boundAt: number | null = null;
  let lostAt: number | null = null;
  let lastState: string | null = null;
  let drifted = false;
  const push = (x: StoryEntry): void => {
    if (since === null || x.at >= since) entries.push(x);
  };
  const refused = (code: string): void => {
    counts.refusals[code] = (counts.refusals[code] ?? 0) + 1;
  };
  const counted = history.older[addr];
  if (counted) {
    const n = (k: string): number => counted.counts[k] ?? 0;
    counts.claims += n('claim.added');
    counts.binds += n('device.bound');
    counts.losses += n('module.lost');
    counts.drifts += n('device.drift');
    counts.releases += n('device.released');
    for (const [k, v] of Object.entries(counted.counts))
      if (k.startsWith('claim.refused:')) counts.refusals[k.slice(14)] = v;
    const total = Object.entries(counted.counts)
      .filter(([k]) => !k.includes(':'))
      .reduce((a, [, v]) => a + v, 0);
    push({
      at: counted.from,
      kind: 'older',
      text: `${String(total)} older events, until ${new Date(counted.to).toISOString()}, are kept only as counts (below)`,
    });
  }
  const offVfio = (at: number): number | undefined => (boundAt === null ? undefined : at - boundAt);
  for (const e of events) {
    switch (e.type) {
      case 'claim.added':
        if (!keys.has(e.address)) break;
        counts.claims++;
        push({
          at: e.at,
          kind: 'claimed',
          text: `claimed${e.address === addr ? '' : ` as part of ${e.address}`} by ${e.source ?? 'an unknown source'}${e.withGroup ? ' with its IOMMU group' : ''}${e.force ? ' (--force)' : ''}`,
          ...(e.source !== undefined ? { source: e.source } : {}),
        });
        break;
      case 'claim.refused':
        if (!keys.has(e.address)) break;
        refused(e.code);
        push({ at: e.at, kind: 'refused', text: `claim refused: ${e.message}`, code: e.code });
        break;
      case 'claim.removed':
        if (!keys.has(e.address)) break;
        push({ at: e.at, kind: 'unclaimed', text: `claim ${e.address} removed (release)` });
        break;
      case 'claim.accepted_change':
        if (e.address !== addr) break;
        push({
          at: e.at,
          kind: 'changed',
          text: `a new card (${e.vendorId}:${e.deviceId}) accepted at this address`,
        });
        break;
      case 'claim.state': {
        if (!e.members.includes(addr) && e.address !== addr) break;
        if (e.state === 'ready' && lostAt !== null) {
          const ms = e.at - lostAt;
          push({
            at: e.at,
            kind: 'back',
            text: `back on vfio-pci ${durationText(ms)} after the module loss`,
            ms,
          });
          lostAt = null;
        } else if (e.state !== lastState) {
          if (e.code !== undefined && e.state === 'refused') refused(e.code);
          push({
            at: e.at,
            kind: 'state',
            text: `claim ${e.address} ${e.state}${e.message !== undefined ? `: ${e.message}` : ''}`,
            ...(e.code !== undefined ? { code: e.code } : {}),
          });
        }
        // Ready means on vfio-pci, whoever put it there (the module's own re-bind after a reload).
        if (e.state === 'ready') {
          boundAt ??= e.at;
          drifted = false;
        }
        lastState = e.state;
        break;
      }
      case 'device.bound':
        if (e.address !== addr) break;
        counts.binds++;
        boundAt = e.at;
        drifted = false;
        push({
          at: e.at,
          kind: 'bound',
          text: `bound to vfio-pci from ${e.from ?? 'no driver'} in ${durationText(e.ms)}`,
          ms: e.ms,
        });
        break;
      case 'device.bind_failed':
        if (e.address !== addr) break;
        push({
          at: e.at,
          kind: 'bind-failed',
          text: `bind failed: ${e.message}${e.rolledBack ? ' (rolled back to its original driver)' : ''}`,
          code: e.code,
        });
        break;
      case 'device.drift': {
        // The keeper may see one drift twice (uevent, then its poll) before the re-bind.
        if (e.address !== addr || drifted) break;
        drifted = true;
        counts.drifts++;
        const ms = offVfio(e.at);
        push({
          at: e.at,
          kind: 'drift',
          text: `someone else unbound it from vfio-pci: now on ${e.driver ?? 'no driver'}${ms !== undefined ? ` after ${durationText(ms)} on vfio-pci` : ''}`,
          ...(ms !== undefined ? { ms } : {}),
        });
        boundAt = null;
        break;
      }
      case 'module.lost': {
        if (!(e.devices ?? []).includes(addr)) break;
        counts.losses++;
        lostAt = e.at;
        const ms = offVfio(e.at);
        push({
          at: e.at,
          kind: 'module-lost',
          text: `vfio modules lost (${e.modules.join(', ')}, seen by ${e.via}): it fell off vfio-pci${ms !== undefined ? ` after ${durationText(ms)} on it` : ''}`,
          ...(ms !== undefined ? { ms } : {}),
        });
        boundAt = null;
        break;
      }
      case 'device.released': {
        if (e.address !== addr) break;
        counts.releases++;
        const ms = offVfio(e.at);
        push({
          at: e.at,
          kind: 'released',
          text: `released to ${e.driver ?? 'no driver'}${e.driver === e.expected ? ' (its original driver)' : `, expected ${e.expected ?? 'no driver'}`}${ms !== undefined ? ` after ${durationText(ms)} on vfio-pci` : ''}`,
          ...(ms !== undefined ? { ms } : {}),
        });
        boundAt = null;
        break;
      }
      case 'device.release_failed':
        if (e.address !== addr) break;
        push({
          at: e.at,
          kind: 'release-failed',
          text: `release failed: ${e.message}`,
          code: e.code,
        });
        break;
      case 'ledger.abandoned':
        if (e.address !== addr) break;
        push({
          at: e.at,
          kind: 'abandoned',
          text: `restoring ${e.originalDriver ?? 'no driver'} given up: ${e.reason}`,
        });
        break;
      default:
        break;
    }
  }
  return { address: addr, since, entries, counts, now: whereNow(addr, state) };
}

/** What fixes a claim that is not ready, by the code it reports. */
function fixFor(
  code: string | undefined,
  state: string,
  addr: PciAddress,
  running: boolean,
): string {
  const retry = running
    ? 'the agent retries by itself; `passthru status` shows when'
    : `start the agent (\`passthru agent\`) or run \`passthru claim ${addr}\` again`;
  switch (code) {
    case 'PT_ERR_MODULE_UNAVAILABLE':
      return `make vfio-pci loadable (\`passthru doctor\` says why it is not); ${retry}`;
    case 'PT_ERR_HOST_CRITICAL':
      return `stop the host's use of it, or claim it with --force if that use can go`;
    case 'PT_ERR_GROUP_NOT_VIABLE':
      return `claim it with --with-group, or move the other members of its IOMMU group off their host drivers`;
    case 'PT_ERR_NO_IOMMU_GROUP':
      return 'turn the IOMMU on (`passthru doctor`, `passthru boot-config`)';
    case 'PT_ERR_HAS_VFS':
      return 'set sriov_numvfs to 0 first, or claim with --force';
    case 'PT_ERR_DEVICE_CHANGED':
      return `\`passthru claim --accept-change ${addr}\` if the new card is the one to pass through`;
    case 'PT_ERR_DEVICE_NOT_FOUND':
      return 'reseat it or rescan the bus; it is bound as soon as it appears';
    case 'PT_ERR_DEVICE_IN_USE':
      return 'stop the VM that holds it';
    default:
      return state === 'pending' || state === 'busy'
        ? running
          ? 'nothing: the agent is completing it'
          : retry
        : retry;
  }
}

function whereNow(addr: PciAddress, s: StoryState): StoryNow {
  const status =
    s.statuses.find((c) => c.address === addr) ?? s.statuses.find((c) => c.members.includes(addr));
  const claimKey: PciAddress | null =
    status?.address ?? (s.claims[addr] !== undefined ? addr : null);
  const spec = claimKey !== null ? s.claims[claimKey] : undefined;
  const base = {
    present: s.present,
    driver: s.driver,
    claim: claimKey,
    source: spec?.source ?? null,
  };
  if (claimKey !== null) {
    const state = status?.state ?? 'unknown';
    if (state === 'ready' && s.driver === 'vfio-pci')
      return { ...base, state, ok: true, reason: null, fix: null };
    const reason = !s.present
      ? `${addr} is not on the bus, so its claim cannot bind it`
      : s.driver !== 'vfio-pci' && state === 'ready'
        ? `${addr} is on ${s.driver ?? 'no driver'} although its claim is ready: it moved since the agent last looked`
        : (status?.message ??
          `its claim is ${state} and it is on ${s.driver ?? 'no driver'}, not vfio-pci`);
    return {
      ...base,
      state,
      ok: false,
      reason,
      fix: fixFor(
        status?.code ?? (!s.present ? 'PT_ERR_DEVICE_NOT_FOUND' : undefined),
        state,
        addr,
        s.agentRunning,
      ),
    };
  }
  const owed = s.ledger.find((l) => l.address === addr);
  if (owed)
    return {
      ...base,
      state: `owed back to ${owed.originalDriver ?? 'no driver'}`,
      ok: false,
      reason:
        owed.message ??
        `its release is pending: passthru still owes it back to ${owed.originalDriver ?? 'no driver'}`,
      fix: `${s.agentRunning ? 'the agent retries the release by itself' : 'run `passthru release` again or start the agent'}; \`passthru release --abandon ${addr}\` gives up`,
    };
  return { ...base, state: null, ok: true, reason: null, fix: null };
}
