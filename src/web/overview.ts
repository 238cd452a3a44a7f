import type { AgentStatus } from '../agent/agent.js';
import type { DoctorReport } from '../doctor/doctor.js';
import type { DomainEvent } from '../events/events.js';
import { recoveryChart } from './chart.js';
import { html, query, type Html } from './html.js';
import { badge, emptyRow, timeText, toneOfClaim, headRow } from './layout.js';

export interface OverviewData {
  status: AgentStatus;
  phase: string;
  doctor: DoctorReport;
  /** The result of a form post, shown once after its redirect. */
  notice: { kind: 'claim' | 'release'; address: string } | null;
}

/** Events about a device, for a claim's history. */
function touches(e: DomainEvent, addrs: ReadonlySet<string>): boolean {
  if ('address' in e && addrs.has(e.address)) return true;
  if (e.type === 'claim.state') return e.members.some((m) => addrs.has(m));
  if (e.type === 'module.lost') return (e.devices ?? []).some((m) => addrs.has(m));
  return false;
}

function eventText(e: DomainEvent): string {
  switch (e.type) {
    case 'claim.added':
      return `claimed${e.source !== undefined ? ` (${e.source})` : ''}${e.withGroup ? ' with its group' : ''}`;
    case 'claim.state':
      return `${e.address} ${e.state}${e.message !== undefined ? `: ${e.message}` : ''}`;
    case 'claim.removed':
      return `${e.address} claim removed`;
    case 'claim.refused':
      return `${e.address} refused: ${e.message}`;
    case 'claim.accepted_change':
      return `${e.address} new card accepted (${e.vendorId}:${e.deviceId})`;
    case 'ledger.abandoned':
      return `${e.address} ledger entry abandoned: ${e.reason}`;
    case 'device.bound':
      return `${e.address} bound to vfio-pci from ${e.from ?? 'no driver'} in ${e.ms} ms`;
    case 'device.bind_failed':
      return `${e.address} bind failed: ${e.message}${e.rolledBack ? ' (rolled back)' : ''}`;
    case 'device.released':
      return `${e.address} released to ${e.driver ?? 'no driver'}${e.note !== undefined ? ` (${e.note})` : ''}`;
    case 'device.release_failed':
      return `${e.address} release failed: ${e.message}`;
    case 'device.drift':
      return `${e.address} found on ${e.driver ?? 'no driver'} instead of vfio-pci`;
    case 'module.lost':
      return `lost ${e.modules.join(', ')} (seen by ${e.via})`;
    case 'module.reload_failed':
      return `reload of ${e.module} failed (attempt ${e.attempt}): ${e.message}`;
    case 'module.reloaded':
      return `reloaded ${e.modules.join(', ')} after ${e.attempts} attempt${e.attempts === 1 ? '' : 's'}`;
    case 'recovery.completed':
      return `recovered: devices back after ${e.recovery.detectToReboundMs ?? '?'} ms`;
  }
}

function moduleSection(s: AgentStatus): Html {
  const k = s.keeper;
  const overall = k.healthy
    ? badge('healthy', 'ok')
    : k.recovering
      ? badge('recovering', 'warn')
      : badge('not loaded', 'bad');
  return html`<section id="modules" data-live aria-labelledby="modules-h">
    <h2 id="modules-h">vfio modules ${overall}</h2>
    <p>
      ${k.losses} loss${k.losses === 1 ? '' : 'es'} since the agent started. Kernel uevents
      ${k.uevents ? 'watched' : 'not available: polling only'}.${k.waiting !== null ? html` <strong>Waiting: ${k.waiting}</strong>` : ''}
    </p>
    <div class="scroll">
      <table>
        <caption class="vh">
          Module states
        </caption>
        ${headRow(['Module', 'State'])}
        <tbody>
          ${k.modules.map(
            (m) =>
              html`<tr>
                <th scope="row"><code>${m.name}</code></th>
                <td>
                  ${badge(m.state, m.state === 'live' || m.state === 'builtin' ? 'ok' : m.state === 'missing' ? 'bad' : 'warn')}
                </td>
              </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}

function timelineSection(s: AgentStatus): Html {
  const recs = s.keeper.recoveries;
  // A loss the tracker has not closed yet: the newest module.lost after the last completion.
  const lastDone = recs.at(-1)?.reboundAt ?? -Infinity;
  const openLoss = s.keeper.recovering
    ? ([...s.recent].reverse().find((e) => e.type === 'module.lost' && e.at >= lastDone) ?? null)
    : null;
  const open = openLoss ? { detectedAt: openLoss.at } : null;
  return html`<section id="timeline" data-live aria-labelledby="timeline-h">
    <h2 id="timeline-h">Losses and recoveries</h2>
    <div class="scroll">${recoveryChart(recs, open)}</div>
    <div class="scroll">
      <table>
        <caption>
          Each loss of the vfio modules: when it was seen, how, and how long until the modules and
          then every claimed device were back
        </caption>
        ${headRow(['Detected', 'Modules', 'Seen by', 'To reload', 'To devices back', 'Devices', 'Attempts'])}
        <tbody>
          ${
            open
              ? html`<tr class="open">
                  <td>${timeText(open.detectedAt)}</td>
                  <td colspan="6">
                    ${badge('recovering', 'warn')} loss seen, recovery in progress
                  </td>
                </tr>`
              : ''
          }
          ${[...recs].reverse().map(
            (r) =>
              html`<tr>
                <td>${timeText(r.detectedAt)}</td>
                <td>${r.modules.join(', ') || '-'}</td>
                <td>${r.via}</td>
                <td>${r.detectToReloadMs === null ? '-' : `${r.detectToReloadMs} ms`}</td>
                <td>${r.detectToReboundMs === null ? '-' : `${r.detectToReboundMs} ms`}</td>
                <td>${r.devices}</td>
                <td>${r.attempts}</td>
              </tr>`,
          )}
          ${recs.length === 0 && !open ? emptyRow(7, 'No losses recorded.') : ''}
        </tbody>
      </table>
    </div>
  </section>`;
}

