import type { Recovery } from '../events/events.js';
import { html, type Html } from './html.js';
import { clockText } from './layout.js';

const W = 520;
const H = 210;
const PAD = { left: 56, right: 12, top: 16, bottom: 40 };

/** A round upper bound for the axis: 1, 2 or 5 times a power of ten. */
function niceMax(v: number): number {
  if (v <= 0) return 100;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * Losses and recoveries as an inline SVG bar chart, one bar per loss in time order: the dark
 * part is detection to modules reloaded, the light part reloaded to every device verified back
 * on vfio-pci. A loss still being recovered is a hatched bar marked "recovering". The same
 * figures are in the table beside it (the chart is a picture of that table).
 */
export function recoveryChart(recoveries: Recovery[], open: { detectedAt: number } | null): Html {
  const bars = recoveries.map((r) => ({
    at: r.detectedAt,
    reload: r.detectToReloadMs ?? 0,
    total: r.detectToReboundMs ?? r.detectToReloadMs ?? 0,
    open: false,
  }));
  if (open) bars.push({ at: open.detectedAt, reload: 0, total: 0, open: true });
  const max = niceMax(Math.max(0, ...bars.map((b) => b.total)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(bars.length, 1);
  const barW = Math.min(48, slot * 0.6);
  const y = (ms: number): number => PAD.top + plotH - (ms / max) * plotH;
  const ticks = [0, max / 2, max];
  const summary =
    bars.length === 0
      ? 'No module losses recorded.'
      : `${recoveries.length} recover${recoveries.length === 1 ? 'y' : 'ies'}${open ? ', one loss being recovered' : ''}; longest ${Math.max(0, ...bars.map((b) => b.total))} ms from detection to devices back.`;
  return html`<svg
    class="chart"
    viewBox="0 0 ${W} ${H}"
    role="img"
    aria-labelledby="chart-title chart-desc"
    preserveAspectRatio="xMinYMin meet"
  >
    <title id="chart-title">Module losses and recovery latency (ms)</title>
    <desc id="chart-desc">${summary}</desc>
    <defs>
      <pattern
        id="hatch"
        width="6"
        height="6"
        patternUnits="userSpaceOnUse"
        patternTransform="rotate(45)"
      >
        <rect width="3" height="6" class="hatch" />
      </pattern>
    </defs>
    ${ticks.map(
      (t) =>
        html`<line
            class="grid"
            x1="${PAD.left}"
            x2="${W - PAD.right}"
            y1="${y(t)}"
            y2="${y(t)}"
          /><text class="axis" x="${PAD.left - 6}" y="${y(t) + 4}" text-anchor="end"
            >${Math.round(t)}</text
          >`,
    )}
    <text
      class="axis"
      x="12"
      y="${PAD.top + plotH / 2}"
      transform="rotate(-90 12 ${PAD.top + plotH / 2})"
      text-anchor="middle"
    >
      ms
    </text>
    ${bars.map((b, i) => {
      const x = PAD.left + slot * i + (slot - barW) / 2;
      const label = html`<text
        class="axis"
        x="${x + barW / 2}"
        y="${H - PAD.bottom + 16}"
        text-anchor="middle"
        >${clockText(b.at)}</text
      >`;
      if (b.open)
        return html`<g class="bar open"
          ><rect
            x="${x}"
            y="${PAD.top}"
            width="${barW}"
            height="${plotH}"
            fill="url(#hatch)"
          /><text class="axis" x="${x + barW / 2}" y="${PAD.top + 14}" text-anchor="middle"
            >recovering</text
          >${label}</g
        >`;
      return html`<g class="bar"
        ><rect
          class="rebound"
          x="${x}"
          y="${y(b.total)}"
          width="${barW}"
          height="${y(0) - y(b.total)}"
        /><rect
          class="reload"
          x="${x}"
          y="${y(b.reload)}"
          width="${barW}"
          height="${y(0) - y(b.reload)}"
        /><text class="value" x="${x + barW / 2}" y="${y(b.total) - 4}" text-anchor="middle"
          >${b.total}</text
        >${label}</g
      >`;
    })}
    <line class="axisline" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(0)}" y2="${y(0)}" />
    <g class="legend" transform="translate(8 ${H - 10})">
      <rect class="reload" width="10" height="10" y="-9" />
      <text x="14">detected → modules reloaded</text>
      <rect class="rebound" x="220" width="10" height="10" y="-9" />
      <text x="234">→ devices back on vfio-pci</text>
    </g>
  </svg>`;
}
