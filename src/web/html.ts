/**
 * A tiny typed HTML builder: every interpolated value is escaped unless it is already Html,
 * so a device name such as `<script>` from a hostile pci.ids or topology shows as text. The
 * only way to put markup in is another html`` template (or `trusted`, for constants).
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** What may be interpolated: text (escaped), numbers, Html, lists of those; nothing for null. */
export type Child = Html | string | number | null | undefined | false | readonly Child[];

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes for text and for quoted attribute values alike. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

function render(c: Child): string {
  if (c === null || c === undefined || c === false) return '';
  if (c instanceof Html) return c.text;
  if (typeof c === 'number') return String(c);
  if (typeof c === 'string') return escapeHtml(c);
  return c.map(render).join('');
}

export function html(strings: TemplateStringsArray, ...values: Child[]): Html {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new Html(out);
}

/** Markup written in this codebase (CSS, the script): never data. */
export function trusted(text: string): Html {
  return new Html(text);
}

/** A query string from fields, each value URI-encoded (the result still goes through html``). */
export function query(fields: Record<string, string | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== '') p.set(k, v);
  const s = p.toString();
  return s === '' ? '' : `?${s}`;
}
