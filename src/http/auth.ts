/**
 * Who may read and write through the agent's HTTP API. The contract, for every route on the
 * shared app (the JSON API, /metrics, the page):
 *
 * Transports. A request arrives over the unix control socket or in-process (`inject`): `local`,
 * trusted like root (the socket is 0600 in a 0700 root folder). Over a TCP listener bound to a
 * loopback address: `loopback`. Over a TCP listener on any other address: `remote`.
 *
 * Credentials. `Authorization: Bearer <token>` (the agent's token, `passthru token`), or the
 * session cookie `passthru_session` that POST /v1/session gives in exchange for the token
 * (HttpOnly, SameSite=Strict, Path=/, valid 12 h; an HMAC keyed by the token, so a new token
 * ends every session). A wrong bearer token is refused even where reads are open.
 *
 * Reads (GET, HEAD, OPTIONS): open on `local` and `loopback`; on `remote` they need a credential. On
 * `loopback`, a read without a credential whose Host header is not a loopback name (localhost,
 * 127.x.y.z, [::1]) is refused: a DNS-rebinding page cannot read the API through the browser.
 *
 * Writes (every other method): `local`, or the bearer token, or the session cookie plus the
 * CSRF token (form field `csrf`, or header `x-csrf-token`) with no cross-site sign: an Origin
 * header whose host differs from the Host header, or Sec-Fetch-Site other than same-origin.
 * Checked by hooks on the whole app, so a route added later (the page's form posts) is covered
 * without doing anything; the `csrf` field is removed from form bodies before schema validation,
 * so form schemas need not list it. Form bodies (application/x-www-form-urlencoded) parse to
 * `{ name: string }`, or `string[]` for a name given more than once.
 *
 * Refusals: 401 PT_ERR_UNAUTHENTICATED (no or wrong credential; `WWW-Authenticate: Bearer`),
 * 403 PT_ERR_CSRF (CSRF token missing or wrong, or a cross-site request), 403
 * PT_ERR_HOST_NOT_ALLOWED (the rebinding case above). Routes may opt out with
 * `config: { auth: 'public' }` (a GET that shows nothing, like the sign-in form).
 *
 * For the page:
 * - `auth.csrfTokenFor(request)`: the value for the hidden `csrf` field of every form, or null
 *   when the request has no session (show the sign-in form instead of buttons).
 * - `auth.access(request)`: `{ transport, via, canWrite }` (via: local, bearer, session, or null).
 * - The sign-in form posts `token` (and optionally `next`, a path on this server) as a form to
 *   POST /v1/session: it answers 303 to `next` (default `/`) with the cookie set. The sign-out
 *   form posts `csrf` to POST /v1/session/logout: 303 to `/`. JSON callers get JSON instead.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PtError } from '../errors.js';
import { isLoopbackIp } from './listen-address.js';

export type Transport = 'local' | 'loopback' | 'remote';
export type Via = 'local' | 'bearer' | 'session';

export interface Access {
  transport: Transport;
  /** The credential the request carries (local: the unix socket or in-process). */
  via: Via | null;
  /** Whether a write would pass (for a session: given the CSRF token). */
  canWrite: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `public`: readable without a credential on every transport (shows nothing). */
    auth?: 'public' | 'login';
  }
}

export const SESSION_COOKIE = 'passthru_session';
export const CSRF_HEADER = 'x-csrf-token';
export const CSRF_FIELD = 'csrf';
export const SESSION_TTL_MS = 12 * 3_600_000;

