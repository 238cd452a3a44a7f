import type { AgentStatus, ReleaseOutcome } from '../agent/agent.js';
import type { ApiProblems, AgentPhase, PodUse } from '../agent/routes.js';
import type { ClaimStatus } from '../engine/engine.js';
import { errorCodes } from '../errors.js';
import { printable, table } from './table.js';

/** The exit code for a set of claim statuses: 0 when all are ready. */
export function claimsExitCode(claims: ClaimStatus[]): number {
  for (const c of claims) {
    if (c.state === 'ready') continue;
    return errorCodes[c.code ?? 'PT_ERR_BIND_FAILED'].exit;
  }
  return 0;
}

export function claimsText(claims: ClaimStatus[]): string {
  return `${table(
    ['CLAIM', 'STATE', 'GROUP', 'MEMBERS', 'DETAIL'],
    claims.map((c) => [
      c.address,
      c.state,
      c.group === null ? '-' : String(c.group),
      c.members
        .map((m) =>
          c.originalDrivers[m] !== undefined
            ? `${m} (was ${c.originalDrivers[m] ?? 'no driver'})`
            : m,
        )
        .join(', '),
      c.code !== undefined
        ? `${c.code}: ${c.message ?? ''}`
        : c.state === 'ready'
          ? 'on vfio-pci'
          : '',
    ]),
  )}\n`;
}

export function releaseText(out: ReleaseOutcome[]): string {
  if (out.length === 0) return 'released (nothing was bound)\n';
  return `${out
    .map((o) => {
      switch (o.state) {
        case 'released':
          return `${o.address}  released  now on ${o.driver ?? 'no driver'}`;
        case 'abandoned':
          return `${o.address}  abandoned (was ${o.expected ?? 'no driver'}): ${o.message ?? ''}`;
        case 'in-use':
        case 'pending':
          return `${o.address}  PENDING   ${o.message ?? ''}`;
        case 'failed':
          return `${o.address}  FAILED    ${o.code ?? ''}: ${o.message ?? ''}`;
      }
    })
    .map(printable)
    .join('\n')}\n`;
}

function ms(t: number | null): string {
  return t === null ? '-' : `${t} ms`;
}

/** Status as the agent's API answers it: its phase and problems come with a running agent only. */
export type StatusView = Omit<Partial<AgentStatus>, 'phase'> & {
  phase?: AgentPhase;
  problems?: ApiProblems;
  /** With device plugins: which pod holds which device (the kubelet's pod-resources API). */
  pods?: PodUse[];
};

export function statusText(s: StatusView): string {
  const lines: string[] = [];
  if (s.phase === 'starting')
    lines.push('agent phase: starting (re-applying claims; status is partial until it finishes)');
  if (s.host !== undefined) lines.push(`host: ${printable(s.host)}`);
  lines.push('');
  if (s.claims !== undefined)
    lines.push(s.claims.length === 0 ? 'claims: none' : claimsText(s.claims).trimEnd());
  if (s.pods !== undefined && s.pods.length > 0) {
    lines.push('');
    lines.push(
      table(
        ['IN USE BY POD', 'RESOURCE', 'POD', 'CONTAINER'],
        s.pods.map((p) => [
          printable(p.address),
          printable(p.resourceName),
          printable(`${p.namespace}/${p.pod}`),
          printable(p.container),
        ]),
      ).trimEnd(),
    );
  }
  // What passthru still owes the host: releases pending, devices gone or swapped.
  const owed = (s.ledger ?? []).filter((l) => l.state !== 'held');
  if (owed.length > 0) {
    lines.push('');
    lines.push(
      table(
        ['OWED BACK', 'STATE', 'ORIGINAL', 'WHY'],
        owed.map((l) => [
          l.address,
          l.state,
          l.originalDriver ?? 'no driver',
          printable(l.message ?? ''),
        ]),
      ).trimEnd(),
    );
  }
  for (const b of s.busy ?? [])
    lines.push(
      `busy: ${b.address} ${printable(b.op)} pending in the kernel for ${String(Math.round(b.forMs / 1000))} s`,
    );
  const k = s.keeper;
  if (k !== undefined) {
    lines.push('');
    lines.push(
      `vfio modules: ${k.healthy ? 'all loaded' : 'NOT all loaded'}${k.waiting !== null ? ` (waiting: ${printable(k.waiting)})` : ''}${k.recovering ? ' (recovering)' : ''}`,
    );
    lines.push(`  ${k.modules.map((m) => `${m.name}=${m.state}`).join('  ')}`);
    lines.push(`losses: ${k.losses}   uevents: ${k.uevents ? 'yes' : 'no (polling only)'}`);
    if (k.recoveries.length > 0) {
      lines.push('');
      lines.push(
        table(
          [
            'RECOVERY (detected)',
            'MODULES',
            'VIA',
            'ATTEMPTS',
            'RELOADED',
            'DEVICES BACK',
            'DEVICES',
          ],
          k.recoveries
            .slice(-10)
            .map((r) => [
              new Date(r.detectedAt).toISOString(),
              r.modules.join(','),
              r.via,
              String(r.attempts),
              ms(r.detectToReloadMs),
              ms(r.detectToReboundMs),
              String(r.devices),
            ]),
        ),
      );
    }
  }
  const p = s.problems;
  if (p !== undefined && (p.history.writeErrors > 0 || p.events.subscriberErrors > 0)) {
    lines.push('');
    if (p.history.writeErrors > 0)
      lines.push(
        `PROBLEM: ${p.history.writeErrors} history writes failed (last: ${printable(p.history.lastError ?? '?')})`,
      );
    if (p.events.subscriberErrors > 0)
      lines.push(
        `PROBLEM: ${p.events.subscriberErrors} event subscriber failures (last: ${printable(p.events.lastError ?? '?')})`,
      );
  }
  return `${lines.join('\n')}\n`;
}