function claimsSection(s: AgentStatus): Html {
  return html`<section id="claims" data-live aria-labelledby="claims-h">
    <h2 id="claims-h">Claims</h2>
    ${
      s.claims.length === 0
        ? html`<p>Nothing is claimed. Claim a device from <a href="/devices">Devices</a>.</p>`
        : html`<div class="scroll">
            <table>
              <caption class="vh">
                Claimed devices
              </caption>
              ${headRow(['Address', 'State', 'Group', 'Members', 'Original driver', 'Since', 'Action'])}
              <tbody>
                ${s.claims.map((c) => {
                  const addrs = new Set<string>([c.address, ...c.members]);
                  const history = s.recent.filter((e) => touches(e, addrs));
                  return html`<tr>
                      <th scope="row"><code>${c.address}</code></th>
                      <td>
                        ${badge(c.state, toneOfClaim(c.state))}${c.message !== undefined ? html`<br /><small>${c.message}</small>` : ''}
                      </td>
                      <td>${c.group ?? '-'}</td>
                      <td>${c.members.map((m) => html`<code>${m}</code> `)}</td>
                      <td>
                        ${Object.entries(c.originalDrivers).map(([a, d]) => html`<code>${a}</code>: ${d ?? 'no driver'}<br />`)}
                      </td>
                      <td>${timeText(c.lastChange)}</td>
                      <td>
                        <a class="button" href="/release${query({ address: c.address })}"
                          >Release…</a
                        >
                      </td>
                    </tr>
                    <tr class="history">
                      <td colspan="7">
                        <details data-key="history-${c.address}">
                          <summary>
                            History of <code>${c.address}</code> (${history.length}
                            event${history.length === 1 ? '' : 's'})
                          </summary>
                          <ol>
                            ${history.map((e) => html`<li><time>${timeText(e.at)}</time> ${eventText(e)}</li>`)}
                          </ol>
                        </details>
                      </td>
                    </tr>`;
                })}
              </tbody>
            </table>
          </div>`
    }
    ${
      s.ledger.length > 0
        ? html`<h3>Ledger: devices passthru must give back</h3>
            <div class="scroll">
              <table>
                <caption class="vh">
                  Ledger
                </caption>
                ${headRow(['Address', 'Original driver', 'Claim', 'State', 'Note'])}
                <tbody>
                  ${s.ledger.map(
                    (l) =>
                      html`<tr>
                        <th scope="row"><code>${l.address}</code></th>
                        <td>${l.originalDriver ?? 'no driver'}</td>
                        <td>${l.claim ?? '-'}</td>
                        <td>${badge(l.state, toneOfClaim(l.state))}</td>
                        <td>${l.message ?? ''}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>
            </div>`
        : ''
    }
    ${s.busy.length > 0 ? html`<p><strong>Kernel operations pending:</strong> ${s.busy.map((b) => html`<code>${b.address}</code> ${b.op} for ${b.forMs} ms; `)}</p>` : ''}
  </section>`;
}

function doctorSection(d: DoctorReport): Html {
  const tone = { pass: 'ok', info: 'info', warn: 'warn', fail: 'bad' } as const;
  return html`<section id="doctor" aria-labelledby="doctor-h">
    <h2 id="doctor-h">
      Doctor
      ${d.ok ? badge('passthrough possible', 'ok') : badge('passthrough not possible', 'bad')}
    </h2>
    <div class="scroll">
      <table>
        <caption class="vh">
          Host checks and their fixes
        </caption>
        ${headRow(['Check', 'Result', 'Finding', 'Fix'])}
        <tbody>
          ${d.checks.map(
            (c) =>
              html`<tr>
                <th scope="row">${c.id}</th>
                <td>${badge(c.status, tone[c.status])}</td>
                <td>${c.summary}</td>
                <td>${c.hint ?? ''}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}

function recentSection(s: AgentStatus): Html {
  return html`<section id="events" data-live aria-labelledby="events-h">
    <h2 id="events-h">Recent events</h2>
    <ol class="events" reversed>
      ${[...s.recent]
        .reverse()
        .slice(0, 30)
        .map(
          (e) =>
            html`<li><time>${timeText(e.at)}</time> <code>${e.type}</code> ${eventText(e)}</li>`,
        )}
    </ol>
  </section>`;
}

function noticeSection(n: OverviewData['notice'], s: AgentStatus): Html {
  if (!n) return html``;
  if (n.kind === 'claim') {
    const c = s.claims.find((x) => x.address === n.address);
    return html`<p class="notice" role="status">
      Claim of <code>${n.address}</code> sent:
      ${c ? badge(c.state, toneOfClaim(c.state)) : 'not in the claims'}${c?.message !== undefined ? ` ${c.message}` : ''}
    </p>`;
  }
  const still = s.claims.some((x) => x.address === n.address);
  return html`<p class="notice" role="status">
    Release of <code>${n.address}</code> sent:
    ${still ? 'the claim is still there' : 'the claim is gone'}.
  </p>`;
}

export function overviewBody(d: OverviewData): Html {
  return html`<h1>Overview</h1>
    <p class="phase">
      Agent ${badge(d.phase, d.phase === 'running' ? 'ok' : 'warn')} on ${d.status.host}
    </p>
    ${noticeSection(d.notice, d.status)}
    <div class="grid">${moduleSection(d.status)} ${timelineSection(d.status)}</div>
    ${claimsSection(d.status)} ${doctorSection(d.doctor)} ${recentSection(d.status)}`;
}
