import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import { checker, describeIssues } from '../schema/validate.js';
import { PtError, errnoOf } from '../errors.js';
import { ensurePrivateDir, currentUid } from './file-private-dir.js';
import type { Logger } from '../util/logger.js';
import { registerRoutes, type ApiContext } from '../agent/routes.js';
import { markConnection, type HttpAuth } from '../http/auth.js';
import { urlOf, type ListenAddress } from '../http/listen-address.js';

export interface ApiLimits {
  bodyLimit: number;
  maxInFlight: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

export const API_LIMITS: Readonly<ApiLimits> = {
  /** Bodies are a few hundred bytes; 4096 addresses fit. Larger ones get 413. */
  bodyLimit: 64 * 1024,
  /** Requests handled at once (pipelined ones count); more get 503 PT_ERR_AGENT_BUSY. */
  maxInFlight: 32,
  /** Time to send the headers, and the whole request, before the server closes the connection. */
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
};

export interface ApiServer {
  /** The fastify app: `inject()` in tests; routes and hooks are shared by every listener. */
  app: FastifyInstance;
  /** Serves the app on a unix socket (the control socket). */
  listenUnix(socketPath: string): Promise<Listener>;
  /**
   * Serves the app on TCP (the HTTP API), with the auth policy of the address: reads open on a
   * loopback address, everything behind the token elsewhere. Needs `auth` (buildApiServer).
   */
  listenTcp(address: ListenAddress): Promise<TcpListener>;
  /** Every listener closed, then the app. */
  close(): Promise<void>;
}

export interface Listener {
  close(): Promise<void>;
}

export interface TcpListener extends Listener {
  /** The bound address and port (the chosen one when asked for port 0). */
  host: string;
  port: number;
  loopback: boolean;
  url: string;
}

/** What the app serves besides the control socket's routes. */
export interface ApiExtras {
  /** The HTTP API's auth (src/http/auth.ts): its hooks and session routes; TCP needs it. */
  auth?: HttpAuth;
  /** More routes on the same app (/metrics, the page), registered after auth and the API. */
  plugins?: ((app: FastifyInstance) => void | Promise<void>)[];
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A long-lived answer (server-sent events) that bounds its own number of streams: not
     * counted against `maxInFlight`, so open pages cannot starve the API.
     */
    stream?: boolean;
  }
}

type Compilers = NonNullable<
  NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']
>;

/**
 * Bodies are checked by typebox's compiled checks, the project's one schema layer, instead of
 * fastify's ajv: nothing is coerced ("force": "true" is not true) or silently dropped, and ajv
 * (about 10 MiB of the agent's RSS) is never loaded. Routes declare no response schemas, so
 * answers are plain JSON.stringify.
 */
const typeboxCompilers: Compilers = {
  buildValidator: (() =>
    ({ schema }: { schema: unknown }) => {
      const c = checker(schema as TSchema);
      return (data: unknown) =>
        c.check(data) ? true : { error: new Error(`body ${describeIssues(c.issues(data))}`) };
    }) as unknown as NonNullable<Compilers['buildValidator']>,
  buildSerializer: () => () => (data: unknown) => JSON.stringify(data),
};

/**
 * The agent's API as one fastify app. fastify creates no server of its own here
 * (serverFactory hands back its request handler), so one app can serve several listeners:
 * the unix control socket now, a TCP port for the HTTP API later.
 */
export async function buildApiServer(
  ctx: ApiContext,
  limits: Partial<ApiLimits> = {},
  extras: ApiExtras = {},
): Promise<ApiServer> {
  const lim = { ...API_LIMITS, ...limits };
  const log = ctx.logger.child({ component: 'api' });
  let handler: http.RequestListener | null = null;
  const app = Fastify({
    bodyLimit: lim.bodyLimit,
    schemaController: { compilersFactory: typeboxCompilers },
    serverFactory: (h) => {
      handler = h;
      // Never listened on: each listener below gets its own server with the same handler.
      return http.createServer();
    },
  });
  let inFlight = 0;
  app.addHook('onRequest', async (req, reply) => {
    // A stream that stays open (server-sent events) would hold its slot for hours.
    if (req.routeOptions.config.stream === true) return undefined;
    if (inFlight >= lim.maxInFlight) {
      return reply.code(503).send({
        error: new PtError(
          'PT_ERR_AGENT_BUSY',
          `the agent is serving ${inFlight} requests already; retry`,
        ).toJSON(),
      });
    }
    inFlight++;
    // 'close' fires when the answer is sent and when the client goes away first.
    reply.raw.once('close', () => {
      inFlight--;
    });
    log.debug({ method: req.method, url: req.url }, 'request');
    return undefined;
  });
  // Forms from the page: parsed by the platform's URLSearchParams, within the same body limit.
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: lim.bodyLimit },
    (_req, body, done) => {
      done(null, formFields(body as string));
    },
  );
  // Auth's hooks go first: every route after it, the page's included, is covered.
  if (extras.auth) await extras.auth.register(app);
  registerRoutes(app, ctx);
  for (const p of extras.plugins ?? []) await p(app);
  await app.ready();
  const requestHandler = handler as http.RequestListener | null;
  if (requestHandler === null) throw new Error('fastify did not call serverFactory');

  const listeners = new Set<Listener>();
  const newServer = (): http.Server => {
    const server = http.createServer(requestHandler);
    server.headersTimeout = lim.headersTimeoutMs;
    server.requestTimeout = lim.requestTimeoutMs;
    server.keepAliveTimeout = lim.keepAliveTimeoutMs;
    // A claim may take as long as its binds do: no idle timeout while a handler works.
    server.timeout = 0;
    return server;
  };

  const track = <L extends Listener>(l: L): L => {
    const tracked: L = {
      ...l,
      close: async () => {
        listeners.delete(tracked);
        await l.close();
      },
    };
    listeners.add(tracked);
    return tracked;
  };

  return {
    app,
    listenUnix: async (socketPath) => track(await listenUnix(newServer(), socketPath, log)),
    listenTcp: async (address) => {
      // Without auth a TCP listener would be an open door: refuse to build one.
      if (!extras.auth)
        throw new Error('listenTcp needs the HTTP API auth (buildApiServer extras)');
      return track(await listenTcp(newServer(), address, log));
    },
    close: async () => {
      for (const l of [...listeners]) await l.close();
      await app.close();
    },
  };
}

