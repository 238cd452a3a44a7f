import type { PciAddress } from '../pci/address.js';
import type { DomainEvent, EventBus, Recovery } from './events.js';

interface Open {
  rec: Recovery;
  waiting: Set<PciAddress>;
}

/**
 * Recovery timings from domain events alone: a loss opens a record with the devices that were
 * ready then, the reload closes its first half, and the record completes when every one of
 * those devices has been verified ready again (claim.state ready), whoever re-bound it.
 */
export class RecoveryTracker {
  private open: Open | null = null;
  private readonly done: Recovery[] = [];
  private lossCount = 0;

  constructor(
    private readonly bus: EventBus,
    private readonly keep = 20,
  ) {
    bus.subscribe((e) => {
      this.on(e);
    });
  }

  /** A restart or reboot found claimed devices off vfio-pci: their repair is a recovery too. */
  startRepair(at: number, devices: PciAddress[]): void {
    if (devices.length === 0 || this.open) return;
    this.markReloaded(this.begin(at, [], 'start', devices), at);
  }

  private begin(at: number, modules: string[], via: string, devices: PciAddress[]): Open {
    const o: Open = {
      rec: {
        detectedAt: at,
        modules,
        via,
        reloadedAt: null,
        reboundAt: null,
        devices: devices.length,
        attempts: 0,
        detectToReloadMs: null,
        detectToReboundMs: null,
      },
      waiting: new Set(devices),
    };
    this.open = o;
    return o;
  }

  private markReloaded(o: Open, at: number): void {
    o.rec.reloadedAt = at;
    o.rec.detectToReloadMs = at - o.rec.detectedAt;
    this.maybeComplete(o, at);
  }

  private maybeComplete(o: Open, at: number): void {
    if (o.rec.reloadedAt === null || o.waiting.size > 0) return;
    o.rec.reboundAt = at;
    o.rec.detectToReboundMs = at - o.rec.detectedAt;
    this.open = null;
    this.done.push(o.rec);
    if (this.done.length > this.keep) this.done.shift();
    this.bus.emit({ type: 'recovery.completed', at, recovery: o.rec });
  }

  private on(e: DomainEvent): void {
    switch (e.type) {
      case 'module.lost':
        this.lossCount++;
        if (!this.open) this.begin(e.at, e.modules, e.via, e.devices ?? []);
        break;
      case 'module.reload_failed':
        if (this.open) this.open.rec.attempts = e.attempt;
        break;
      case 'module.reloaded':
        if (this.open) {
          this.open.rec.attempts = Math.max(this.open.rec.attempts, e.attempts);
          this.markReloaded(this.open, e.at);
        }
        break;
      case 'claim.state':
        if (this.open && e.state === 'ready') {
          for (const m of e.members) this.open.waiting.delete(m);
          this.maybeComplete(this.open, e.at);
        }
        break;
      case 'claim.removed':
        // A claim released during a recovery no longer needs to come back.
        if (this.open) {
          this.open.waiting.delete(e.address);
          this.maybeComplete(this.open, e.at);
        }
        break;
      default:
        break;
    }
  }

  recoveries(): Recovery[] {
    return [...this.done];
  }

  losses(): number {
    return this.lossCount;
  }

  recovering(): boolean {
    return this.open !== null;
  }
}
