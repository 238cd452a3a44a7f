import { SysError } from '../../errors.js';
import type { PciAddress } from '../../pci/address.js';
import { canonicalModuleName } from '../port.js';
import type { SimWriteOp } from './model.js';

interface WriteFault {
  op: SimWriteOp;
  address: PciAddress | undefined;
  errno: string;
  remaining: number;
}

/**
 * Faults a test or `passthru sim` injects: failing writes and module loads, and a simulated
 * crash of the process holding the current ports (every port handed out so far stops
 * answering after a chosen write).
 */
export class SimFaults {
  private writeFaults: WriteFault[] = [];
  private readonly loadFaults = new Map<string, { remaining: number; message: string }>();
  private severRule: { op: SimWriteOp; address: PciAddress | undefined } | null = null;
  /** Ports made before the current generation are severed. */
  generation = 0;

  failWrites(op: SimWriteOp, errno: string, opts: { address?: PciAddress; times?: number }): void {
    this.writeFaults.push({ op, address: opts.address, errno, remaining: opts.times ?? 1 });
  }

  /** Throws the injected error when a fault matches this write. */
  checkWrite(op: SimWriteOp, addr: PciAddress | null): void {
    const fault = this.writeFaults.find(
      (f) => f.op === op && (f.address === undefined || f.address === addr) && f.remaining > 0,
    );
    if (!fault) return;
    fault.remaining--;
    this.writeFaults = this.writeFaults.filter((f) => f.remaining > 0);
    throw new SysError(fault.errno, `simulated ${op} failure`);
  }

  failModuleLoads(name: string, times: number, message: string): void {
    this.loadFaults.set(canonicalModuleName(name), { remaining: times, message });
  }

  checkLoad(name: string): void {
    const fault = this.loadFaults.get(name);
    if (fault && fault.remaining > 0) {
      fault.remaining--;
      throw new SysError('EMODPROBE', `modprobe ${name}: ${fault.message}`);
    }
  }

  severAfter(op: SimWriteOp, address: PciAddress | undefined): void {
    this.severRule = { op, address };
  }

  /** Called after a write completed: advances the generation when the sever rule matches. */
  afterWrite(op: SimWriteOp, addr: PciAddress | null): void {
    const rule = this.severRule;
    if (rule && rule.op === op && (rule.address === undefined || rule.address === addr)) {
      this.severRule = null;
      this.generation++;
    }
  }

  isSevered(generation: number): boolean {
    return generation < this.generation;
  }
}
