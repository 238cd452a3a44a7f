import type { ErrorCode, PtError } from '../errors.js';
import type { PciAddress } from '../pci/address.js';
import type { ClaimSpec, LedgerEntry } from '../state/model.js';
import type { ClaimPlan, ClaimState, LedgerPlan, LedgerState } from './plan.js';

export type ClaimStatusState = ClaimState | 'error';

export interface ClaimStatus {
  address: PciAddress;
  state: ClaimStatusState;
  withGroup: boolean;
  force: boolean;
  members: PciAddress[];
  group: number | null;
  originalDrivers: Record<string, string | null>;
  code?: ErrorCode;
  message?: string;
  lastChange: number;
  /** When the last attempt failed: the next one is due in this many ms. */
  retryInMs?: number;
}

export interface LedgerStatus {
  address: PciAddress;
  originalDriver: string | null;
  /** The claim that bound it. */
  claim?: PciAddress;
  state: LedgerState;
  code?: ErrorCode;
  message?: string;
}

/**
 * Pure: a claim's status from its plan, the last failure of its work, and its previous status
 * (for `lastChange`). A plan says `pending` while work remains; a failure says why.
 */
export function claimStatus(
  p: ClaimPlan,
  spec: Pick<ClaimSpec, 'withGroup' | 'force'>,
  ledger: Readonly<Record<string, LedgerEntry>>,
  prev: ClaimStatus | undefined,
  now: number,
  err: PtError | undefined,
): ClaimStatus {
  let state: ClaimStatusState = p.state;
  let code = p.code;
  let message = p.message;
  if (p.state === 'pending' && err) {
    state = err.code === 'PT_ERR_MODULE_UNAVAILABLE' ? 'waiting' : 'error';
    code = err.code;
    message = state === 'waiting' ? `waiting for vfio-pci: ${err.message}` : err.message;
  } else if (p.state === 'busy' && err) {
    // Why it is busy: the write we stopped waiting for is still pending in the kernel.
    code = err.code;
    message = `${p.message ?? ''} (${err.message})`;
  }
  const originalDrivers: Record<string, string | null> = {};
  for (const m of p.members) {
    const l = ledger[m];
    if (l) originalDrivers[m] = l.originalDriver;
  }
  const st: ClaimStatus = {
    address: p.address,
    state,
    withGroup: spec.withGroup,
    force: spec.force,
    members: p.members,
    group: p.group,
    originalDrivers,
    lastChange: prev && prev.state === state ? prev.lastChange : now,
  };
  if (code !== undefined) st.code = code;
  if (message !== undefined) st.message = message;
  return st;
}

/** Pure: where a ledger entry stands, and why a release is not done yet. Null once restored. */
export function ledgerStatus(
  lp: LedgerPlan,
  e: LedgerEntry | undefined,
  why: PtError | undefined,
): LedgerStatus | null {
  if (!e || lp.state === 'restored') return null;
  const st: LedgerStatus = {
    address: lp.address,
    originalDriver: e.originalDriver,
    state: lp.state,
  };
  if (e.claim !== undefined) st.claim = e.claim;
  if (lp.state === 'releasing' && why) {
    st.code = why.code;
    st.message =
      why.code === 'PT_ERR_DEVICE_IN_USE'
        ? `held by ${why.message.replace(/^.* is in use by /, '')}`
        : why.message;
  } else if (lp.message !== undefined) st.message = lp.message;
  return st;
}
