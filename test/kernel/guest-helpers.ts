/**
 * Guest-side helpers shared by the real-kernel scenarios: waiting, and lock-free sysfs reads.
 * Only `overrideOf` takes device_lock: call it only when no unbind of that device can be pending
 * (a blocked read on this thread hangs the guest for good, real-kernel-lab.md).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export function check(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Error(what);
}

const t00 = performance.now();
/** Progress on the guest log as it happens: under a loaded host a step can take minutes. */
export function step(s: string): void {
  process.stdout.write(`[${((performance.now() - t00) / 1000).toFixed(1)} s] ${s}\n`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A deadline for Promise.race that does not keep the guest's node alive once all else is done. */
export const deadline = (ms: number): Promise<null> =>
  new Promise((r) => {
    setTimeout(() => {
      r(null);
    }, ms).unref();
  });

export async function waitFor(
  pred: () => boolean | Promise<boolean>,
  ms: number,
  step = 5,
): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await pred()) return performance.now() - t0;
    await sleep(step);
  }
  return (await pred()) ? performance.now() - t0 : null;
}

export const sysDev = (a: string, f = ''): string => path.join('/sys/bus/pci/devices', a, f);

/** Lock-free: the driver link is a symlink. */
export function driverOf(a: string): string | null {
  try {
    return path.basename(fs.readlinkSync(sysDev(a, 'driver')));
  } catch {
    return null;
  }
}

/** driver_override takes device_lock: call only when no unbind of `a` can be pending. */
export function overrideOf(a: string): string | null {
  const t = fs.readFileSync(sysDev(a, 'driver_override'), 'utf8').trim();
  return t === '(null)' ? null : t;
}

export function groupOf(a: string): number {
  return Number(path.basename(fs.readlinkSync(sysDev(a, 'iommu_group'))));
}

/** Functions with these ids, sorted (vendor and device are lock-free attributes). */
export function devicesById(vendor: string, device: string): string[] {
  return fs
    .readdirSync('/sys/bus/pci/devices')
    .filter(
      (a) =>
        fs.readFileSync(sysDev(a, 'vendor'), 'utf8').trim() === `0x${vendor}` &&
        fs.readFileSync(sysDev(a, 'device'), 'utf8').trim() === `0x${device}`,
    )
    .sort();
}

/** The lab's e1000e NICs. */
export const e1000eNics = (): string[] => devicesById('8086', '10d3');
