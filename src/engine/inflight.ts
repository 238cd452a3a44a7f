import type { Clock } from '../host/clock.js';
import type { PciAddress } from '../pci/address.js';

export interface InFlightOp {
  address: PciAddress;
  /** What was written, e.g. "unbind (vfio-pci)". */
  op: string;
  since: number;
}

/**
 * Kernel operations still pending on a device, across passes. vfio-pci's unbind of a device a
 * VM holds waits in the kernel with device_lock held; until it returns, reading that device's
 * driver_override or writing anything to it would block as well (kernel 6.1, pci-sysfs.c), so
 * nothing else is issued to a device while an operation on it is pending, even one we gave
 * up waiting for.
 */
export class InFlight {
  private readonly ops = new Map<PciAddress, InFlightOp>();

  constructor(private readonly clock: Clock) {}

  /**
   * Runs `fn` as the device's pending operation. The entry stays until the promise settles,
   * which for a write stuck in the kernel is when the kernel lets it go, not when we stop
   * waiting.
   */
  track<T>(address: PciAddress, op: string, fn: () => Promise<T>): Promise<T> {
    const entry: InFlightOp = { address, op, since: this.clock.now() };
    this.ops.set(address, entry);
    const p = fn();
    const clear = (): void => {
      if (this.ops.get(address) === entry) this.ops.delete(address);
    };
    p.then(clear, clear);
    return p;
  }

  get(address: PciAddress): InFlightOp | undefined {
    return this.ops.get(address);
  }

  busy(): ReadonlyMap<PciAddress, InFlightOp> {
    return this.ops;
  }
}
