import type { ClaimStatus } from '../engine/engine.js';
import type { DomainEvent } from '../events/events.js';
import type { Clock } from '../host/clock.js';
import { parsePciAddress, type PciAddress } from '../pci/address.js';
import type { Inventory } from '../pci/model.js';
import type { Logger } from '../util/logger.js';
import { Waker } from '../util/waker.js';
import type { NodeAgent } from './agent-port.js';
import { EventRecorder, eventFor, type InvolvedObject } from './kube-events.js';
import { KubeError, type KubeApi, type KubeObject } from './kube-api.js';
import { KubeVirtPermitter, type PermittedPci } from './kubevirt.js';
import { pciDeviceName } from './names.js';
import { describeIssues } from '../schema/validate.js';
import { Reflector } from './reflector.js';
import {
  CLAIMS,
  DEVICES,
  DRIVER_ANNOTATION,
  FINALIZER,
  NODE_LABEL,
  NODES,
  WRANGLER_PREFIX,
} from './resources.js';
import {
  API_VERSION,
  pciDeviceCheck,
  pciDeviceClaimCheck,
  type PciDeviceClaimStatus,
  type PciDeviceStatus,
  type PodHolder,
} from './schemas.js';
import {
  claimStatus,
  deviceConditions,
  deviceStatus,
  listedAsDevice,
  pooledNameOf,
  resourceNamePlan,
} from './status-model.js';

export interface AdapterOptions {
  /** Re-read the host (never the API) this often even without a trigger. */
  resyncMs: number;
  /** How often the kubelet is asked which pod holds which device (a local call, no API). */
  podPollMs: number;
  retryBaseMs: number;
  retryCapMs: number;
  watchTimeoutSeconds: number;
}

export const defaultAdapterOptions: AdapterOptions = {
  resyncMs: 30_000,
  podPollMs: 5_000,
  retryBaseMs: 500,
  retryCapMs: 30_000,
  watchTimeoutSeconds: 300,
};

export interface AdapterDeps {
  api: KubeApi;
  node: string;
  agent: NodeAgent;
  clock: Clock;
  logger: Logger;
  random: () => number;
  options?: Partial<AdapterOptions>;
  /**
   * Which pod holds which device (the kubelet's pod-resources List), when the device plugins
   * run. Asked once per pass; a failure or timeout keeps the holders last written.
   */
  podDevices?: () => Promise<
    { address: string; namespace: string; pod: string; container: string }[]
  >;
}

/** Sorted-key JSON: equal objects compare equal whatever order the server wrote them in. */
function canon(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(
          Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)),
        )
      : x,
  );
}

function claimSpec(c: KubeObject): { address?: string | null; nodeName?: string | null } {
  return c.spec ?? {};
}

function addressOf(c: KubeObject): PciAddress | null {
  const a = claimSpec(c).address;
  if (typeof a !== 'string') return null;
  try {
    return parsePciAddress(a);
  } catch {
    return null;
  }
}

/** RFC 3339 to the second, as metav1.Time serialises. */
function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Transient: the API server is away or overloaded; the pass is retried with backoff. */
function transient(e: unknown): boolean {
  return e instanceof KubeError && (e.status === 0 || e.status === 429 || e.status >= 500);
}

/**
 * `passthru agent --kubernetes`: PCIDevice objects for this node's functions, PCIDeviceClaims
 * for this node turned into engine claims, claim status, finalizers, Events and KubeVirt's
 * permitted devices. Level-triggered like the engine: each pass compares what the node has
 * with what the API server holds (as cached by the watches) and writes only the difference,
 * so a node at rest makes no API calls beyond its two watches.
 */
export class KubernetesAdapter {
  readonly claims: Reflector;
  readonly devices: Reflector;
  readonly events: EventRecorder;
  private readonly d: AdapterDeps;
  private readonly opts: AdapterOptions;
  private readonly log: Logger;
  private readonly waker = new Waker();
  private readonly kubevirt: KubeVirtPermitter;
  private dirty = true;
  private inventory: Inventory | null = null;
  private inventoryKey = '';
  /** Claims the engine rejected, not retried until the claim or the inventory changes. */
  private readonly rejected = new Map<PciAddress, { key: string; status: ClaimStatus }>();
  /** Resources this node has ready claims for, as last applied to KubeVirt. */
  private kubevirtApplied = new Set<string>();
  readonly counts = { passes: 0, failedPasses: 0, writes: 0 };
  /**
   * A module loss seen while the API server answered: the claims show ModulesLoaded=False once
   * even when the keeper healed before the next pass. Dropped when a pass fails (the API server
   * is away), so a loss it missed is reported by Events and the status stays coalesced.
   */
  private lossToReport: string | null = null;

