import { bridgeKind } from '../pci/guards.js';
import type { ClaimStatus } from '../engine/engine.js';
import type { GroupView, ListFilter } from '../cli/views.js';
import type { Inventory, PciFunction } from '../pci/model.js';
import { html, query, type Html } from './html.js';
import { badge, emptyRow, headRow } from './layout.js';

function options(
  label: string,
  name: keyof ListFilter,
  current: string | undefined,
  choices: { value: string; text: string }[],
): Html {
  return html`<div class="field">
    <label for="f-${name}">${label}</label>
    <select id="f-${name}" name="${name}">
      <option value="">any</option>
      ${choices.map(
        (c) =>
          html`<option value="${c.value}" ${c.value === current ? html` selected` : ''}>
            ${c.text}
          </option>`,
      )}
    </select>
  </div>`;
}

function uniq<T>(xs: T[], key: (x: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const x of xs) if (!seen.has(key(x))) seen.set(key(x), x);
  return [...seen.values()].sort((a, b) => (key(a) < key(b) ? -1 : 1));
}

/** The filter form: plain GET, so the filters work without JavaScript and can be linked. */
function filterForm(inv: Inventory, f: ListFilter): Html {
  const classes = uniq(inv.devices, (d) => d.classId.slice(0, 4)).map((d) => ({
    value: d.classId.slice(0, 4),
    text: `${d.classId.slice(0, 4)} ${d.subclassName}`,
  }));
  const vendors = uniq(inv.devices, (d) => d.vendorId).map((d) => ({
    value: d.vendorId,
    text: `${d.vendorId} ${d.vendorName}`,
  }));
  const drivers = [
    ...new Set(inv.devices.map((d) => d.driver).filter((d): d is string => d !== null)),
  ]
    .sort()
    .map((d) => ({ value: d, text: d }));
  const groups = [...inv.groups.keys()]
    .sort((a, b) => a - b)
    .map((g) => ({ value: String(g), text: String(g) }));
  return html`<form
    class="filters"
    method="get"
    action="/devices"
    role="search"
    aria-label="Filter devices"
  >
    ${options('Class', 'class', f.class, classes)} ${options('Vendor', 'vendor', f.vendor, vendors)}
    ${options('Driver', 'driver', f.driver, [...drivers, { value: 'none', text: 'no driver' }])}
    ${options('IOMMU group', 'group', f.group, groups)}
    <div class="field actions">
      <button type="submit">Filter</button> <a href="/devices">Clear</a>
    </div>
  </form>`;
}

function action(d: PciFunction, claimed: ReadonlySet<string>, byClaim: Map<string, string>): Html {
  if (claimed.has(d.address))
    return html`<a class="button" href="/release${query({ address: d.address })}">Release…</a>`;
  const owner = byClaim.get(d.address);
  if (owner !== undefined) return html`<small>in claim <code>${owner}</code></small>`;
  if (bridgeKind(d) !== null) return html`<small>bridge</small>`;
  return html`<a class="button" href="/claim${query({ address: d.address })}">Claim…</a>`;
}

export function devicesBody(
  inv: Inventory,
  shown: PciFunction[],
  f: ListFilter,
  claims: ClaimStatus[],
): Html {
  const claimed = new Set<string>(claims.map((c) => c.address));
  const byClaim = new Map<string, string>();
  for (const c of claims) for (const m of c.members) byClaim.set(m, c.address);
  return html`<h1>Devices</h1>
    ${filterForm(inv, f)}
    <section id="devices" data-live aria-labelledby="devices-h">
      <h2 id="devices-h" class="vh">PCI functions</h2>
      <div class="scroll">
        <table class="devices">
          <caption>
            ${shown.length} of ${inv.devices.length} PCI functions (the fields of
            <code>passthru list</code
            >)
          </caption>
          ${headRow(['Address', 'Class', 'IDs', 'Group', 'NUMA', 'Driver', 'Device', 'Action'])}
          <tbody>
            ${shown.map(
              (d) =>
                html`<tr>
                  <th scope="row"><code>${d.address}</code></th>
                  <td>${d.subclassName} <small>[${d.classId.slice(0, 4)}]</small></td>
                  <td><code>${d.vendorId}:${d.deviceId}</code></td>
                  <td>${d.iommuGroup ?? '-'}</td>
                  <td>${d.numaNode ?? '-'}</td>
                  <td>
                    ${d.driver === null ? html`<em>none</em>` : d.driver === 'vfio-pci' ? badge('vfio-pci', 'ok') : d.driver}
                  </td>
                  <td>${d.vendorName} ${d.deviceName}</td>
                  <td>${action(d, claimed, byClaim)}</td>
                </tr>`,
            )}
            ${shown.length === 0 ? emptyRow(8, 'No function matches these filters.') : ''}
          </tbody>
        </table>
      </div>
    </section>`;
}

export function groupsBody(groups: GroupView[]): Html {
  return html`<h1>IOMMU groups</h1>
    <p>
      A VM can use a group only when every endpoint in it is on vfio-pci (or pci-stub) or has no
      driver; bridges are exempt. passthru can claim a whole group (<code>--with-group</code>) when
      no member is needed by the host.
    </p>
    <section id="groups" data-live aria-labelledby="groups-h">
      <h2 id="groups-h" class="vh">Groups</h2>
      <div class="scroll">
        <table class="groups">
          <caption>
            ${groups.length} IOMMU groups
          </caption>
          ${headRow(['Group', 'Passthrough now', 'Claimable', 'Members', 'Action'])}
          <tbody>
            ${groups.map((g) => {
              const first = g.members.find((m) => !m.bridge);
              return html`<tr id="group-${g.group}">
                <th scope="row">${g.group}</th>
                <td>
                  ${
                    g.viable
                      ? badge('yes', 'ok')
                      : html`${badge('no', 'bad')}
                          <ul>
                            ${g.blockers.map((b) => html`<li><code>${b.address}</code> is on ${b.driver}</li>`)}
                          </ul>`
                  }
                </td>
                <td>
                  ${
                    g.claimable
                      ? badge('yes', 'ok')
                      : g.critical.length > 0
                        ? html`${badge('no', 'bad')}
                            <ul>
                              ${g.critical.map((c) => html`<li><code>${c.address}</code>: ${c.reasons.join('; ')}</li>`)}
                            </ul>`
                        : html`${badge('no', 'warn')} only bridges`
                  }
                </td>
                <td>
                  <ul class="members">
                    ${g.members.map((m) => html`<li><code>${m.address}</code> <code>${m.ids}</code> ${m.driver ?? 'no driver'} · ${m.class}${m.bridge ? ' (bridge, exempt)' : ''}: ${m.name}</li>`)}
                  </ul>
                </td>
                <td>
                  ${g.claimable && first ? html`<a class="button" href="/claim${query({ address: first.address, withGroup: '1' })}">Claim group…</a>` : ''}
                </td>
              </tr>`;
            })}
          </tbody>
        </table>
      </div>
    </section>`;
}
