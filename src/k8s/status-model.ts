import type { ClaimStatus } from '../engine/engine.js';
import type { HostUses } from '../host/port.js';
import type { KeeperStatus } from '../keeper/keeper.js';
import { claimGuards } from '../pci/guards.js';
import { VFIO_PCI, type PciFunction } from '../pci/model.js';
import type { PciIdNames } from '../pci/pciids.js';
import { description, perDeviceResourceName, resourceNameOf } from './names.js';
import { OVERRIDE_RESOURCE_ANNOTATION, POOLED_RESOURCE_ANNOTATION } from './resources.js';
import type { Condition, PciDeviceClaimStatus, PciDeviceStatus } from './schemas.js';

/**
 * Pure mapping from what the node observes to the status objects passthru writes. Comparing
 * these with what the API server holds decides every write: equal means no call at all.
 */

/** The pooled resource name of a function, from pci.ids (for resourceNamePlan). */
export function pooledNameOf(f: PciFunction, names: PciIdNames): string {
  return resourceNameOf(f, names);
}

/** PCIDevice status for a function, under the resource name resourceNamePlan decided. */
export function deviceStatus(f: PciFunction, node: string, resourceName: string): PciDeviceStatus {
  return {
    address: f.address,
    vendorId: f.vendorId,
    deviceId: f.deviceId,
    classId: f.classId.slice(0, 4),
    nodeName: node,
    resourceName,
    description: description(f),
    kernelDriverInUse: f.driver ?? '',
    iommuGroup: f.iommuGroup === null ? '' : String(f.iommuGroup),
    subsystemVendorId: f.subsystemVendorId,
    subsystemDeviceId: f.subsystemDeviceId,
    // Absent when unknown: a null in a merge patch deletes the field, so it would never compare
    // equal and every pass would write it again.
    ...(f.numaNode !== null ? { numaNode: f.numaNode } : {}),
  };
}

/** What the device conditions are computed from, beyond the function itself. */
export interface DeviceContext {
  uses: HostUses;
  /** The passthru claim on this node whose members include the function, if any. */
  claim: ClaimStatus | undefined;
  nowIso: string;
}

const MESSAGE_MAX = 512;
const clip = (s: string): string =>
  s.length <= MESSAGE_MAX ? s : `${s.slice(0, MESSAGE_MAX - 1)}…`;

/**
 * PCIDevice conditions (passthru's, additive; Harvester writes none):
 * - HostCritical: the host uses the function (a mount, a route, the console, the platform),
 *   or cannot rule it out; the guard the engine applies to every claim.
 * - Claimable: a PCIDeviceClaim for it would be accepted (Kubernetes claims never --force):
 *   not host-critical, in an IOMMU group, no active SR-IOV virtual functions.
 * - Bound: on vfio-pci for a ready passthru claim.
 * Each depends only on the host and the claim, so an unchanged node computes equal conditions
 * (lastTransitionTime kept) and writes nothing.
 */
export function deviceConditions(
  prev: Condition[] | undefined,
  f: PciFunction,
  ctx: DeviceContext,
): Condition[] {
  const v = claimGuards(f, ctx.uses);
  const why = [...v.hard, ...v.soft];
  let conds = setCondition(
    prev ?? [],
    why.length > 0
      ? { type: 'HostCritical', status: 'True', reason: 'HostUse', message: clip(why.join('; ')) }
      : {
          type: 'HostCritical',
          status: 'False',
          reason: 'NoHostUse',
          message: 'no host use found',
        },
    ctx.nowIso,
  );
  const vfs = f.sriovNumVfs ?? 0;
  const no: [string, string] | null =
    why.length > 0
      ? ['HostCritical', 'the host needs it (see HostCritical)']
      : f.iommuGroup === null
        ? ['NoIommuGroup', 'not in an IOMMU group (IOMMU off in firmware or kernel)']
        : vfs > 0
          ? ['HasVirtualFunctions', `${vfs} SR-IOV virtual functions are active`]
          : null;
  conds = setCondition(
    conds,
    no === null
      ? {
          type: 'Claimable',
          status: 'True',
          reason: 'Claimable',
          message: 'a claim would be accepted',
        }
      : { type: 'Claimable', status: 'False', reason: no[0], message: no[1] },
    ctx.nowIso,
  );
  const c = ctx.claim;
  const bound = c?.state === 'ready' && f.driver === VFIO_PCI;
  conds = setCondition(
    conds,
    bound
      ? {
          type: 'Bound',
          status: 'True',
          reason: 'Bound',
          message: `on vfio-pci for the claim of ${c.address}`,
        }
      : c === undefined
        ? { type: 'Bound', status: 'False', reason: 'NotClaimed', message: 'no passthru claim' }
        : {
            type: 'Bound',
            status: 'False',
            reason: c.code ?? REASON[c.state],
            message: clip(c.message ?? `claim ${c.state}, on ${f.driver ?? 'no driver'}`),
          },
    ctx.nowIso,
  );
  return conds;
}

export interface ResourceNamePlan {
  /** The PCIDevice's status.resourceName. */
  resourceName: string;
  /** Annotations to merge-patch first (null deletes one); null when they are right. */
  annotations: Record<string, string | null> | null;
}

