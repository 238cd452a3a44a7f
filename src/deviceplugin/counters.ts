/**
 * Counters kept per resource name, in a plain object the metrics endpoint can export later
 * (`passthru_deviceplugin_<name>_total{resource}`). Resource names are bounded by the claimed
 * device models, so they are safe as a label.
 */
export type CounterName =
  | 'registrations'
  | 'registration_failures'
  | 'kubelet_restarts'
  | 'allocations'
  | 'allocation_failures'
  | 'prestart_checks'
  | 'prestart_failures'
  | 'health_flips_unhealthy'
  | 'health_flips_healthy'
  | 'list_updates';

export const COUNTER_NAMES: readonly CounterName[] = [
  'registrations',
  'registration_failures',
  'kubelet_restarts',
  'allocations',
  'allocation_failures',
  'prestart_checks',
  'prestart_failures',
  'health_flips_unhealthy',
  'health_flips_healthy',
  'list_updates',
];

export class DevicePluginCounters {
  private readonly values = new Map<string, Map<CounterName, number>>();

  inc(resource: string, name: CounterName, by = 1): void {
    let m = this.values.get(resource);
    if (!m) {
      // Pre-created at zero, so a scrape shows every series from the first registration on.
      m = new Map(COUNTER_NAMES.map((n) => [n, 0]));
      this.values.set(resource, m);
    }
    m.set(name, (m.get(name) ?? 0) + by);
  }

  get(resource: string, name: CounterName): number {
    return this.values.get(resource)?.get(name) ?? 0;
  }

  /** Sum over resources. */
  total(name: CounterName): number {
    let t = 0;
    for (const m of this.values.values()) t += m.get(name) ?? 0;
    return t;
  }

  /** `{ resource: { counter: value } }`, for export. */
  snapshot(): Record<string, Record<CounterName, number>> {
    const out: Record<string, Record<CounterName, number>> = {};
    for (const [r, m] of this.values) {
      out[r] = Object.fromEntries(COUNTER_NAMES.map((n) => [n, m.get(n) ?? 0])) as Record<
        CounterName,
        number
      >;
    }
    return out;
  }
}
