/**
 * Names come from topologies, sysfs trees and pci.ids: a control character or a bidi override
 * in one would reach the terminal raw (colours, cursor moves, a faked line). Those are printed
 * as escapes: \x1b, \u202e.
 */
export function printable(s: string): string {
  return s.replace(
    // eslint-disable-next-line no-control-regex -- matching control characters is the point
    /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g,
    (c) => {
      const n = c.charCodeAt(0);
      return n <= 0xff
        ? `\\x${n.toString(16).padStart(2, '0')}`
        : `\\u${n.toString(16).padStart(4, '0')}`;
    },
  );
}

/** Left-aligned columns separated by two spaces; the last column is not padded. Cells are printable(). */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows.map((r) => r.map(printable))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