/**
 * A PCIDevice's resource name, as Harvester decides it: the override annotation wins; else the
 * name already written (never recomputed); else the pooled rule from pci.ids. A claim with
 * `disableResourcePooling` puts its per-device name `<vendor>/<PCIDevice name>` in the override
 * annotation (Harvester's ensureIndividualDeviceResourceName) and passthru notes the pooled name
 * beside it, so the device returns to exactly that name when the claim goes. An override
 * passthru did not write (a vGPU type) is left alone.
 */
export function resourceNamePlan(
  annotations: Readonly<Record<string, string>> | undefined,
  written: unknown,
  computed: () => string,
  perDevice: boolean,
  node: string,
  address: string,
): ResourceNamePlan {
  const override = annotations?.[OVERRIDE_RESOURCE_ANNOTATION];
  const note = annotations?.[POOLED_RESOURCE_ANNOTATION];
  const ours = note !== undefined && note !== '';
  const pooled = ours
    ? note
    : typeof written === 'string' && written !== '' && written !== override
      ? written
      : computed();
  if (perDevice && (override === undefined || ours)) {
    const want = perDeviceResourceName(pooled.split('/')[0] ?? '', node, address);
    const right = override === want && note === pooled;
    return {
      resourceName: want,
      annotations: right
        ? null
        : { [OVERRIDE_RESOURCE_ANNOTATION]: want, [POOLED_RESOURCE_ANNOTATION]: pooled },
    };
  }
  if (!perDevice && ours) {
    return {
      resourceName: pooled,
      annotations: { [OVERRIDE_RESOURCE_ANNOTATION]: null, [POOLED_RESOURCE_ANNOTATION]: null },
    };
  }
  return {
    resourceName: override !== undefined && override !== '' ? override : pooled,
    annotations: null,
  };
}

/** Harvester lists no bridges (class 0604) as PCIDevices. */
export function listedAsDevice(f: PciFunction): boolean {
  return !f.isBridge && !f.classId.startsWith('0604');
}

/**
 * Sets a condition, keeping lastTransitionTime when the status did not change, so an unchanged
 * condition compares equal and costs no write.
 */
export function setCondition(
  list: Condition[],
  c: Omit<Condition, 'lastTransitionTime'>,
  nowIso: string,
): Condition[] {
  const prev = list.find((x) => x.type === c.type);
  const next: Condition = {
    ...c,
    lastTransitionTime:
      prev !== undefined && prev.status === c.status && prev.lastTransitionTime !== undefined
        ? prev.lastTransitionTime
        : nowIso,
  };
  return [...list.filter((x) => x.type !== c.type), next].sort((a, b) =>
    a.type < b.type ? -1 : 1,
  );
}

const REASON: Record<ClaimStatus['state'], string> = {
  ready: 'Bound',
  pending: 'Binding',
  waiting: 'WaitingForVfio',
  refused: 'Refused',
  missing: 'DeviceMissing',
  error: 'BindFailed',
  busy: 'InUse',
  changed: 'DeviceChanged',
};

/** Claim status from the engine's view of the claim (null: the engine has no such claim). */
export function claimStatus(
  prev: PciDeviceClaimStatus | undefined,
  c: ClaimStatus | null,
  keeper: KeeperStatus,
  generation: number,
  nowIso: string,
): PciDeviceClaimStatus {
  let conds = prev?.conditions ?? [];
  const ready = c?.state === 'ready';
  const reason = c === null ? 'Pending' : (c.code ?? REASON[c.state]);
  conds = setCondition(
    conds,
    {
      type: 'Ready',
      status: ready ? 'True' : 'False',
      reason: ready ? 'Bound' : reason,
      message: ready
        ? 'on vfio-pci'
        : (c?.message ?? (c === null ? 'not yet applied on the node' : c.state)),
      observedGeneration: generation,
    },
    nowIso,
  );
  conds = setCondition(
    conds,
    {
      type: 'ModulesLoaded',
      status: keeper.healthy ? 'True' : 'False',
      reason: keeper.healthy ? 'Loaded' : keeper.recovering ? 'Recovering' : 'Missing',
      message: keeper.healthy
        ? 'vfio modules loaded'
        : (keeper.waiting ??
          `not loaded: ${keeper.modules
            .filter((m) => m.state !== 'live' && m.state !== 'builtin')
            .map((m) => m.name)
            .join(', ')}`),
      observedGeneration: generation,
    },
    nowIso,
  );
  const refused = c?.state === 'refused' || c?.state === 'missing' || c?.state === 'changed';
  conds = setCondition(
    conds,
    {
      type: 'Refused',
      status: refused ? 'True' : 'False',
      reason: refused ? (c.code ?? REASON[c.state]) : 'Accepted',
      message: refused ? (c.message ?? c.state) : 'the node accepted the claim',
      observedGeneration: generation,
    },
    nowIso,
  );
  const original = c?.originalDrivers[c.address];
  return {
    kernelDriverToUnbind: original ?? prev?.kernelDriverToUnbind ?? '',
    passthroughEnabled: ready,
    observedGeneration: generation,
    conditions: conds,
  };
}