  constructor(deps: AdapterDeps) {
    this.d = deps;
    this.opts = { ...defaultAdapterOptions, ...deps.options };
    this.log = deps.logger.child({ component: 'k8s' });
    const common = {
      random: deps.random,
      timeoutSeconds: this.opts.watchTimeoutSeconds,
      backoffBaseMs: this.opts.retryBaseMs,
      backoffCapMs: this.opts.retryCapMs,
    };
    const wake = (): void => {
      this.trigger();
    };
    this.claims = new Reflector(deps.api, CLAIMS, deps.clock, deps.logger, wake, {
      ...common,
      fieldSelector: `spec.nodeName=${deps.node}`,
      // Without selectableFields (Kubernetes < 1.31): all claims, filtered here; there are few.
      fallback: {},
      validate: (o) =>
        pciDeviceClaimCheck.check(o) ? null : describeIssues(pciDeviceClaimCheck.issues(o)),
    });
    // Harvester labels every PCIDevice with its node; the label works on every server version
    // and, unlike status.nodeName, is set at creation (POST drops status).
    this.devices = new Reflector(deps.api, DEVICES, deps.clock, deps.logger, wake, {
      ...common,
      labelSelector: `${NODE_LABEL}=${deps.node}`,
    });
    this.events = new EventRecorder(deps.api, deps.node, deps.clock);
    this.kubevirt = new KubeVirtPermitter(deps.api, this.log);
  }

  trigger(): void {
    this.dirty = true;
    this.waker.wake();
  }

  private onDomainEvent(e: DomainEvent): void {
    if (e.type === 'module.lost')
      this.lossToReport = `vfio modules removed: ${e.modules.join(', ')}`;
    const ev = eventFor(e);
    if (ev !== null) {
      const involved: InvolvedObject =
        ev.on === 'node'
          ? { apiVersion: 'v1', kind: 'Node', name: this.d.node, uid: this.d.node }
          : this.claimRef(ev.address ?? '');
      this.events.record(involved, ev.type, ev.reason, ev.message);
    }
    this.trigger();
  }

  private claimRef(address: string): InvolvedObject {
    const c = this.myClaims().find((x) => claimSpec(x).address === address);
    return {
      apiVersion: API_VERSION,
      kind: 'PCIDeviceClaim',
      name: c?.metadata.name ?? pciDeviceName(this.d.node, address),
      ...(c?.metadata.uid !== undefined ? { uid: c.metadata.uid } : {}),
    };
  }

  private myClaims(): KubeObject[] {
    return [...this.claims.items.values()].filter((c) => claimSpec(c).nodeName === this.d.node);
  }

  async run(signal: AbortSignal): Promise<void> {
    const unsubscribe = this.d.agent.subscribe((e) => {
      this.onDomainEvent(e);
    });
    const loops = [this.claims.run(signal), this.devices.run(signal), this.watchHolders(signal)];
    let failures = 0;
    // A function, not the property: the compiler would narrow `signal.aborted` to false.
    const aborted = (): boolean => signal.aborted;
    try {
      while (!aborted()) {
        if (!this.dirty) await this.waker.sleep(this.d.clock, this.opts.resyncMs, signal);
        if (aborted()) break;
        this.dirty = false;
        const ok = await this.pass();
        if (ok) {
          failures = 0;
          continue;
        }
        // Writes failed (API server away): retry the whole pass later, coalescing whatever
        // changed meanwhile into one write per object.
        const base = Math.min(this.opts.retryCapMs, this.opts.retryBaseMs * 2 ** failures);
        failures++;
        await this.waker.sleep(this.d.clock, base / 2 + (this.d.random() * base) / 2, signal);
        this.dirty = true;
      }
    } finally {
      unsubscribe();
      await Promise.all(loops);
    }
  }

