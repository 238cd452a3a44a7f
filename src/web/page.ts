import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiContext } from '../agent/routes.js';
import { errorReply } from '../agent/routes.js';
import { filterDevices, groupViews, type ListFilter } from '../cli/views.js';
import { runDoctor } from '../doctor/doctor.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import { isPciAddress, parsePciAddress, type PciAddress } from '../pci/address.js';
import { discover } from '../pci/discovery.js';
import type { PciIdNames } from '../pci/pciids.js';
import { PAGE_CSS, PAGE_JS } from './assets.js';
import { confirmBody } from './confirm.js';
import { devicesBody, groupsBody } from './devices.js';
import {
  ActionQuerySchema,
  DeviceFilterQuerySchema,
  OverviewQuerySchema,
  PageActionFormSchema,
  type DeviceFilterQuery,
  type OverviewQuery,
  type PageActionForm,
} from './forms.js';
import { html, type Html } from './html.js';
import { layout, type PageName } from './layout.js';
import { overviewBody } from './overview.js';
import { dryRunClaim, dryRunRelease, type DryRunDeps } from '../preview/dry-run.js';
import { eventStream } from './sse.js';

/** What the page needs of the HTTP auth (src/http/auth.ts's HttpAuth has these). */
export interface PageAuth {
  access(req: FastifyRequest): { via: string | null; canWrite: boolean };
  /** The hidden `csrf` field's value for this request's session; null without a session. */
  csrfTokenFor(req: FastifyRequest): string | null;
}

export interface WebContext {
  api: ApiContext;
  host: HostPort;
  names: PciIdNames;
  clock: Clock;
  auth: PageAuth;
  /** Event streams open at once (each holds a connection and a bus subscriber). */
  maxStreams?: number;
}

/** How many recent events the page shows (the history keeps 200 in memory). */
const RECENT = 200;

function send(reply: FastifyReply, status: number, page: Html): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin')
    .header(
      'content-security-policy',
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    .send(page.text);
}

/**
 * The web page on the agent's app: server-rendered HTML that reads without JavaScript, live
 * updates over /events, and claim/release with a dry-run preview and a confirmation form.
 * Registered in its own fastify scope so its HTML error pages do not replace the API's JSON
 * errors. docs/api.md lists the routes.
 */
export function registerWebPage(app: FastifyInstance, ctx: WebContext): void {
  void app.register((scope, _opts, done) => {
    routes(scope, ctx);
    done();
  });
}

