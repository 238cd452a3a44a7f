import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { PtError, errnoOf } from '../errors.js';
import { currentUid } from './file-private-dir.js';

export interface ApiResponse {
  status: number;
  body: unknown;
}

export interface RequestOptions {
  /** The whole exchange, connect to last byte; past it: PT_ERR_AGENT_UNRESPONSIVE. */
  timeoutMs: number;
}

/** How long the CLI waits for an agent to answer at all (docs/errors.md). */
export const AGENT_ANSWER_TIMEOUT_MS = 5_000;
/** How long `claim`/`release` wait for the outcome, once the agent has answered a health check. */
export const AGENT_OUTCOME_TIMEOUT_MS = 60_000;
/** An answer larger than this is not from a passthru agent. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/**
 * Refuses a socket whose folder someone else could have put it in: it must be owned by root
 * or by the caller and not writable by group or others. A fake socket in a shared folder
 * could otherwise answer `released` for a device the real agent still holds.
 */
async function checkSocketPath(socketPath: string): Promise<'absent' | 'ok'> {
  let st;
  try {
    st = await fs.lstat(socketPath);
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === 'ENOENT') return 'absent';
    if (errno === 'ENOTDIR')
      throw new PtError(
        'PT_ERR_INVALID_ARGUMENT',
        `${path.dirname(socketPath)} is not a directory (check --state-dir / --socket)`,
      );
    if (errno === 'EACCES')
      throw new PtError('PT_ERR_PERMISSION', `no permission to use ${socketPath}: run as root`);
    throw e;
  }
  if (!st.isSocket())
    throw new PtError('PT_ERR_INVALID_ARGUMENT', `${socketPath} is not a socket (check --socket)`);
  const dir = await fs.stat(path.dirname(socketPath));
  const uid = currentUid();
  if ((dir.uid !== uid && dir.uid !== 0) || (dir.mode & 0o022) !== 0)
    throw new PtError(
      'PT_ERR_UNSAFE_PATH',
      `the folder of ${socketPath} is owned by uid ${dir.uid} or writable by others: not talking to a socket anyone could have put there`,
    );
  return 'ok';
}

/**
 * One request to the agent; null when no agent listens there. Every call has a deadline: an
 * agent that accepts the connection and never answers fails with PT_ERR_AGENT_UNRESPONSIVE.
 */
export async function requestAgent(
  socketPath: string,
  method: string,
  url: string,
  body?: unknown,
  opts: RequestOptions = { timeoutMs: AGENT_ANSWER_TIMEOUT_MS },
): Promise<ApiResponse | null> {
  if ((await checkSocketPath(socketPath)) === 'absent') return null;
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let done = false;
    const finish = (f: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      f();
    };
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
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) {
            req.destroy();
            finish(() => {
              reject(
                new PtError('PT_ERR_AGENT_UNREACHABLE', `answer from ${socketPath} too large`),
              );
            });
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          finish(() => {
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
        });
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      finish(() => {
        reject(
          new PtError(
            'PT_ERR_AGENT_UNRESPONSIVE',
            `the agent at ${socketPath} did not answer ${method} ${url} within ${opts.timeoutMs / 1000} s`,
            { details: { timeoutMs: opts.timeoutMs } },
          ),
        );
      });
    }, opts.timeoutMs);
    req.on('error', (e) => {
      finish(() => {
        const code = errnoOf(e);
        if (code === 'ENOENT' || code === 'ECONNREFUSED') resolve(null);
        else if (code === 'EACCES')
          reject(
            new PtError('PT_ERR_PERMISSION', `no permission to use ${socketPath}: run as root`),
          );
        else
          reject(new PtError('PT_ERR_AGENT_UNREACHABLE', `agent at ${socketPath}: ${e.message}`));
      });
    });
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}