  /** Watches whose start timed out in the current outage and were reported by an Event. */
  private readonly stuckReported = new Set<Reflector>();

  /**
   * A watch that never answers is reported once per outage on the Node (Warning
   * ApiWatchStalled): writes may still work through a proxy that stalls long requests, and
   * until it answers the node acts on the claims it last saw.
   */
  private reportStuckWatches(): void {
    for (const r of [this.claims, this.devices]) {
      const err = r.lastError;
      if (err === null) {
        this.stuckReported.delete(r);
        continue;
      }
      if (this.stuckReported.has(r) || !err.includes('no response')) continue;
      this.stuckReported.add(r);
      this.events.record(
        { apiVersion: 'v1', kind: 'Node', name: this.d.node, uid: this.d.node },
        'Warning',
        'ApiWatchStalled',
        `${err}; retrying with backoff, acting on the last claims seen meanwhile`,
      );
    }
  }

  /** One reconcile pass; false when an API write failed and the pass should be retried. */
  async pass(): Promise<boolean> {
    this.counts.passes++;
    this.reportStuckWatches();
    let ok = true;
    const guard = async (what: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (e) {
        if (e instanceof KubeError && (e.status === 409 || e.status === 404)) {
          // Someone else wrote first, or the object is gone: the watch brings the news.
          this.trigger();
          return;
        }
        ok = false;
        if (!transient(e))
          this.log.warn(
            { err: e instanceof Error ? e.message : String(e), what },
            'api write failed',
          );
      }
    };
    try {
      this.inventory = await this.d.agent.inventory();
      this.inventoryKey = canon(
        this.inventory.devices.map((f) => [f.address, f.vendorId, f.deviceId, f.iommuGroup]),
      );
      await this.applyClaims();
      const status = await this.d.agent.status();
      const engineClaims = new Map(status.claims.map((c) => [c.address, c]));
      const loss = this.lossToReport;
      const keeper =
        loss !== null && status.keeper.healthy
          ? { ...status.keeper, healthy: false, waiting: loss }
          : status.keeper;
      const holders = await this.holders();
      for (const c of this.myClaims()) {
        await guard(`claim ${c.metadata.name}`, () =>
          this.syncClaim(c, engineClaims, keeper, holders),
        );
      }
      if (loss !== null && this.lossToReport === loss) {
        this.lossToReport = null;
        // The next pass writes the condition as it is now.
        if (keeper !== status.keeper) this.trigger();
      }
      if (this.devices.synced) await guard('devices', () => this.syncDevices(status.claims));
      if (this.devices.synced) {
        await guard('kubevirt', () => this.syncKubeVirt(status.claims));
      }
      await guard('events', () => this.events.flush());
    } catch (e) {
      ok = false;
      this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'kubernetes pass failed');
    }
    if (!ok) {
      this.counts.failedPasses++;
      this.lossToReport = null;
    }
    return ok;
  }

  /**
   * Engine claims follow the API's claims for this node, once the claims have been listed at
   * least once: until then (API server away at start) the node keeps the claims in its store.
   */
  private async applyClaims(): Promise<void> {
    if (!this.claims.synced) return;
    const status = await this.d.agent.status();
    const have = new Set(status.claims.map((c) => c.address));
    const live = this.myClaims().filter((c) => c.metadata.deletionTimestamp === undefined);
    const wanted = new Map<PciAddress, KubeObject>();
    for (const c of live) {
      const a = addressOf(c);
      if (a !== null) wanted.set(a, c);
    }
    const release = [...have].filter((a) => !wanted.has(a));
    if (release.length > 0) {
      try {
        await this.d.agent.release(release);
      } catch (e) {
        this.log.warn(
          { err: e instanceof Error ? e.message : String(e), release },
          'release failed',
        );
      }
    }
    for (const a of this.rejected.keys()) if (!wanted.has(a)) this.rejected.delete(a);
    const add: PciAddress[] = [];
    for (const [a, c] of wanted) {
      if (have.has(a)) continue;
      const r = this.rejected.get(a);
      if (r !== undefined && r.key === this.rejectKey(c)) continue;
      add.push(a);
    }
    if (add.length === 0) return;
    const out = await this.d.agent.claim(add);
    for (const s of out) {
      const c = wanted.get(s.address);
      if (c === undefined) continue;
      if (s.state === 'refused' || s.state === 'missing' || s.state === 'changed') {
        this.rejected.set(s.address, { key: this.rejectKey(c), status: s });
      } else this.rejected.delete(s.address);
    }
  }

  private rejectKey(c: KubeObject): string {
    return `${c.metadata.uid ?? ''}/${c.metadata.generation ?? 0}/${this.inventoryKey}`;
  }

  private async patchClaim(c: KubeObject, patch: object, sub?: 'status'): Promise<void> {
    this.counts.writes++;
    const out = await this.d.api.mergePatch(CLAIMS, c.metadata.name, patch, sub);
    if (
      out.metadata.deletionTimestamp !== undefined &&
      (out.metadata.finalizers ?? []).length === 0
    ) {
      this.claims.forget(c.metadata.name);
    } else this.claims.observe(out);
  }

  private lastHolders = '';
  /**
   * This node's Node object as the owner of its PCIDevices: the garbage collector deletes them
   * once the Node object is deleted (never while it is only NotReady), so no agent has to judge
   * another node dead and none can fight over it. undefined: not read yet; null: no Node object
   * (a development kubeconfig) or no right to read it.
   */
  private nodeOwner:
    { apiVersion: string; kind: string; name: string; uid: string } | null | undefined;

  private async readNodeOwner(): Promise<void> {
    try {
      const n = await this.d.api.get(NODES, this.d.node);
      const uid = n.metadata.uid;
      this.nodeOwner =
        uid === undefined ? null : { apiVersion: 'v1', kind: 'Node', name: this.d.node, uid };
    } catch (e) {
      if (!(e instanceof KubeError && (e.status === 404 || e.status === 403))) throw e;
      if (this.nodeOwner !== null)
        this.log.warn(
          { node: this.d.node, err: e.message },
          'Node object not readable: PCIDevices get no owner and outlive a deleted node',
        );
      this.nodeOwner = null;
    }
  }

  private ownedByNode(o: KubeObject): boolean {
    return (o.metadata.ownerReferences ?? []).some(
      (x) => x.kind === 'Node' && x.uid === this.nodeOwner?.uid,
    );
  }

  /** A pod starting or ending with one of our devices triggers a pass; nothing else does. */
  private async watchHolders(signal: AbortSignal): Promise<void> {
    if (this.d.podDevices === undefined) return;
    while (!signal.aborted) {
      try {
        await this.d.clock.sleep(this.opts.podPollMs, signal);
      } catch {
        return;
      }
      const h = await this.holders();
      if (h === null) continue;
      const key = canon([...h].sort(([a], [b]) => (a < b ? -1 : 1)));
      if (key !== this.lastHolders) {
        this.lastHolders = key;
        this.trigger();
      }
    }
  }

  /** Holder by address; null when unknown (no plugins, or the kubelet did not answer). */
  private async holders(): Promise<Map<string, PodHolder> | null> {
    if (this.d.podDevices === undefined) return null;
    try {
      const out = new Map<string, PodHolder>();
      for (const u of await this.d.podDevices())
        out.set(u.address, { namespace: u.namespace, pod: u.pod, container: u.container });
      return out;
    } catch (e) {
      this.log.debug({ err: e instanceof Error ? e.message : String(e) }, 'pod-resources failed');
      return null;
    }
  }

  /** The resource name a device is advertised under: its PCIDevice's, once the object exists. */
  resourceNameOf(address: string): string | undefined {
    const st = this.devices.items.get(pciDeviceName(this.d.node, address))?.status as
      { resourceName?: unknown } | undefined;
    return typeof st?.resourceName === 'string' && st.resourceName !== ''
      ? st.resourceName
      : undefined;
  }

  private async syncClaim(
    c: KubeObject,
    engineClaims: Map<PciAddress, ClaimStatus>,
    keeper: Awaited<ReturnType<NodeAgent['status']>>['keeper'],
    holders: Map<string, PodHolder> | null,
  ): Promise<void> {
    const a = addressOf(c);
    const fins = c.metadata.finalizers ?? [];
    const rv = c.metadata.resourceVersion;
    const guardRv = rv !== undefined ? { resourceVersion: rv } : {};
    if (c.metadata.deletionTimestamp !== undefined) {
      // Released (or never bound): our finalizer and the old controller's can go.
      if (a !== null && engineClaims.has(a)) return;
      const keep = fins.filter((f) => f !== FINALIZER && !f.startsWith(WRANGLER_PREFIX));
      if (keep.length === fins.length) return;
      await this.patchClaim(c, { metadata: { ...guardRv, finalizers: keep } });
      return;
    }
    // Take over: our finalizer in, the old controller's out (it is not there to remove them).
    const want = [
      ...fins.filter((f) => !f.startsWith(WRANGLER_PREFIX) && f !== FINALIZER),
      FINALIZER,
    ];
    if (!fins.includes(FINALIZER) || fins.some((f) => f.startsWith(WRANGLER_PREFIX))) {
      await this.patchClaim(c, { metadata: { ...guardRv, finalizers: want } });
      return; // the status follows on the next pass, from the fresh object
    }
    const prev = c.status as PciDeviceClaimStatus | undefined;
    const engine =
      a === null ? null : (engineClaims.get(a) ?? this.rejected.get(a)?.status ?? null);
    const next = claimStatus(
      prev,
      engine,
      keeper,
      c.metadata.generation ?? 0,
      isoSeconds(this.d.clock.now()),
    );
    // Unknown holders (the kubelet did not answer) keep what was written.
    const holder = holders === null ? prev?.heldBy : a === null ? undefined : holders.get(a);
    if (holder !== undefined) next.heldBy = holder;
    if (canon(next) === canon(prev ?? {})) return;
    // A merge patch keeps fields it does not name: a holder that went is removed by null.
    const patch: Record<string, unknown> = { ...next };
    if (holder === undefined && prev?.heldBy !== undefined) patch.heldBy = null;
    await this.patchClaim(c, { status: patch }, 'status');
  }

  private async syncDevices(claims: ClaimStatus[]): Promise<void> {
    const inv = this.inventory;
    if (inv === null) return;
    const uses = await this.d.agent.hostUses();
    const claimOf = new Map<string, ClaimStatus>();
    for (const c of claims) for (const m of c.members) claimOf.set(m, c);
    const nowIso = isoSeconds(this.d.clock.now());
    const perDevice = new Set<string>();
    for (const c of this.myClaims()) {
      const spec = c.spec as { disableResourcePooling?: boolean } | undefined;
      const a = addressOf(c);
      if (a !== null && c.metadata.deletionTimestamp === undefined && spec?.disableResourcePooling)
        perDevice.add(a);
    }
    const listed = inv.devices.filter(listedAsDevice);
    const missing = listed.some(
      (f) => !this.devices.items.has(pciDeviceName(this.d.node, f.address)),
    );
    // Read the Node only when objects are to be created (a re-created Node has a new uid: an
    // object owned by the old one would be collected again) or to adopt objects without it.
    if (missing) await this.readNodeOwner();
    else if (this.nodeOwner === undefined) {
      const anyUnowned = [...this.devices.items.values()].some(
        (o) => !(o.metadata.ownerReferences ?? []).some((x) => x.kind === 'Node'),
      );
      if (anyUnowned) await this.readNodeOwner();
    }
    const owner = this.nodeOwner ?? null;
    const present = new Set<string>();
    for (const f of listed) {
      const name = pciDeviceName(this.d.node, f.address);
      present.add(name);
      let obj = this.devices.items.get(name);
      if (obj === undefined) {
        this.d.logger.debug({ name }, 'creating PCIDevice');
        this.counts.writes++;
        try {
          obj = await this.d.api.create(DEVICES, {
            apiVersion: API_VERSION,
            kind: 'PCIDevice',
            metadata: {
              name,
              labels: { [NODE_LABEL]: this.d.node },
              // Harvester's restore target: the driver seen when the object was created.
              annotations: { [DRIVER_ANNOTATION]: f.driver ?? '' },
              ...(owner !== null ? { ownerReferences: [owner] } : {}),
            },
            spec: {},
          });
        } catch (e) {
          if (!(e instanceof KubeError && e.status === 409)) throw e;
          this.counts.writes--;
          obj = await this.d.api.get(DEVICES, name);
        }
        this.devices.observe(obj);
      }
      if (owner !== null && !this.ownedByNode(obj)) {
        // Adopted (Harvester's objects have no owner) or owned by a Node since re-created: the
        // list is replaced whole, guarded by resourceVersion.
        const refs = [
          ...(obj.metadata.ownerReferences ?? []).filter((x) => x.kind !== 'Node'),
          owner,
        ];
        this.counts.writes++;
        obj = await this.d.api.mergePatch(DEVICES, name, {
          metadata: {
            ownerReferences: refs,
            ...(obj.metadata.resourceVersion !== undefined
              ? { resourceVersion: obj.metadata.resourceVersion }
              : {}),
          },
        });
        this.devices.observe(obj);
      }
      // An object someone else wrote in another shape is rewritten whole; its resourceName
      // (what VMs request) is kept all the same.
      const prev: Partial<PciDeviceStatus> = pciDeviceCheck.check(obj) ? (obj.status ?? {}) : {};
      const written = (obj.status as { resourceName?: unknown } | undefined)?.resourceName;
      const plan = resourceNamePlan(
        obj.metadata.annotations,
        written,
        () => pooledNameOf(f, this.d.agent.names),
        perDevice.has(f.address),
        this.d.node,
        f.address,
      );
      if (plan.annotations !== null) {
        this.counts.writes++;
        obj = await this.d.api.mergePatch(DEVICES, name, {
          metadata: { annotations: plan.annotations },
        });
        this.devices.observe(obj);
      }
      const next: PciDeviceStatus = {
        ...deviceStatus(f, this.d.node, plan.resourceName),
        conditions: deviceConditions(prev.conditions, f, {
          uses,
          claim: claimOf.get(f.address),
          nowIso,
        }),
      };
      const merged = { ...prev, ...next };
      if (canon(merged) === canon(obj.status ?? {})) continue;
      // Fields of a foreign shape that passthru does not write go (null deletes in a merge patch).
      const patch: Record<string, unknown> = { ...next };
      for (const k of Object.keys(obj.status ?? {})) if (!(k in merged)) patch[k] = null;
      this.counts.writes++;
      this.devices.observe(await this.d.api.mergePatch(DEVICES, name, { status: patch }, 'status'));
    }
    for (const [name, obj] of this.devices.items) {
      if (present.has(name)) continue;
      if (
        (obj.status as { nodeName?: string } | undefined)?.nodeName !== undefined &&
        (obj.status as { nodeName?: string }).nodeName !== this.d.node
      )
        continue;
      // The function is gone from this node. Its claim, if any, stays (Ready=False,
      // DeviceMissing): a renumbered or re-seated card must not take a VM's claim with it.
      this.counts.writes++;
      try {
        await this.d.api.delete(DEVICES, name);
      } catch (e) {
        if (!(e instanceof KubeError && e.status === 404)) throw e;
      }
      this.devices.forget(name);
    }
  }

  private async syncKubeVirt(claims: ClaimStatus[]): Promise<void> {
    const want = new Map<string, PermittedPci>();
    for (const c of claims) {
      if (c.state !== 'ready') continue;
      const dev = this.devices.items.get(pciDeviceName(this.d.node, c.address));
      const st = dev?.status as Partial<PciDeviceStatus> | undefined;
      if (
        typeof st?.resourceName !== 'string' ||
        typeof st.vendorId !== 'string' ||
        typeof st.deviceId !== 'string'
      )
        continue;
      want.set(st.resourceName, {
        pciVendorSelector: `${st.vendorId}:${st.deviceId}`,
        resourceName: st.resourceName,
        externalResourceProvider: true,
      });
    }
    const add = [...want.keys()].filter((r) => !this.kubevirtApplied.has(r));
    const remove = [...this.kubevirtApplied].filter((r) => !want.has(r));
    if (add.length === 0 && remove.length === 0) return;
    await this.kubevirt.apply(
      add.map((r) => want.get(r) ?? { pciVendorSelector: '', resourceName: r }),
      remove,
      this.d.node,
    );
    this.kubevirtApplied = new Set(want.keys());
  }
}