function routes(app: FastifyInstance, ctx: WebContext): void {
  const { agent, lifecycle } = ctx.api;
  const host = (): string => ctx.host.description;
  const page = (reply: FastifyReply, status: number, title: string, name: PageName, body: Html) =>
    send(reply, status, layout({ title, page: name, host: host(), body }));

  app.setErrorHandler((e: FastifyError, _req, reply) => {
    const r = errorReply(
      e.validation !== undefined
        ? Object.assign(new Error(e.message), { code: 'PT_ERR_INVALID_ARGUMENT' })
        : e,
    );
    const err = r.body.error as { code?: string; message?: string };
    const status = e.validation !== undefined ? 400 : r.status;
    if (status >= 500) ctx.api.logger.error({ err: e.message, stack: e.stack }, 'page failed');
    return page(
      reply,
      status,
      'Refused',
      'action',
      html`<h1>${status >= 500 ? 'Something failed' : 'Refused'}</h1>
        <p class="notice" role="alert">
          <code>${err.code ?? 'PT_ERR_INTERNAL'}</code>: ${err.message ?? e.message}
        </p>
        <p><a href="/">Back to the overview</a></p>`,
    );
  });

  const dryRun = (): DryRunDeps => ({
    host: ctx.host,
    names: ctx.names,
    clock: ctx.clock,
    claims: agent.engine.claims,
    ledger: agent.engine.ledger,
  });

  app.get('/ui/page.css', (_req, reply) =>
    reply
      .header('content-type', 'text/css; charset=utf-8')
      .header('cache-control', 'no-cache')
      .send(PAGE_CSS),
  );
  app.get('/ui/page.js', (_req, reply) =>
    reply
      .header('content-type', 'text/javascript; charset=utf-8')
      .header('cache-control', 'no-cache')
      .send(PAGE_JS),
  );

  app.get('/', { schema: { querystring: OverviewQuerySchema } }, async (req, reply) => {
    const q = req.query as OverviewQuery;
    const [status, doctor] = await Promise.all([
      agent.status(RECENT),
      runDoctor(ctx.host, ctx.names),
    ]);
    const notice =
      q.claimed !== undefined && isPciAddress(q.claimed)
        ? { kind: 'claim' as const, address: q.claimed }
        : q.released !== undefined && isPciAddress(q.released)
          ? { kind: 'release' as const, address: q.released }
          : null;
    return page(
      reply,
      200,
      'Overview',
      'overview',
      overviewBody({ status, phase: lifecycle.phase, doctor, notice }),
    );
  });

  app.get('/devices', { schema: { querystring: DeviceFilterQuerySchema } }, async (req, reply) => {
    const q = req.query as DeviceFilterQuery;
    const f: ListFilter = {};
    // An empty select means "any": the form sends every field.
    for (const k of ['class', 'vendor', 'driver', 'group'] as const) {
      const v = q[k];
      if (v !== undefined && v !== '') f[k] = v;
    }
    const inv = await discover(ctx.host, ctx.names);
    const shown = filterDevices(inv, f);
    return page(
      reply,
      200,
      'Devices',
      'devices',
      devicesBody(inv, shown, f, agent.engine.claimStatuses()),
    );
  });

  app.get('/groups', async (_req, reply) => {
    const [inv, uses] = await Promise.all([discover(ctx.host, ctx.names), ctx.host.hostUses()]);
    return page(reply, 200, 'IOMMU groups', 'groups', groupsBody(groupViews(inv, uses)));
  });

  for (const kind of ['claim', 'release'] as const) {
    app.get(`/${kind}`, { schema: { querystring: ActionQuerySchema } }, async (req, reply) => {
      const q = req.query as PageActionForm;
      const address = parsePciAddress(q.address);
      const withGroup = kind === 'claim' && q.withGroup === '1';
      await lifecycle.ready;
      const plan =
        kind === 'claim'
          ? await dryRunClaim(dryRun(), [address], { withGroup, force: false })
          : await dryRunRelease(dryRun(), [address]);
      const inv = await discover(ctx.host, ctx.names);
      const d = inv.byAddress.get(address);
      const describe = d
        ? `${d.vendorName} ${d.deviceName} (${d.subclassName}), IOMMU group ${d.iommuGroup ?? 'none'}, now on ${d.driver ?? 'no driver'}.`
        : 'This address is not present on the host now.';
      const ledger = agent.engine.ledger[address];
      const back =
        kind === 'release' && ledger
          ? ` passthru gives it back to ${ledger.originalDriver ?? 'no driver'} (the original driver in the ledger).`
          : '';
      const access = ctx.auth.access(req);
      return page(
        reply,
        200,
        `${kind === 'claim' ? 'Claim' : 'Release'} ${address}`,
        'action',
        confirmBody({
          plan,
          withGroup,
          describe: describe + back,
          form: access.canWrite ? { csrf: ctx.auth.csrfTokenFor(req) } : { signIn: req.url },
        }),
      );
    });

    app.post(`/${kind}`, { schema: { body: PageActionFormSchema } }, async (req, reply) => {
      const b = req.body as PageActionForm;
      const address: PciAddress = parsePciAddress(b.address);
      await lifecycle.ready;
      if (kind === 'claim') {
        await agent.claim([address], {
          withGroup: b.withGroup === '1',
          force: false,
          source: 'page',
        });
        return reply.redirect(`/?claimed=${encodeURIComponent(address)}#claims`, 303);
      }
      await agent.release([address]);
      return reply.redirect(`/?released=${encodeURIComponent(address)}#claims`, 303);
    });
  }

  eventStream(app, agent.bus, ctx.maxStreams ?? 8);
}
