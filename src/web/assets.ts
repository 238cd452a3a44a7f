/**
 * The page's stylesheet and script, served from the agent itself (no CDN, no build step).
 * Colours are picked for WCAG AA contrast on white (text 4.5:1 or more, badges carry words,
 * not colour alone); focus is always visible; tables scroll sideways on a phone.
 */
export const PAGE_CSS = `
:root { --fg:#1a1a1a; --muted:#4a4a4a; --bg:#ffffff; --panel:#f4f5f7; --line:#c7cbd1;
  --link:#0b57d0; --focus:#b3261e; --focus-dark:#ffd166; --header:#1f2933; --header-muted:#d9e2ec; --ok:#0f6b2f; --ok-bg:#e3f4e8; --warn:#7a4a00; --warn-bg:#fff1d6;
  --bad:#a11212; --bad-bg:#fde7e7; --info:#1d4f91; --info-bg:#e4edfa; --reload:#1d4f91; --rebound:#7fa6dc; }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
a { color:var(--link); }
:focus-visible { outline:3px solid var(--focus); outline-offset:2px; }
.top :focus-visible { outline-color:var(--focus-dark); }
main:focus { outline:none; }
.skip { position:absolute; left:-999px; top:0; background:#fff; padding:.5rem; z-index:2; }
.skip:focus { left:.5rem; }
.vh { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
.top { display:flex; flex-wrap:wrap; align-items:center; gap:.5rem 1.5rem; padding:.6rem 1rem; background:var(--header); color:#fff; }
.top a { color:#fff; }
.brand { margin:0; font-weight:700; font-size:1.1rem; }
.host { font-weight:400; color:var(--header-muted); font-size:.9rem; }
nav ul { display:flex; flex-wrap:wrap; gap:.25rem 1rem; list-style:none; margin:0; padding:0; }
nav a { display:inline-block; padding:.35rem .2rem; text-decoration:none; border-bottom:3px solid transparent; }
nav a[aria-current="page"] { border-bottom-color:#fff; font-weight:600; }
nav a:hover { text-decoration:underline; }
.live { margin:0 0 0 auto; font-size:.85rem; color:var(--header-muted); }
.live.on::before { content:"● "; color:#6fdc8c; }
main { padding:1rem; max-width:1200px; margin:0 auto; }
h1 { font-size:1.5rem; margin:.5rem 0 1rem; }
h2 { font-size:1.2rem; margin:1.5rem 0 .5rem; display:flex; flex-wrap:wrap; gap:.5rem; align-items:center; }
section { margin-bottom:1.5rem; }
.grid { display:grid; grid-template-columns:minmax(0,1fr) minmax(0,2fr); gap:0 1.5rem; }
@media (max-width: 800px) { .grid { grid-template-columns:minmax(0,1fr); } }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-size:.92rem; }
caption { text-align:left; color:var(--muted); padding:.25rem 0; }
th, td { text-align:left; vertical-align:top; padding:.4rem .5rem; border-bottom:1px solid var(--line); }
thead th { background:var(--panel); font-weight:600; }
tbody th { font-weight:400; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size:.9em; }
pre { background:var(--panel); padding:.75rem; overflow-x:auto; }
ul.members, td ul { margin:0; padding-left:1rem; }
.badge { display:inline-block; padding:0 .45rem; border-radius:.6rem; font-size:.85rem; font-weight:600; border:1px solid currentColor; white-space:nowrap; }
.badge.ok { color:var(--ok); background:var(--ok-bg); }
.badge.warn { color:var(--warn); background:var(--warn-bg); }
.badge.bad { color:var(--bad); background:var(--bad-bg); }
.badge.info { color:var(--info); background:var(--info-bg); }
.button, button { display:inline-block; font:inherit; font-size:.9rem; padding:.35rem .8rem; min-height:2.25rem; border:1px solid var(--link); border-radius:.3rem; background:#fff; color:var(--link); text-decoration:none; cursor:pointer; white-space:nowrap; }
.button:hover, button:hover { background:var(--info-bg); }
button.primary { background:var(--link); color:#fff; }
button.primary:hover { background:#0842a0; }
.filters { display:flex; flex-wrap:wrap; gap:.75rem 1rem; align-items:flex-end; background:var(--panel); padding:.75rem; border-radius:.3rem; margin-bottom:1rem; }
.field { display:flex; flex-direction:column; gap:.2rem; }
.field label { font-weight:600; font-size:.9rem; }
select { font:inherit; padding:.3rem; min-height:2.25rem; border:1px solid #6b7280; border-radius:.25rem; background:#fff; color:var(--fg); max-width:16rem; }
.field.actions { flex-direction:row; align-items:center; gap:.75rem; }
.notice { background:var(--info-bg); border-left:4px solid var(--info); padding:.6rem .8rem; }
.confirm { display:flex; gap:1rem; align-items:center; margin-top:1rem; }
.events { padding-left:1.5rem; font-size:.92rem; }
.events li, details li { margin:.15rem 0; }
time { color:var(--muted); font-variant-numeric:tabular-nums; }
tr.history td { border-bottom:2px solid var(--line); padding-top:0; }
details summary { cursor:pointer; color:var(--muted); }
.chart { width:100%; min-width:340px; height:auto; max-height:280px; background:#fff; }
.chart .grid { stroke:#e1e4e8; }
.chart .axisline { stroke:#4a4a4a; }
.chart text { font-size:13px; fill:#333; }
.chart .value { font-weight:600; }
.chart .reload { fill:var(--reload); }
.chart .rebound { fill:var(--rebound); }
.chart .hatch { fill:#c77700; }
.flash { animation: flash 1.2s ease-out; }
@keyframes flash { from { background:#fff3b0; } to { background:transparent; } }
@media (prefers-reduced-motion: reduce) { .flash { animation:none; } }
`;

