import type { FastifyInstance } from 'fastify';
import { PtError } from '../errors.js';
import type { EventBus } from '../events/events.js';
import { errorReply } from '../agent/routes.js';

/** A comment line this often keeps proxies and idle timeouts from closing a quiet stream. */
const PING_MS = 15_000;

/**
 * `GET /events`: the agent's domain events as server-sent events, one `data:` line of JSON per
 * event (the same objects as history.jsonl), as they happen. Nothing is replayed: a page that
 * (re)connects renders the current state itself. At most `max` streams at once (503 beyond),
 * since each holds a connection and a bus subscriber for as long as it stays open.
 */
export function eventStream(app: FastifyInstance, bus: EventBus, max: number): void {
  let open = 0;
  // config.stream: the app's in-flight limit does not count it (src/process/socket-server.ts).
  app.get('/events', { config: { stream: true } }, (req, reply) => {
    if (open >= max) {
      const r = errorReply(
        new PtError('PT_ERR_AGENT_BUSY', `${open} event streams are open already; retry`),
      );
      return reply.code(r.status).send(r.body);
    }
    open++;
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      connection: 'keep-alive',
    });
    res.write('retry: 1000\n: passthru events\n\n');
    let id = 0;
    const write = (text: string): void => {
      if (!res.destroyed && !res.writableEnded) res.write(text);
    };
    const unsubscribe = bus.subscribe((e) => {
      id++;
      write(`id: ${id}\ndata: ${JSON.stringify(e)}\n\n`);
    });
    const ping = setInterval(() => {
      write(': ping\n\n');
    }, PING_MS);
    ping.unref();
    let closed = false;
    const close = (): void => {
      if (closed) return;
      closed = true;
      open--;
      unsubscribe();
      clearInterval(ping);
    };
    req.raw.socket.once('close', close);
    res.once('close', close);
    return reply;
  });
}
