import { html, type Child, type Html } from './html.js';

export type PageName = 'overview' | 'devices' | 'groups' | 'action';

const NAV: { page: PageName; href: string; label: string }[] = [
  { page: 'overview', href: '/', label: 'Overview' },
  { page: 'devices', href: '/devices', label: 'Devices' },
  { page: 'groups', href: '/groups', label: 'IOMMU groups' },
];

/** Short UTC time of a clock reading: the page shows the agent's times, not the browser's. */
export function timeText(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

export function clockText(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

/**
 * Every page: a skip link, the navigation, a status line the script fills in (announced
 * politely to screen readers), then the page's own content. Works without the script.
 */
export function layout(opts: { title: string; page: PageName; host: string; body: Child }): Html {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${opts.title} · passthru</title>
        <link rel="stylesheet" href="/ui/page.css" />
        <script src="/ui/page.js" defer></script>
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
          <p class="brand">passthru <span class="host">${opts.host}</span></p>
          <nav aria-label="Sections">
            <ul>
              ${NAV.map(
                (n) =>
                  html`<li>
                    <a href="${n.href}" ${n.page === opts.page ? html` aria-current="page"` : ''}
                      >${n.label}</a
                    >
                  </li>`,
              )}
            </ul>
          </nav>
          <p id="live" class="live" role="status" aria-live="polite">
            Live updates need JavaScript; reload to refresh.
          </p>
        </header>
        <main id="main" tabindex="-1">${opts.body}</main>
      </body>
    </html> `;
}

/** A state word with a shape and a colour class; the word itself carries the meaning. */
export function badge(text: string, tone: 'ok' | 'warn' | 'bad' | 'info'): Html {
  return html`<span class="badge ${tone}">${text}</span>`;
}

export function toneOfClaim(state: string): 'ok' | 'warn' | 'bad' | 'info' {
  if (state === 'ready' || state === 'released' || state === 'held') return 'ok';
  if (state === 'error' || state === 'refused' || state === 'changed' || state === 'failed')
    return 'bad';
  if (state === 'pending' || state === 'busy' || state === 'releasing') return 'info';
  return 'warn';
}

/** The row a table shows when it has no other: `text` across its `columns` columns. */
export function emptyRow(columns: number, text: string): Html {
  return html`<tr>
    <td colspan="${columns}">${text}</td>
  </tr>`;
}

/** A table's header row: one column header per name. */
export function headRow(columns: readonly string[]): Html {
  return html`<thead>
    <tr>
      ${columns.map((c) => html`<th scope="col">${c}</th>`)}
    </tr>
  </thead>`;
}
