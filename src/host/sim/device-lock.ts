import type { PciAddress } from '../../pci/address.js';

/**
 * The driver core's per-device mutex (device_lock). Kernel 6.1 takes it for bind, unbind and
 * drivers_probe of the device, for reads and writes of driver_override, for sriov_numvfs and
 * for removal. An unbind that waits for a VM holds it the whole time, so every other
 * lock-taking access to that device waits too, while other devices and lock-free attributes
 * (vendor, class, numa_node) answer normally.
 */
export class DeviceLocks {
  private readonly tails = new Map<PciAddress, Promise<void>>();

  isLocked(addr: PciAddress): boolean {
    return this.tails.has(addr);
  }

  /** How many operations on this device are waiting for the lock or holding it. */
  queued(addr: PciAddress): number {
    return this.counts.get(addr) ?? 0;
  }

  private readonly counts = new Map<PciAddress, number>();

  /**
   * Runs `fn` holding the device's lock, after every earlier holder released it (FIFO, as the
   * kernel's mutex hands over in practice). An uncontended lock runs `fn` without a detour, so
   * idle devices keep the same ordering as before the lock existed.
   */
  async run<T>(addr: PciAddress, fn: () => T | Promise<T>): Promise<T> {
    const prev = this.tails.get(addr);
    let release = (): void => undefined;
    const mine = new Promise<void>((r) => {
      release = r;
    });
    const tail = prev === undefined ? mine : prev.then(() => mine);
    this.tails.set(addr, tail);
    this.counts.set(addr, (this.counts.get(addr) ?? 0) + 1);
    try {
      if (prev !== undefined) await prev;
      return await fn();
    } finally {
      const n = (this.counts.get(addr) ?? 1) - 1;
      if (n === 0) this.counts.delete(addr);
      else this.counts.set(addr, n);
      if (this.tails.get(addr) === tail) this.tails.delete(addr);
      release();
    }
  }
}
