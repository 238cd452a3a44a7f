import type { HostBacking, HostUses } from '../host/port.js';
import { bridgeKind, platformFunction } from '../pci/guards.js';
import type { Inventory } from '../pci/model.js';
import type { PciAddress } from '../pci/address.js';
import type { Check } from './doctor.js';

function shortList(items: string[], max: number): string {
  const shown = items.slice(0, max).join('; ');
  return items.length > max ? `${shown}; and ${items.length - max} more` : shown;
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

function backingText(b: HostBacking): string {
  const what =
    b.target === 'swap' ? `swap ${b.source}` : `${b.target} (${b.fstype} from ${b.source})`;
  const via = b.via.length > 0 ? ` on ${b.via.join(' > ')}` : '';
  const devs = b.devices.length > 0 ? ` -> ${b.devices.join(', ')}` : ' -> no PCI device';
  return `${what}${via}${devs}`;
}

/**
 * What backs every mount and swap area, what could not be traced, and which devices the host
 * needs: the same facts the claim guard refuses on.
 */
export function hostUseChecks(uses: HostUses, inv: Inventory): Check[] {
  const checks: Check[] = [];
  const seen = new Set<string>();
  const pseudo: string[] = [];
  for (const b of uses.backing) {
    if (b.status === 'pseudo') {
      pseudo.push(b.target);
      continue;
    }
    if (b.status !== 'traced') continue; // untraced ones are in `unknown`, as warnings
    const text = backingText(b);
    if (seen.has(text)) continue;
    seen.add(text);
    checks.push({
      id: `backing:${b.target === 'swap' ? `swap:${b.source}` : b.target}`,
      status: 'info',
      summary: text,
    });
  }
  if (pseudo.length > 0) {
    checks.push({
      id: 'backing:pseudo',
      status: 'info',
      summary: `no device behind (pseudo filesystems): ${[...new Set(pseudo)].join(', ')}`,
    });
  }
  for (const u of uses.unknown) {
    checks.push({
      id: 'host-uses-unknown',
      status: 'warn',
      summary: u,
      hint: 'storage (01xx) and network (02xx) claims are refused until passthru can tell what backs every mount, swap area and route; claim with --force only if you know the device is not behind it',
    });
  }
  const byAddr = new Map<PciAddress, string[]>();
  for (const u of uses.uses) byAddr.set(u.address, [...(byAddr.get(u.address) ?? []), u.use]);
  for (const d of inv.devices)
    if (d.bootVga)
      byAddr.set(d.address, [
        ...(byAddr.get(d.address) ?? []),
        'boot VGA device (the host console)',
      ]);
  for (const [addr, why] of [...byAddr].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const d = inv.byAddress.get(addr);
    const name = d ? ` (${d.subclassName})` : '';
    checks.push({
      id: `host-critical:${addr}`,
      status: 'info',
      summary: `host-critical ${addr}${name}: ${shortList([...new Set(why)], 8)}`,
    });
  }
  const bridges = inv.devices.filter((d) => bridgeKind(d) !== null).length;
  const platform = inv.devices.filter(
    (d) => bridgeKind(d) === null && platformFunction(d) !== null,
  ).length;
  if (bridges + platform > 0) {
    checks.push({
      id: 'never-offered',
      status: 'info',
      summary: `not offered for passthrough: ${plural(bridges, 'bridge')} (never, even with --force), ${plural(platform, 'platform function')} (only with --force); \`passthru groups\` names them`,
    });
  }
  return checks;
}