const SessionBodySchema = Type.Object(
  {
    token: Type.Optional(Type.String({ maxLength: 256 })),
    next: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);
type SessionBody = Static<typeof SessionBodySchema>;

/** TCP connections by the listener kind they came in on; anything else is local. */
const transports = new WeakMap<object, Exclude<Transport, 'local'>>();

/** Called by the TCP listener for each connection, before any request on it is read. */
export function markConnection(socket: object, transport: 'loopback' | 'remote'): void {
  transports.set(socket, transport);
}

function transportOf(req: FastifyRequest): Transport {
  const marked = transports.get(req.raw.socket);
  if (marked !== undefined) return marked;
  // Unmarked means the unix socket (no remote address) or inject(); a listener that forgot to
  // mark its connections fails closed instead of trusting a peer like root.
  const remote = req.raw.socket.remoteAddress;
  if (remote === undefined || remote === '') return 'local';
  return isLoopbackIp(remote) ? 'local' : 'remote';
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

function b64(buf: Buffer): string {
  return buf.toString('base64url');
}

/** Equal-time comparison of two strings of any length. */
function same(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

function refuse(
  code: 'PT_ERR_UNAUTHENTICATED' | 'PT_ERR_CSRF' | 'PT_ERR_HOST_NOT_ALLOWED',
  msg: string,
): PtError {
  return new PtError(code, msg);
}

/** The host part of a Host header (`127.0.0.1:8080`, `[::1]:8080`, `localhost`). */
function hostName(header: string | undefined): string | null {
  if (header === undefined) return null;
  try {
    return new URL(`http://${header}/`).hostname;
  } catch {
    return null;
  }
}

function isLoopbackHostHeader(header: string | undefined): boolean {
  const h = hostName(header);
  if (h === null) return false;
  if (h === 'localhost') return true;
  return isLoopbackIp(h.startsWith('[') ? h.slice(1, -1) : h);
}

function isForm(req: FastifyRequest): boolean {
  return (req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded');
}

/** A path on this server to go to after sign-in; anything else (//evil, http:...) is `/`. */
function safeNext(next: string | undefined): string {
  if (next === undefined || !next.startsWith('/') || next.startsWith('//')) return '/';
  if (/[\\\r\n]/.test(next)) return '/';
  return next;
}

export interface HttpAuthOptions {
  token: string;
  /** Wall-clock milliseconds, for session expiry. */
  now: () => number;
  sessionTtlMs?: number;
}

export class HttpAuth {
  private readonly token: string;
  private readonly key: Buffer;
  private readonly now: () => number;
  private readonly ttl: number;
  private readonly seen = new WeakMap<object, Access & { session: string | null }>();

  constructor(o: HttpAuthOptions) {
    this.token = o.token;
    this.key = createHmac('sha256', o.token).update('passthru session key v1').digest();
    this.now = o.now;
    this.ttl = o.sessionTtlMs ?? SESSION_TTL_MS;
  }

  /** What the request may do. Computed once per request, in the first hook. */
  access(req: FastifyRequest): Access {
    const a = this.evaluate(req);
    return { transport: a.transport, via: a.via, canWrite: a.canWrite };
  }

  /** The CSRF token for this request's session: the hidden `csrf` field of the page's forms. */
  csrfTokenFor(req: FastifyRequest): string | null {
    const s = this.evaluate(req).session;
    return s === null ? null : this.csrfOf(s);
  }

  /** Hooks and the session routes on the app; before any other route is added. */
  async register(app: FastifyInstance): Promise<void> {
    await app.register(fastifyCookie, { hook: 'onRequest' });
    app.addHook('onRequest', async (req, reply) => {
      this.checkHeaders(req, reply);
      return Promise.resolve();
    });
    app.addHook('preValidation', async (req) => {
      this.checkCsrf(req);
      return Promise.resolve();
    });
    this.registerRoutes(app);
  }

  private evaluate(req: FastifyRequest): Access & { session: string | null } {
    const cached = this.seen.get(req.raw);
    if (cached) return cached;
    const transport = transportOf(req);
    let via: Via | null = null;
    let session: string | null = null;
    const cookie = req.cookies[SESSION_COOKIE];
    if (cookie !== undefined && this.validSession(cookie)) session = cookie;
    if (transport === 'local') via = 'local';
    else if (this.bearer(req) === 'ok') via = 'bearer';
    else if (session !== null) via = 'session';
    const a = { transport, via, canWrite: via !== null, session };
    this.seen.set(req.raw, a);
    return a;
  }

  private bearer(req: FastifyRequest): 'none' | 'ok' | 'wrong' {
    const h = req.headers.authorization;
    if (h === undefined) return 'none';
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(h);
    return m && same(m[1] ?? '', this.token) ? 'ok' : 'wrong';
  }

  private checkHeaders(req: FastifyRequest, reply: FastifyReply): void {
    const a = this.evaluate(req);
    if (a.transport === 'local') return;
    const unauthenticated = (msg: string): PtError => {
      void reply.header('www-authenticate', 'Bearer realm="passthru"');
      return refuse('PT_ERR_UNAUTHENTICATED', msg);
    };
    if (this.bearer(req) === 'wrong')
      throw unauthenticated('the bearer token is wrong (passthru token prints the current one)');
    const mode = req.routeOptions.config.auth;
    if (mode === 'login') {
      this.checkSameSite(req);
      return;
    }
    if (SAFE.has(req.method)) {
      if (a.via !== null || mode === 'public') return;
      if (a.transport === 'remote')
        throw unauthenticated(
          'this listener is not on loopback: every request needs Authorization: Bearer <token> (passthru token) or a session',
        );
      if (!isLoopbackHostHeader(req.headers.host))
        throw refuse(
          'PT_ERR_HOST_NOT_ALLOWED',
          `Host ${JSON.stringify(req.headers.host ?? '')} is not a loopback name: open reads are served to localhost, 127.0.0.1 and [::1] only`,
        );
      return;
    }
    if (a.via === null)
      throw unauthenticated(
        'writes over HTTP need Authorization: Bearer <token> (passthru token prints it), a session with its CSRF token, or the unix socket',
      );
    if (a.via === 'session') this.checkSameSite(req);
  }

  /** A browser tells where a request comes from; a cross-site one is refused before its body. */
  private checkSameSite(req: FastifyRequest): void {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin')
      throw refuse('PT_ERR_CSRF', `cross-site request refused (Sec-Fetch-Site: ${site})`);
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let host: string | null;
      try {
        host = new URL(origin).host;
      } catch {
        host = null;
      }
      if (host === null || host !== (req.headers.host ?? '').toLowerCase())
        throw refuse('PT_ERR_CSRF', `cross-site request refused (Origin: ${origin})`);
    }
  }

  private checkCsrf(req: FastifyRequest): void {
    let fromForm: string | undefined;
    if (isForm(req) && typeof req.body === 'object' && req.body !== null) {
      const body = req.body as Record<string, unknown>;
      const v = body[CSRF_FIELD];
      if (typeof v === 'string') fromForm = v;
      // Form schemas need not know the field (see the contract above).
      Reflect.deleteProperty(body, CSRF_FIELD);
    }
    if (SAFE.has(req.method) || req.routeOptions.config.auth === 'login') return;
    const a = this.evaluate(req);
    if (a.via !== 'session' || a.session === null) return;
    const header = req.headers[CSRF_HEADER];
    const given = typeof header === 'string' ? header : fromForm;
    if (given === undefined)
      throw refuse(
        'PT_ERR_CSRF',
        `a write with a session cookie needs its CSRF token (form field ${CSRF_FIELD} or header ${CSRF_HEADER})`,
      );
    if (!same(given, this.csrfOf(a.session)))
      throw refuse('PT_ERR_CSRF', 'the CSRF token does not belong to this session');
  }

  private sign(body: string): string {
    return b64(createHmac('sha256', this.key).update(body).digest());
  }

  private newSession(): { value: string; expiresAt: number } {
    const expiresAt = this.now() + this.ttl;
    const body = `${expiresAt}.${b64(randomBytes(16))}`;
    return { value: `${body}.${this.sign(`session:${body}`)}`, expiresAt };
  }

  private validSession(value: string): boolean {
    const m = /^(\d{1,16})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (!m) return false;
    const exp = Number(m[1]);
    const now = this.now();
    if (exp <= now || exp > now + this.ttl) return false;
    return same(m[3] ?? '', this.sign(`session:${m[1] ?? ''}.${m[2] ?? ''}`));
  }

  private csrfOf(session: string): string {
    return this.sign(`csrf:${session}`);
  }

  private registerRoutes(app: FastifyInstance): void {
    app.get('/v1/session', { config: { auth: 'public' } }, (req) => {
      const a = this.evaluate(req);
      return {
        transport: a.transport,
        via: a.via,
        canWrite: a.canWrite,
        csrfToken: a.session === null ? null : this.csrfOf(a.session),
      };
    });

    app.post(
      '/v1/session',
      {
        config: { auth: 'login' },
        schema: { body: SessionBodySchema },
        // No body at all (or an empty one) is fine with the token as `Authorization: Bearer`.
        preValidation: (req, _reply, next) => {
          if (req.body === undefined || req.body === null || req.body === '') req.body = {};
          next();
        },
      },
      async (req, reply) => {
        const b = (req.body ?? {}) as SessionBody;
        const ok =
          this.bearer(req) === 'ok' || (b.token !== undefined && same(b.token, this.token));
        if (!ok) {
          void reply.header('www-authenticate', 'Bearer realm="passthru"');
          throw refuse('PT_ERR_UNAUTHENTICATED', 'the token is wrong (passthru token prints it)');
        }
        const s = this.newSession();
        void reply.setCookie(SESSION_COOKIE, s.value, {
          httpOnly: true,
          sameSite: 'strict',
          path: '/',
          maxAge: Math.floor(this.ttl / 1000),
        });
        if (isForm(req)) return reply.redirect(safeNext(b.next), 303);
        return { csrfToken: this.csrfOf(s.value), expiresAt: s.expiresAt };
      },
    );

    app.post('/v1/session/logout', (req, reply) => {
      void reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict' });
      if (isForm(req)) return reply.redirect('/', 303);
      return {};
    });
  }
}
