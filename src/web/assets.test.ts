import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PAGE_CSS } from './assets.js';

/** WCAG 2.1 relative luminance of #rrggbb. */
function luminance(hex: string): number {
  const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  const [r, g, b] = c.map((x) => (x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4));
  return 0.2126 * (r ?? 0) + 0.7152 * (g ?? 0) + 0.0722 * (b ?? 0);
}

function contrast(a: string, b: string): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return ((hi ?? 0) + 0.05) / ((lo ?? 0) + 0.05);
}

test('the stylesheet colours meet WCAG AA: text pairs 4.5:1 or more, focus rings 3:1 against their background', () => {
  const v = Object.fromEntries(
    [...PAGE_CSS.matchAll(/--([a-z-]+):(#[0-9a-f]{6})/g)].map((m) => [m[1], m[2]]),
  ) as Record<string, string>;
  const text: [string, string][] = [
    ['fg', 'bg'],
    ['muted', 'bg'],
    ['muted', 'panel'],
    ['link', 'bg'],
    ['link', 'info-bg'],
    ['ok', 'ok-bg'],
    ['warn', 'warn-bg'],
    ['bad', 'bad-bg'],
    ['info', 'info-bg'],
    ['fg', 'info-bg'],
    ['header-muted', 'header'],
  ];
  for (const [fg, bg] of text) {
    const r = contrast(v[fg]!, v[bg]!);
    assert.ok(r >= 4.5, `--${fg} on --${bg}: ${r.toFixed(2)}:1`);
  }
  assert.ok(contrast(v.focus!, v.bg!) >= 3, 'focus ring on the page');
  assert.ok(contrast(v['focus-dark']!, v.header!) >= 3, 'focus ring in the header');
  assert.ok(contrast('#ffffff', v.link!) >= 4.5, 'primary button text');
});
