import { SysError } from '../../errors.js';
import { compareAddresses } from '../../pci/address.js';
import {
  canonicalModuleName,
  type ModuleAvailability,
  type ModuleStatus,
  type Uevent,
} from '../port.js';
import type { SimDevice, SimDriver, SimState } from './model.js';

/** What the module model needs from the device model. */
export interface ModuleHooks {
  emit(e: Uevent): void;
  attach(d: SimDevice, drv: SimDriver): void;
  detach(d: SimDevice): void;
  matches(d: SimDevice, drv: SimDriver): boolean;
}

/**
 * Modules with dependencies and reference counts: dependents plus devices a VM holds open
 * through a driver of the module. Removing a driver module leaves its devices driverless
 * (driver_override intact); loading one probes every unbound device.
 */
export class SimModules {
  constructor(
    private readonly s: SimState,
    private readonly hooks: ModuleHooks,
  ) {}

  state(name: string): 'live' | 'unloading' | 'absent' | 'builtin' | undefined {
    return this.s.modules.get(canonicalModuleName(name))?.state;
  }

  refcount(name: string): number {
    const n = canonicalModuleName(name);
    let count = 0;
    for (const m of this.s.modules.values()) {
      if ((m.state === 'live' || m.state === 'unloading') && m.deps.includes(n)) count++;
    }
    for (const drv of this.s.drivers.values()) {
      if (drv.module !== n) continue;
      for (const d of this.s.devices.values()) if (d.driver === drv.name) count += d.openCount;
    }
    return count;
  }

  driverRegistered(drv: SimDriver): boolean {
    if (drv.module === null) return true;
    const m = this.s.modules.get(drv.module);
    return m !== undefined && (m.state === 'live' || m.state === 'builtin');
  }

  rmmod(name: string, opts: { linger?: boolean }): void {
    const n = canonicalModuleName(name);
    const m = this.s.modules.get(n);
    if (!m || m.state === 'absent')
      throw new SysError('ENOENT', `Module ${n} is not currently loaded`);
    if (m.state === 'builtin') throw new SysError('EPERM', `Module ${n} is builtin`);
    if (m.state === 'unloading') throw new SysError('EBUSY', `Module ${n} is unloading`);
    if (this.refcount(n) > 0) throw new SysError('EBUSY', `Module ${n} is in use`);
    m.state = 'unloading';
    for (const drv of this.s.drivers.values()) {
      if (drv.module !== n) continue;
      for (const d of this.sortedDevices()) {
        if (d.driver === drv.name) this.hooks.detach(d);
      }
    }
    this.hooks.emit({ action: 'remove', devpath: `/module/${n}`, subsystem: 'module', props: {} });
    if (opts.linger !== true) m.state = 'absent';
  }

  finishUnload(name: string): void {
    const m = this.s.modules.get(canonicalModuleName(name));
    if (m?.state === 'unloading') m.state = 'absent';
  }

  /** `modprobe -r NAME`: the module, then each dependency nothing else uses any more. */
  modprobeRemove(name: string, rmmod: (n: string) => void): string[] {
    const n = canonicalModuleName(name);
    const m = this.s.modules.get(n);
    rmmod(n);
    const removed = [n];
    const queue = [...(m?.deps ?? [])];
    while (queue.length > 0) {
      const dep = queue.shift();
      if (dep === undefined) break;
      const dm = this.s.modules.get(dep);
      if (!dm || dm.state !== 'live' || this.refcount(dep) > 0) continue;
      rmmod(dep);
      removed.push(dep);
      queue.push(...dm.deps);
    }
    return removed;
  }

  setAvailable(name: string, available: boolean, blocked?: string): void {
    const m = this.s.modules.get(canonicalModuleName(name));
    if (!m) throw new SysError('ENOENT', `unknown module ${name}`);
    m.available = available;
    m.blocked = blocked;
  }

  load(name: string, visiting: Set<string> = new Set()): void {
    const m = this.s.modules.get(name);
    if (!m || !m.available) {
      throw new SysError(
        'ENOENT',
        `modprobe: FATAL: Module ${name} not found in directory /lib/modules/${this.s.release}`,
      );
    }
    if (m.state === 'live' || m.state === 'builtin') return;
    if (m.state === 'unloading') throw new SysError('EBUSY', `Module ${name} is unloading`);
    if (visiting.has(name)) return;
    visiting.add(name);
    for (const dep of m.deps) this.load(dep, visiting);
    m.state = 'live';
    this.hooks.emit({ action: 'add', devpath: `/module/${name}`, subsystem: 'module', props: {} });
    // A registering driver is matched against every unbound device, override included: this
    // is how `modprobe vfio-pci` re-binds devices whose driver_override still names it.
    for (const drv of this.s.drivers.values()) {
      if (drv.module !== name) continue;
      for (const d of this.sortedDevices()) {
        if (d.driver === null && this.hooks.matches(d, drv)) this.hooks.attach(d, drv);
      }
    }
  }

  status(name: string): ModuleStatus | null {
    const m = this.s.modules.get(canonicalModuleName(name));
    if (!m || m.state === 'absent') return null;
    if (m.state === 'builtin') return { name: m.name, state: 'builtin', refcount: null };
    return { name: m.name, state: m.state, refcount: this.refcount(m.name) };
  }

  availability(name: string): ModuleAvailability {
    const n = canonicalModuleName(name);
    const m = this.s.modules.get(n);
    if (!m || !m.available) return { name: n, kind: 'missing', deps: [] };
    const a: ModuleAvailability = {
      name: n,
      kind: m.state === 'builtin' ? 'builtin' : 'loadable',
      deps: [...m.deps],
    };
    if (m.blocked !== undefined) a.blocked = m.blocked;
    return a;
  }

  private sortedDevices(): SimDevice[] {
    return [...this.s.devices.values()].sort((a, b) => compareAddresses(a.address, b.address));
  }
}