/**
 * Live updates: the page listens to /events (server-sent events) and, on each event, fetches
 * itself again and swaps the sections marked data-live, so the server stays the only renderer.
 * Focus stays where it was when the focused element survives the swap (same id or same link).
 */
export const PAGE_JS = `'use strict';
(function () {
  if (!('EventSource' in window) || !('fetch' in window)) return;
  var live = document.getElementById('live');
  var timer = null;
  var last = '';
  function say(text, on) { if (live) { live.textContent = text; live.classList.toggle('on', on); } }
  function refresh() {
    timer = null;
    fetch(location.href, { headers: { 'accept': 'text/html' }, credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error(String(r.status))); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, 'text/html');
        var active = document.activeElement;
        var key = active && (active.id || active.getAttribute('href'));
        document.querySelectorAll('[data-live]').forEach(function (el) {
          var next = el.id ? doc.getElementById(el.id) : null;
          if (!next) return;
          var open = {};
          el.querySelectorAll("details[open][data-key]").forEach(function (d) { open[d.dataset.key] = true; });
          next.querySelectorAll("details[data-key]").forEach(function (d) { if (open[d.dataset.key]) d.open = true; });
          if (next.innerHTML !== el.innerHTML) {
            el.replaceWith(next);
            next.classList.add('flash');
          }
        });
        if (key && !document.body.contains(active)) {
          var again = document.getElementById(key) || document.querySelector('[href="' + CSS.escape(key) + '"]');
          if (again) again.focus();
        }
        say('Live: ' + last, true);
      })
      .catch(function () { say('Live updates paused: reload to refresh.', false); });
  }
  function connect() {
    var es = new EventSource('/events');
    es.onopen = function () { say('Live updates on', true); };
    es.onmessage = function (m) {
      try { var e = JSON.parse(m.data); last = e.type + ' at ' + new Date(e.at).toISOString().slice(11, 19) + ' UTC'; } catch (x) { last = 'update'; }
      if (timer === null) timer = setTimeout(refresh, 100);
    };
    es.onerror = function () { say('Live updates reconnecting…', false); };
  }
  connect();
})();
`;