/**
 * The control socket. Its folder must be ours and private (0700): it is created so, and an
 * existing one is checked, because whoever can write there can replace the socket. A file in
 * the socket's place is removed only when it is a socket nobody listens on (never a state
 * file named by mistake). The socket is created 0600 (umask around the synchronous bind).
 */
async function listenUnix(server: http.Server, socketPath: string, log: Logger): Promise<Listener> {
  const dir = path.dirname(path.resolve(socketPath));
  await ensurePrivateDir(dir, {
    uid: currentUid(),
    privateToOwner: true,
    followSymlink: true,
    what: 'socket folder',
  });
  await removeStaleSocket(socketPath);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => {
      reject(
        errnoOf(e) === 'EADDRINUSE'
          ? new PtError('PT_ERR_INVALID_ARGUMENT', `${socketPath} is in use`)
          : e,
      );
    });
    // net.Server.listen binds a unix socket synchronously, so the umask covers exactly the
    // creation of the socket file and nothing else.
    const old = process.umask(0o177);
    try {
      server.listen(socketPath, () => {
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
  const ino = (await fs.lstat(socketPath)).ino;
  log.info({ socket: socketPath }, 'control socket listening');
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
        // Only our own socket: another agent may have taken the path since.
        void fs
          .lstat(socketPath)
          .then((st) => (st.isSocket() && st.ino === ino ? fs.unlink(socketPath) : undefined))
          .catch(() => undefined);
      }),
  };
}

/**
 * The HTTP API on TCP. Each connection is marked with the listener's kind before any request
 * on it is read: auth decides by it (src/http/auth.ts), not by the peer's address, so a
 * non-loopback listener asks for the token even from 127.0.0.1.
 */
async function listenTcp(
  server: http.Server,
  address: ListenAddress,
  log: Logger,
): Promise<TcpListener> {
  const kind = address.loopback ? 'loopback' : 'remote';
  server.on('connection', (socket) => {
    markConnection(socket, kind);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => {
      const errno = errnoOf(e);
      reject(
        errno === 'EADDRINUSE' || errno === 'EADDRNOTAVAIL' || errno === 'EACCES'
          ? new PtError(
              errno === 'EACCES' ? 'PT_ERR_PERMISSION' : 'PT_ERR_INVALID_ARGUMENT',
              `cannot listen on ${urlOf(address.host, address.port)}: ${errno}`,
            )
          : e,
      );
    });
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      resolve();
    });
  });
  const bound = server.address() as net.AddressInfo;
  const url = urlOf(address.host, bound.port);
  log.info({ url, loopback: address.loopback }, 'HTTP API listening');
  return {
    host: address.host,
    port: bound.port,
    loopback: address.loopback,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

/** `a=1&b=2&b=3` as `{ a: '1', b: ['2', '3'] }`; `__proto__` and friends are plain keys. */
function formFields(body: string): Record<string, string | string[]> {
  const out = Object.create(null) as Record<string, string | string[]>;
  for (const [k, v] of new URLSearchParams(body)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

async function removeStaleSocket(socketPath: string): Promise<void> {
  let st;
  try {
    st = await fs.lstat(socketPath);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket())
    throw new PtError(
      'PT_ERR_UNSAFE_PATH',
      `${socketPath} exists and is not a socket: refusing to replace it (choose another --socket)`,
    );
  if (await isListening(socketPath))
    throw new PtError(
      'PT_ERR_INVALID_ARGUMENT',
      `another agent is already listening on ${socketPath}`,
    );
  await fs.unlink(socketPath);
}

function isListening(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      resolve(false);
    });
  });
}
