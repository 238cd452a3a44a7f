import { test } from 'node:test';
import assert from 'node:assert/strict';
import { html, query, trusted } from './html.js';

test('html``: text and attribute values are escaped, nested templates and lists are not, null/false/undefined render nothing', () => {
  const name = `<script>alert("x")</script> & 'q'`;
  // Called through another name: prettier formats templates tagged `html`, adding whitespace.
  const h = html;
  const out = h`<p title="${name}">${name}${[h`<b>${1}</b>`, null, false, undefined]}${trusted('<i>')}</p>`;
  assert.equal(
    out.text,
    '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;<b>1</b><i></p>',
  );
});

test('query(): empty and undefined fields are left out, values are URI-encoded', () => {
  assert.equal(
    query({ address: '0000:01:00.0', withGroup: undefined, x: '' }),
    '?address=0000%3A01%3A00.0',
  );
  assert.equal(query({}), '');
  assert.equal(query({ a: '"><script>' }), '?a=%22%3E%3Cscript%3E');
});
