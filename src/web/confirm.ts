import type { DryRunPlan, PlanStep } from '../preview/dry-run.js';
import { html, type Html } from './html.js';
import { badge, toneOfClaim, headRow } from './layout.js';

/** The file a step writes (modprobe for a module load). */
function fileOf(s: PlanStep): string {
  return s.path ?? 'modprobe';
}

/** How a step looks in a shell. */
function shellLine(s: PlanStep): string {
  if (s.path === null) return `modprobe ${s.value}`;
  const v = s.value.endsWith('\n') ? s.value.slice(0, -1) : s.value;
  return `echo '${v}' > ${s.path}`;
}

function stepsTable(steps: PlanStep[], caption: string): Html {
  const h = html;
  return h`<div class="scroll"><table class="writes">
<caption>${caption}</caption>
${headRow(['#', 'File', 'Value written', 'Note'])}
<tbody>${steps.map(
    (s, i) =>
      h`<tr><td>${i + 1}</td><td><code>${fileOf(s)}</code></td><td><code>${s.value === '\n' ? '(empty line)' : s.value}</code></td><td>${s.op === 'unbind' && s.from !== undefined ? `leaves ${s.from ?? 'no driver'}` : ''}</td></tr>`,
  )}</tbody></table></div>
<details><summary>As shell commands</summary><pre><code>${steps.map((s) => shellLine(s) + '\n')}</code></pre></details>`;
}

/**
 * The confirmation step of claim and release: the exact writes of a dry run (src/preview: the
 * engine's own claim or release on a copy of the host), what the drivers it unbinds serve now,
 * then a form that posts the same request. `form` carries the session's CSRF token (null: the
 * request is trusted without one, e.g. the unix socket), or asks to sign in when the request
 * may not write. A refused dry run offers no button. The templates are tagged `h`, not `html`,
 * so the formatter leaves the markup of the writes (a <pre>) as it is.
 */
export function confirmBody(opts: {
  plan: DryRunPlan;
  withGroup: boolean;
  form: { csrf: string | null } | { signIn: string };
  describe: string;
}): Html {
  const h = html;
  const { plan } = opts;
  const kind = plan.kind;
  const address = plan.addresses[0] ?? '';
  const verb = kind === 'claim' ? 'Claim' : 'Release';
  const outcome = [
    ...(plan.claims ?? []).map((c) => ({ address: c.address, state: c.state, message: c.message })),
    ...(plan.released ?? []).map((r) => ({
      address: r.address,
      state: r.state,
      message: r.message,
    })),
  ];
  const form =
    plan.refusals.length > 0
      ? h`<p class="notice" role="alert">Refused: ${plan.refusals.map((r) => h`<code>${r.address ?? ''}</code> <code>${r.code}</code> ${r.message}. `)}The page does not force claims; <code>passthru claim --force</code> does, from a terminal.</p><p><a href="/devices">Back to the devices</a></p>`
      : 'signIn' in opts.form
        ? h`<form method="post" action="/v1/session" class="signin">
<p>Changing the host needs the agent's token (<code>passthru token</code> prints it).</p>
<div class="field"><label for="token">Agent token</label><input id="token" name="token" type="password" autocomplete="current-password" required></div>
<input type="hidden" name="next" value="${opts.form.signIn}">
<button type="submit">Sign in</button>
</form>`
        : h`<form method="post" action="/${kind}" class="confirm">
${opts.form.csrf !== null ? h`<input type="hidden" name="csrf" value="${opts.form.csrf}">` : ''}
<input type="hidden" name="address" value="${address}">
${opts.withGroup ? h`<input type="hidden" name="withGroup" value="1">` : ''}
<button type="submit" class="primary">Confirm ${kind}</button>
<a href="${kind === 'claim' ? '/devices' : '/#claims'}">Cancel</a>
</form>`;
  return h`<h1>${verb} <code>${address}</code>${opts.withGroup ? ' with its IOMMU group' : ''}?</h1>
<p>${opts.describe}</p>
${plan.companions.map((c) => h`<p>Together with <code>${c.address}</code>: ${c.members.map((m) => h`<code>${m}</code> `)}</p>`)}
<section aria-labelledby="writes-h">
<h2 id="writes-h">What this writes</h2>
${
  plan.steps.length === 0
    ? h`<p>Nothing${plan.refusals.length > 0 ? ': the request is refused' : ': the host is already as asked'}.</p>`
    : stepsTable(
        plan.steps,
        `The writes a dry run of this ${kind} made, in order (on a copy of this host's current state)`,
      )
}
${plan.repairs.length > 0 ? h`<h3>Before it: repairs of the existing claims</h3>${stepsTable(plan.repairs, 'Writes that re-applying the stored claims and ledger makes first')}` : ''}
${
  plan.unbinds.length > 0
    ? h`<h3>What the unbound drivers serve now</h3><ul>${plan.unbinds.map((u) => h`<li><code>${u.address}</code> leaves ${u.driver}${u.serves.length > 0 ? h`: ${u.serves.join('; ')}` : ': nothing the host was seen using'}</li>`)}</ul>`
    : ''
}
<p>Expected result: ${outcome.map((o) => h`<code>${o.address}</code> ${badge(o.state, toneOfClaim(o.state))}${o.message !== undefined ? ` ${o.message}` : ''} `)}</p>
</section>
${form}`;
}
