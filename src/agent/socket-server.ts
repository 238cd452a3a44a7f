import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { PtError, errnoOf } from '../errors.js';
import type { Logger } from '../util/logger.js';
import type { ApiResponse } from './routes.js';

export type Handler = (method: string, url: string, body: unknown) => Promise<ApiResponse>;

const MAX_BODY = 64 * 1024;

/**
 * The agent's control socket: HTTP/1.1 over a unix socket in a 0700 directory, the socket
 * itself 0600, so only root (the owner) can use it.
 */
export async function startControlServer(
  socketPath: string,
  handler: Handler,
  logger: Logger,
): Promise<{ close: () => Promise<void> }> {
  const log = logger.child({ component: 'control' });
  await fs.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  if (await isListening(socketPath)) {
    throw new PtError(
      'PT_ERR_INVALID_ARGUMENT',
      `another agent is already listening on ${socketPath}`,
    );
  }
  await fs.rm(socketPath, { force: true });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      void (async () => {
        let body: unknown;
        try {
          body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
        } catch {
          send(res, {
            status: 400,
            body: { error: { code: 'PT_ERR_INVALID_ARGUMENT', message: 'body is not JSON' } },
          });
          return;
        }
        const r = await handler(req.method ?? 'GET', req.url ?? '/', body);
        log.debug({ method: req.method, url: req.url, status: r.status }, 'request');
        send(res, r);
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      resolve();
    });
  });
  await fs.chmod(socketPath, 0o600);
  log.info({ socket: socketPath }, 'control socket listening');
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
        void fs.rm(socketPath, { force: true });
      }),
  };
}

function send(res: http.ServerResponse, r: ApiResponse): void {
  const text = `${JSON.stringify(r.body)}\n`;
  res.writeHead(r.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
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

/** One request to the agent; null when no agent listens there. */
export function requestAgent(
  socketPath: string,
  method: string,
  url: string,
  body?: unknown,
): Promise<ApiResponse | null> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        socketPath,
        method,
        path: url,
        headers:
          payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({
              status: res.statusCode ?? 500,
              body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown,
            });
          } catch (e) {
            reject(
              new PtError('PT_ERR_AGENT_UNREACHABLE', `bad answer from the agent: ${String(e)}`),
            );
          }
        });
      },
    );
    req.on('error', (e) => {
      const code = errnoOf(e);
      if (code === 'ENOENT' || code === 'ECONNREFUSED') resolve(null);
      else if (code === 'EACCES')
        reject(new PtError('PT_ERR_PERMISSION', `no permission to use ${socketPath}: run as root`));
      else reject(new PtError('PT_ERR_AGENT_UNREACHABLE', `agent at ${socketPath}: ${e.message}`));
    });
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}
