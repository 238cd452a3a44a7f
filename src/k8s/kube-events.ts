import type { Clock } from '../host/clock.js';
import type { DomainEvent } from '../events/events.js';
import type { KubeApi, KubeObject } from './kube-api.js';

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  name: string;
  uid?: string;
}

interface Pending {
  involved: InvolvedObject;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  at: number;
}

const MAX_PENDING = 200;

/**
 * Kubernetes Events for what the node did. Queued and sent by the adapter's pass, so Events
 * raised while the API server is away arrive when it is back (oldest dropped past 200).
 */
export class EventRecorder {
  private queue: Pending[] = [];
  private seq = 0;
  sent = 0;

  constructor(
    private readonly api: KubeApi,
    private readonly node: string,
    private readonly clock: Clock,
    private readonly namespace = 'default',
  ) {}

  record(
    involved: InvolvedObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): void {
    this.queue.push({ involved, type, reason, message, at: this.clock.now() });
    if (this.queue.length > MAX_PENDING) this.queue.shift();
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Sends what is queued; stops at the first failure and keeps the rest. */
  async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const e = this.queue[0];
      if (e === undefined) break;
      const ts = new Date(e.at).toISOString();
      const ev: KubeObject = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: {
          name: `${e.involved.name}.${e.at.toString(16)}${(this.seq++).toString(16)}`,
          namespace: this.namespace,
        },
        involvedObject: e.involved,
        type: e.type,
        reason: e.reason,
        message: e.message,
        source: { component: 'passthru-agent', host: this.node },
        reportingComponent: 'passthru.dev/agent',
        reportingInstance: this.node,
        firstTimestamp: ts,
        lastTimestamp: ts,
        count: 1,
      };
      await this.api.create(
        { group: '', version: 'v1', plural: 'events', namespace: this.namespace },
        ev,
      );
      this.queue.shift();
      this.sent++;
    }
  }
}

/** Which domain events become Kubernetes Events, and on what. */
export function eventFor(e: DomainEvent): {
  on: 'claim' | 'node';
  address?: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
} | null {
  switch (e.type) {
    case 'device.bound':
      return {
        on: 'claim',
        address: e.address,
        type: 'Normal',
        reason: 'Bound',
        message: `${e.address} bound to vfio-pci (was ${e.from ?? 'no driver'}) in ${e.ms} ms`,
      };
    case 'device.bind_failed':
    case 'claim.refused':
    case 'device.release_failed':
      return {
        on: 'claim',
        address: e.address,
        type: 'Warning',
        reason: e.code,
        message: e.message,
      };
    case 'device.released':
      return {
        on: 'claim',
        address: e.address,
        type: 'Normal',
        reason: 'Released',
        message: `${e.address} released to ${e.driver ?? 'no driver'}${e.note !== undefined ? ` (${e.note})` : ''}`,
      };
    case 'module.lost':
      return {
        on: 'node',
        type: 'Warning',
        reason: 'VfioModulesLost',
        message: `vfio modules removed: ${e.modules.join(', ')} (seen via ${e.via})`,
      };
    case 'module.reload_failed':
      return {
        on: 'node',
        type: 'Warning',
        reason: 'VfioReloadFailed',
        message: `${e.module}: ${e.message}; retry in ${e.retryInMs} ms`,
      };
    case 'recovery.completed': {
      const r = e.recovery;
      return {
        on: 'node',
        type: 'Normal',
        reason: 'VfioRecovered',
        message: `vfio modules back and ${r.devices} device(s) on vfio-pci ${r.detectToReboundMs ?? r.detectToReloadMs ?? 0} ms after the loss was seen`,
      };
    }
    default:
      return null;
  }
}
