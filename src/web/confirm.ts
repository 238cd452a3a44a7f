import { html, type Html } from './html.js';
import { badge, toneOfClaim } from './layout.js';
import type { Preview } from './preview.js';

/** How a write looks in a shell: the value as printf would write it. */
function shellLine(file: string, value: string): string {
  if (file === 'modprobe') return `modprobe ${value}`;
  const v = value.endsWith('\n') ? value.slice(0, -1) : value;
  return `echo '${v}' > ${file}`;
}

/**
 * The confirmation step of claim and release: the exact writes, from a dry run, then a form
 * that posts the same request with the CSRF token. Without a token (a reader who may not
 * write) the form is not offered.
 */
export function confirmBody(opts: {
  kind: 'claim' | 'release';
  address: string;
  withGroup: boolean;
  preview: Preview;
  /**
   * The confirmation form, with the session's CSRF token (null: the request is trusted without
   * one, e.g. a bearer token), or a sign-in form when the request may not write.
   */
  form: { csrf: string | null } | { signIn: string };
  describe: string;
}): Html {
  const { kind, address, preview } = opts;
  const verb = kind === 'claim' ? 'Claim' : 'Release';
  const refused = preview.outcome.filter((o) => o.state === 'refused');
  return html`<h1>
      ${verb} <code>${address}</code>${opts.withGroup ? ' with its IOMMU group' : ''}?
    </h1>
    <p>${opts.describe}</p>
    <section aria-labelledby="writes-h">
      <h2 id="writes-h">What this writes</h2>
      ${
        preview.writes.length === 0
          ? html`<p>Nothing: the host is already as asked.</p>`
          : html`<div class="scroll">
                <table class="writes">
                  <caption>
                    The writes a dry run of this ${kind} made, in order (run on a copy of this
                    host's current state)
                  </caption>
                  <thead>
                    <tr>
                      <th scope="col">#</th>
                      <th scope="col">File</th>
                      <th scope="col">Value written</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${preview.writes.map(
                      (w, i) =>
                        html`<tr>
                          <td>${i + 1}</td>
                          <td><code>${w.file}</code></td>
                          <td><code>${w.value === '\n' ? '(empty line)' : w.value}</code></td>
                        </tr>`,
                    )}
                  </tbody>
                </table>
              </div>
              <details>
                <summary>As shell commands</summary>
                <pre><code>${preview.writes.map((w) => shellLine(w.file, w.value) + '\n')}</code></pre>
              </details>`
      }
      <p>
        Expected result:
        ${preview.outcome.map((o) => html`<code>${o.address}</code> ${badge(o.state, toneOfClaim(o.state))}${o.message !== undefined ? ` ${o.message}` : ''} `)}
      </p>
    </section>
    ${
      refused.length > 0
        ? html`<p class="notice" role="alert">
              The dry run was refused:
              ${refused.map((o) => html`<code>${o.address}</code> ${o.message ?? o.state}. `)}The
              page does not force claims; <code>passthru claim --force</code> does, from a terminal.
            </p>
            <p><a href="/devices">Back to the devices</a></p>`
        : 'signIn' in opts.form
          ? html`<form method="post" action="/v1/session" class="signin">
              <p>
                Changing the host needs the agent's token (<code>passthru token</code> prints it).
              </p>
              <div class="field">
                <label for="token">Agent token</label
                ><input
                  id="token"
                  name="token"
                  type="password"
                  autocomplete="current-password"
                  required
                />
              </div>
              <input type="hidden" name="next" value="${opts.form.signIn}" />
              <button type="submit">Sign in</button>
            </form>`
          : html`<form method="post" action="/${kind}" class="confirm">
              ${opts.form.csrf !== null ? html`<input type="hidden" name="csrf" value="${opts.form.csrf}" />` : ''}
              <input type="hidden" name="address" value="${address}" />
              ${opts.withGroup ? html`<input type="hidden" name="withGroup" value="1" />` : ''}
              <button type="submit" class="primary">Confirm ${kind}</button>
              <a href="${kind === 'claim' ? '/devices' : '/#claims'}">Cancel</a>
            </form>`
    }`;
}
