import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { jsonPatch, mergePatch, PatchError } from './patch.js';
import { builtins, gv, type ResourceDef } from './resources.js';
import {
  getPath,
  parseFieldSelector,
  parseLabelSelector,
  SelectorError,
  type Matcher,
  scalar,
  type Obj,
} from './selectors.js';
import { validate } from './validate.js';
import { admitClaim } from './policy-twin.js';

/**
 * An in-process stand-in for kube-apiserver, faithful to the semantics the agent and kubectl
 * rely on (docs/kubernetes.md, reference section 7.1): one global resourceVersion, list+watch
 * with bookmarks and 410 Expired, 409 AlreadyExists/Conflict, the status subresource,
 * selectors limited like the real server's, finalizers with deletionTimestamp, JSON and merge
 * patch, schema validation from the shipped CRDs, faults on demand, and counters per client.
 */

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface LoggedEvent {
  rv: number;
  res: ResourceDef;
  type: EventType;
  obj: Obj;
  old: Obj | null;
}

interface Watcher {
  res: ResourceDef;
  ns: string | null;
  field: Matcher;
  label: Matcher;
  bookmarks: boolean;
  out: http.ServerResponse;
  client: string;
  /** Half-open: the connection stays but nothing more is sent. */
  stalled: boolean;
}

export interface ClientStats {
  reads: number;
  writes: number;
  watches: number;
  /** `${verb} ${resource}` counts, e.g. "PATCH pcideviceclaims/status". */
  calls: Record<string, number>;
}

export interface Fault {
  /** Which requests it applies to; all when absent. */
  match?: (r: { method: string; path: string; client: string; watch: boolean }) => boolean;
  status: number;
  /** How many requests it answers; Infinity for "until cleared". */
  times: number;
  retryAfterSeconds?: number;
  /** Accept the request and never answer it (a stuck server or proxy); `status` is unused. */
  hang?: boolean;
}

export interface FakeApiServerOptions {
  resources: ResourceDef[];
  /** Events kept for watch resumption; small values force 410s. */
  historySize?: number;
  now?: () => number;
  /** Apply the twin of deploy/policy.yaml (default true); false: a cluster without it. */
  policy?: boolean;
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Obj,
  ) {
    super(message);
  }
}

function status(code: number, reason: string, message: string, details?: Obj): Obj {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

function meta(o: Obj): Obj {
  return (o.metadata ?? {}) as Obj;
}

function age(fromIso: unknown, now: number): string {
  if (typeof fromIso !== 'string') return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(fromIso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export class FakeApiServer {
  private readonly server: http.Server;
  private readonly resources: ResourceDef[];
  private readonly objects = new Map<ResourceDef, Map<string, Obj>>();
  private readonly log: LoggedEvent[] = [];
  private readonly historySize: number;
  private compactedRv = 0;
  private rv = 1;
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private readonly stats = new Map<string, ClientStats>();
  private faults: Fault[] = [];
  private down = false;
  private readonly policy: boolean;
  private readonly now: () => number;
  latencyMs = 0;
  port = 0;

  constructor(opts: FakeApiServerOptions) {
    this.resources = [...opts.resources, ...builtins];
    for (const r of this.resources) this.objects.set(r, new Map());
    this.historySize = opts.historySize ?? 1000;
    this.policy = opts.policy ?? true;
    this.now = opts.now ?? Date.now;
    this.server = http.createServer((req, res) => {
      void this.handle(req, res);
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async start(port = 0): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    this.closeWatches();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) =>
      this.server.close(() => {
        resolve();
      }),
    );
  }

  // ---- test hooks -------------------------------------------------------------------------

  /** Unreachable: every connection is reset and every watch ends, until `setDown(false)`. */
  setDown(down: boolean): void {
    this.down = down;
    if (down) {
      this.closeWatches();
      for (const s of this.sockets) s.destroy();
    }
  }

  inject(f: Fault): void {
    this.faults.push(f);
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** Ends every watch stream cleanly (as the server does after its timeout). */
  closeWatches(): void {
    for (const w of this.watchers) w.out.end();
    this.watchers.clear();
  }

  /** Leaves every watch connected but silent: a half-open connection. */
  stallWatches(): void {
    for (const w of this.watchers) w.stalled = true;
  }

  /** Sends a BOOKMARK to every watch that asked for them. */
  bookmark(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks || w.stalled) continue;
      this.send(w, 'BOOKMARK', {
        kind: w.res.kind,
        apiVersion: gv(w.res),
        metadata: { resourceVersion: String(this.rv) },
      });
    }
  }

  /** Drops the watch history so any resumption gets 410 Expired. */
  compact(): void {
    this.compactedRv = this.rv;
    this.log.length = 0;
  }

  clientStats(): Map<string, ClientStats> {
    return this.stats;
  }

  resetStats(): void {
    this.stats.clear();
  }

  /** The watch history of one resource (bounded by historySize): every state an object had. */
  history(plural: string): { type: string; obj: Obj }[] {
    return this.log
      .filter((e) => e.res.plural === plural)
      .map((e) => ({ type: e.type, obj: structuredClone(e.obj) }));
  }

  watchCount(): number {
    return this.watchers.size;
  }

  resourceVersion(): number {
    return this.rv;
  }

  // ---- direct access for tests (bypasses HTTP and counters) ---------------------------------

  private def(plural: string): ResourceDef {
    const r = this.resources.find((x) => x.plural === plural);
    if (!r) throw new Error(`fake apiserver: no resource ${plural}`);
    return r;
  }

  get(plural: string, name: string, ns: string | null = null): Obj | undefined {
    const o = this.objects.get(this.def(plural))?.get(ns === null ? name : `${ns}/${name}`);
    return o ? structuredClone(o) : undefined;
  }

  list(plural: string): Obj[] {
    return [...(this.objects.get(this.def(plural))?.values() ?? [])].map((o) => structuredClone(o));
  }

  /** Creates as a client would (validation, status dropped unless `withStatus`). */
  seed(plural: string, obj: Obj, withStatus = false): Obj {
    const r = this.def(plural);
    const ns = r.namespaced ? ((meta(obj).namespace as string | undefined) ?? 'default') : null;
    return this.create(r, ns, structuredClone(obj), { strict: false, keepStatus: withStatus });
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  private client(req: http.IncomingMessage): string {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) return `token:${auth.slice(7)}`;
    return req.headers['user-agent'] ?? 'unknown';
  }

  private count(client: string, kind: 'reads' | 'writes' | 'watches', call: string): void {
    let s = this.stats.get(client);
    if (!s) {
      s = { reads: 0, writes: 0, watches: 0, calls: {} };
      this.stats.set(client, s);
    }
    s[kind]++;
    s.calls[call] = (s.calls[call] ?? 0) + 1;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (this.down) {
      req.socket.destroy();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const client = this.client(req);
    const method = req.method ?? 'GET';
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const fault = this.faults.find(
      (f) =>
        f.times > 0 &&
        (f.match?.({
          method,
          path: url.pathname,
          client,
          watch: url.searchParams.get('watch') === 'true',
        }) ??
          true),
    );
    if (fault) {
      fault.times--;
      if (fault.hang === true) return;
      const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' };
      if (fault.retryAfterSeconds !== undefined)
        headers['retry-after'] = String(fault.retryAfterSeconds);
      res.writeHead(fault.status, headers);
      res.end(
        JSON.stringify(
          status(
            fault.status,
            fault.status === 429 ? 'TooManyRequests' : 'InternalError',
            `injected ${fault.status}`,
          ),
        ),
      );
      return;
    }
    try {
      const body = await this.readBody(req);
      this.route(req, res, url, method, client, body);
    } catch (e) {
      const err =
        e instanceof HttpError
          ? e
          : e instanceof SelectorError
            ? new HttpError(400, 'BadRequest', e.message)
            : e instanceof PatchError
              ? new HttpError(e.code, e.code === 422 ? 'Invalid' : 'BadRequest', e.message)
              : new HttpError(500, 'InternalError', e instanceof Error ? e.message : String(e));
      if (!res.headersSent) {
        res.writeHead(err.code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(status(err.code, err.reason, err.message, err.details)));
      }
    }
  }

  private readBody(req: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        resolve(Buffer.concat(chunks).toString('utf8'));
      });
      req.on('error', reject);
    });
  }

  private json(res: http.ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private route(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    method: string,
    client: string,
    body: string,
  ): void {
    const p = url.pathname.replace(/\/+$/, '');
    if (method === 'GET' && this.discovery(p, res)) return;
    const m =
      /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/(status))?$/.exec(
        p,
      );
    if (!m)
      throw new HttpError(
        404,
        'NotFound',
        `the server could not find the requested resource (${p})`,
      );
    const [, coreV, group, version, ns, plural, name, sub] = m;
    const r = this.resources.find(
      (x) =>
        x.plural === plural &&
        (coreV !== undefined
          ? x.group === '' && x.version === coreV
          : x.group === group && x.version === version),
    );
    if (!r)
      throw new HttpError(404, 'NotFound', `the server could not find the requested resource`);
    if (
      r.namespaced === (ns === undefined) &&
      !(r.namespaced && name === undefined && method === 'GET')
    ) {
      throw new HttpError(404, 'NotFound', `the server could not find the requested resource`);
    }
    if (sub !== undefined && !r.status)
      throw new HttpError(404, 'NotFound', 'no status subresource');
    const nsKey = r.namespaced ? (ns ?? null) : null;
    const callName = `${method} ${r.plural}${sub ? '/status' : ''}`;
    const q = url.searchParams;
    if (name === undefined) {
      if (method === 'GET') {
        const watch = q.get('watch') === 'true' || q.get('watch') === '1';
        this.count(client, watch ? 'watches' : 'reads', `${watch ? 'WATCH' : 'LIST'} ${r.plural}`);
        const field = parseFieldSelector(q.get('fieldSelector'), r.fields);
        const label = parseLabelSelector(q.get('labelSelector'));
        if (watch) {
          this.watch(r, nsKey, field, label, q, res, client);
          return;
        }
        const items = this.listMatching(r, nsKey, field, label);
        if (this.wantsTable(req)) {
          this.json(res, 200, this.table(r, items));
          return;
        }
        this.json(res, 200, {
          apiVersion: gv(r),
          kind: r.listKind,
          metadata: { resourceVersion: String(this.rv) },
          items,
        });
        return;
      }
      if (method === 'POST') {
        this.count(client, 'writes', callName);
        const obj = this.parse(body);
        const created = this.create(r, nsKey, obj, {
          strict: q.get('fieldValidation') === 'Strict',
          keepStatus: !r.status,
        });
        this.json(res, 201, created);
        return;
      }
      throw new HttpError(405, 'MethodNotAllowed', `${method} not allowed on a collection`);
    }
    const key = nsKey === null ? name : `${nsKey}/${name}`;
    const store = this.objects.get(r) ?? new Map<string, Obj>();
    const current = store.get(key);
    const notFound = (): HttpError =>
      new HttpError(404, 'NotFound', `${r.plural}.${r.group} "${name}" not found`, {
        name,
        group: r.group,
        kind: r.plural,
      });
    if (method === 'GET') {
      this.count(client, 'reads', callName);
      if (!current) throw notFound();
      this.json(res, 200, this.wantsTable(req) ? this.table(r, [current]) : current);
      return;
    }
    this.count(client, 'writes', callName);
    if (!current) throw notFound();
    const strict = q.get('fieldValidation') === 'Strict';
    if (method === 'PUT') {
      const obj = this.parse(body);
      const rv = meta(obj).resourceVersion;
      if (rv !== undefined && rv !== meta(current).resourceVersion) throw this.conflict(r, name);
      this.json(res, 200, this.update(r, key, current, obj, sub !== undefined, strict));
      return;
    }
    if (method === 'PATCH') {
      const type = (req.headers['content-type'] ?? '').split(';')[0] ?? '';
      const patch = this.parse(body, type === 'application/apply-patch+yaml');
      let next: Obj;
      if (type === 'application/json-patch+json') next = jsonPatch(current, patch) as Obj;
      else if (type === 'application/merge-patch+json') next = mergePatch(current, patch) as Obj;
      else if (type === 'application/strategic-merge-patch+json' && !r.custom) {
        // Built-in types only; for the fields the agent touches this equals a merge patch.
        next = mergePatch(current, patch) as Obj;
      } else if (type === 'application/apply-patch+yaml') {
        // Minimal server-side apply: the applied fields win (force); ownership is not tracked.
        if (q.get('fieldManager') === null) {
          throw new HttpError(400, 'BadRequest', 'PATCH with apply requires a fieldManager');
        }
        next = mergePatch(current, patch) as Obj;
      } else {
        throw new HttpError(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`,
        );
      }
      const rv = meta(next).resourceVersion;
      if (rv !== undefined && rv !== meta(current).resourceVersion) throw this.conflict(r, name);
      this.json(res, 200, this.update(r, key, current, next, sub !== undefined, strict));
      return;
    }
    if (method === 'DELETE') {
      this.json(res, 200, this.remove(r, key, current));
      return;
    }
    throw new HttpError(405, 'MethodNotAllowed', `${method} not allowed`);
  }

  private parse(body: string, yamlAllowed = false): Obj {
    try {
      return JSON.parse(body) as Obj;
    } catch {
      throw new HttpError(
        400,
        'BadRequest',
        yamlAllowed ? 'the fake accepts apply bodies as JSON only' : 'invalid JSON body',
      );
    }
  }

  private conflict(r: ResourceDef, name: string): HttpError {
    return new HttpError(
      409,
      'Conflict',
      `Operation cannot be fulfilled on ${r.plural}.${r.group} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      { name, group: r.group, kind: r.plural },
    );
  }

  private invalid(
    r: ResourceDef,
    name: string,
    causes: { field: string; message: string }[],
  ): HttpError {
    return new HttpError(
      422,
      'Invalid',
      `${r.kind}.${r.group} "${name}" is invalid: ${causes.map((c) => `${c.field.replace(/^\./, '')}: ${c.message}`).join(', ')}`,
      {
        name,
        group: r.group,
        kind: r.kind,
        causes: causes.map((c) => ({
          reason: 'FieldValueInvalid',
          message: c.message,
          field: c.field.replace(/^\./, ''),
        })),
      },
    );
  }

  private check(
    r: ResourceDef,
    name: string,
    obj: Obj,
    old: Obj | undefined,
    strict: boolean,
  ): void {
    if (!r.schema) return;
    const errors = validate(r.schema, obj, { strict, old });
    if (errors.length > 0) throw this.invalid(r, name, errors);
  }

  private create(
    r: ResourceDef,
    ns: string | null,
    obj: Obj,
    o: { strict: boolean; keepStatus: boolean },
  ): Obj {
    const md = meta(obj);
    const name = md.name;
    if (typeof name !== 'string' || name === '') {
      throw this.invalid(r, '', [
        { field: '.metadata.name', message: 'Required value: name or generateName is required' },
      ]);
    }
    const key = ns === null ? name : `${ns}/${name}`;
    const store = this.objects.get(r) ?? new Map<string, Obj>();
    if (store.has(key)) {
      throw new HttpError(409, 'AlreadyExists', `${r.plural}.${r.group} "${name}" already exists`, {
        name,
        group: r.group,
        kind: r.plural,
      });
    }
    if (!o.keepStatus) delete obj.status;
    obj.apiVersion = gv(r);
    obj.kind = r.kind;
    this.check(r, name, obj, undefined, o.strict);
    if (r.plural === 'pcideviceclaims' && this.policy) {
      const denied = admitClaim('CREATE', obj, undefined);
      if (denied !== null) throw new HttpError(422, 'Invalid', denied);
    }
    this.rv++;
    obj.metadata = {
      ...md,
      ...(ns !== null ? { namespace: ns } : {}),
      uid: randomUUID(),
      resourceVersion: String(this.rv),
      generation: 1,
      creationTimestamp: new Date(this.now()).toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    delete (obj.metadata as Obj).deletionTimestamp;
    store.set(key, obj);
    this.emit(r, 'ADDED', obj, null);
    return structuredClone(obj);
  }

  private update(
    r: ResourceDef,
    key: string,
    current: Obj,
    input: Obj,
    statusOnly: boolean,
    strict: boolean,
  ): Obj {
    const cur = meta(current);
    let next: Obj;
    if (r.status && statusOnly) {
      // /status changes status only.
      next = { ...structuredClone(current), status: structuredClone(input.status) };
      if (input.status === undefined) delete next.status;
    } else if (r.status) {
      // The main resource ignores status.
      next = { ...structuredClone(input), status: structuredClone(current.status) };
      if (current.status === undefined) delete next.status;
    } else next = structuredClone(input);
    const md = meta(next);
    // Identity fields are the server's.
    md.name = cur.name;
    md.uid = cur.uid;
    md.creationTimestamp = cur.creationTimestamp;
    if (cur.namespace !== undefined) md.namespace = cur.namespace;
    if (cur.deletionTimestamp !== undefined) md.deletionTimestamp = cur.deletionTimestamp;
    else delete md.deletionTimestamp;
    next.apiVersion = gv(r);
    next.kind = r.kind;
    const oldFin = (cur.finalizers ?? []) as string[];
    const newFin = (md.finalizers ?? []) as string[];
    if (cur.deletionTimestamp !== undefined && newFin.some((f) => !oldFin.includes(f))) {
      throw this.invalid(r, String(cur.name), [
        {
          field: '.metadata.finalizers',
          message: 'Forbidden: no new finalizers can be added if the object is being deleted',
        },
      ]);
    }
    this.check(r, String(cur.name), next, current, strict);
    if (r.plural === 'pcideviceclaims' && !statusOnly && this.policy) {
      const denied = admitClaim('UPDATE', next, current);
      if (denied !== null) throw new HttpError(422, 'Invalid', denied);
    }
    const strip = (o: Obj): string => {
      const c = { ...o };
      delete c.metadata;
      delete c.status;
      delete c.apiVersion;
      delete c.kind;
      return JSON.stringify(c);
    };
    md.generation = (cur.generation as number) + (strip(next) !== strip(current) ? 1 : 0);
    md.resourceVersion = cur.resourceVersion;
    if (JSON.stringify(next) === JSON.stringify(current)) return structuredClone(current);
    const store = this.objects.get(r) ?? new Map<string, Obj>();
    this.rv++;
    md.resourceVersion = String(this.rv);
    if (md.deletionTimestamp !== undefined && newFin.length === 0) {
      store.delete(key);
      this.emit(r, 'DELETED', next, current);
      return structuredClone(next);
    }
    store.set(key, next);
    this.emit(r, 'MODIFIED', next, current);
    return structuredClone(next);
  }

  private remove(r: ResourceDef, key: string, current: Obj): Obj {
    const store = this.objects.get(r) ?? new Map<string, Obj>();
    const md = meta(current);
    const fin = (md.finalizers ?? []) as string[];
    if (fin.length > 0) {
      if (md.deletionTimestamp !== undefined) return structuredClone(current);
      const next = structuredClone(current);
      this.rv++;
      Object.assign(meta(next), {
        deletionTimestamp: new Date(this.now()).toISOString().replace(/\.\d+Z$/, 'Z'),
        deletionGracePeriodSeconds: 0,
        resourceVersion: String(this.rv),
      });
      store.set(key, next);
      this.emit(r, 'MODIFIED', next, current);
      return structuredClone(next);
    }
    store.delete(key);
    this.rv++;
    const gone = structuredClone(current);
    meta(gone).resourceVersion = String(this.rv);
    this.emit(r, 'DELETED', gone, current);
    return gone;
  }

  private listMatching(r: ResourceDef, ns: string | null, field: Matcher, label: Matcher): Obj[] {
    return [...(this.objects.get(r)?.values() ?? [])]
      .filter((o) => ns === null || meta(o).namespace === ns)
      .filter((o) => field(o) && label(o))
      .sort((a, b) => String(meta(a).name).localeCompare(String(meta(b).name)))
      .map((o) => structuredClone(o));
  }

  // ---- watch --------------------------------------------------------------------------------

  private emit(res: ResourceDef, type: EventType, obj: Obj, old: Obj | null): void {
    const ev: LoggedEvent = {
      rv: this.rv,
      res,
      type,
      obj: structuredClone(obj),
      old: old ? structuredClone(old) : null,
    };
    this.log.push(ev);
    while (this.log.length > this.historySize) {
      const dropped = this.log.shift();
      if (dropped) this.compactedRv = dropped.rv;
    }
    for (const w of this.watchers) this.deliver(w, ev);
    if (type === 'DELETED') this.collectGarbage(meta(obj).uid);
  }

  /**
   * Twin of the garbage collector's background cascade: objects owned by a deleted object lose
   * that ownerReference, and those left with none are deleted (finalizers honoured). The real
   * collector does this shortly after; here it happens at once.
   */
  private collectGarbage(uid: unknown): void {
    if (typeof uid !== 'string') return;
    for (const [r, store] of this.objects) {
      for (const [key, o] of [...store]) {
        const refs = (meta(o).ownerReferences ?? []) as { uid?: string }[];
        if (!refs.some((x) => x.uid === uid)) continue;
        const left = refs.filter((x) => x.uid !== uid);
        if (left.length === 0) {
          this.remove(r, key, o);
          continue;
        }
        const next = structuredClone(o);
        this.rv++;
        Object.assign(meta(next), { ownerReferences: left, resourceVersion: String(this.rv) });
        store.set(key, next);
        this.emit(r, 'MODIFIED', next, o);
      }
    }
  }

  /** Selectors see both the old and the new object: leaving the selection is a DELETED. */
  private deliver(w: Watcher, ev: LoggedEvent): void {
    if (w.res !== ev.res || w.stalled) return;
    const inNs = (o: Obj | null): boolean =>
      o !== null && (w.ns === null || meta(o).namespace === w.ns);
    const sel = (o: Obj | null): boolean => o !== null && inNs(o) && w.field(o) && w.label(o);
    const now = ev.type !== 'DELETED' && sel(ev.obj);
    const before = ev.type === 'ADDED' ? false : sel(ev.old);
    if (ev.type === 'DELETED') {
      if (before) this.send(w, 'DELETED', ev.obj);
      return;
    }
    if (now && before) this.send(w, 'MODIFIED', ev.obj);
    else if (now) this.send(w, 'ADDED', ev.obj);
    else if (before) this.send(w, 'DELETED', ev.obj);
  }

  private send(w: Watcher, type: string, object: Obj): void {
    w.out.write(`${JSON.stringify({ type, object })}\n`);
  }

  private watch(
    r: ResourceDef,
    ns: string | null,
    field: Matcher,
    label: Matcher,
    q: URLSearchParams,
    res: http.ServerResponse,
    client: string,
  ): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // The real server sends the headers at once; clients wait for them before watching.
    res.flushHeaders();
    const w: Watcher = {
      res: r,
      ns,
      field,
      label,
      bookmarks: q.get('allowWatchBookmarks') === 'true',
      out: res,
      client,
      stalled: false,
    };
    const from = q.get('resourceVersion');
    if (from === null || from === '' || from === '0') {
      for (const o of this.listMatching(r, ns, field, label)) this.send(w, 'ADDED', o);
    } else {
      const n = Number(from);
      if (!Number.isInteger(n) || n < this.compactedRv) {
        res.end(
          `${JSON.stringify({
            type: 'ERROR',
            object: status(
              410,
              'Expired',
              `too old resource version: ${from} (${this.compactedRv + 1})`,
            ),
          })}\n`,
        );
        return;
      }
      for (const ev of this.log) if (ev.rv > n) this.deliver(w, ev);
    }
    this.watchers.add(w);
    const timeout = Number(q.get('timeoutSeconds') ?? '0');
    const timer =
      timeout > 0
        ? setTimeout(() => {
            this.watchers.delete(w);
            res.end();
          }, timeout * 1000)
        : null;
    timer?.unref();
    res.on('close', () => {
      if (timer) clearTimeout(timer);
      this.watchers.delete(w);
    });
  }

  // ---- discovery and tables for kubectl ---------------------------------------------------

  private wantsTable(req: http.IncomingMessage): boolean {
    return (req.headers.accept ?? '').includes('as=Table');
  }

  private table(r: ResourceDef, items: Obj[]): Obj {
    const now = this.now();
    return {
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      metadata: { resourceVersion: String(this.rv) },
      columnDefinitions: [
        { name: 'Name', type: 'string', format: 'name', description: 'Name', priority: 0 },
        ...r.columns.map((c) => ({
          name: c.name,
          type: c.type,
          format: '',
          description: '',
          priority: 0,
        })),
        { name: 'Age', type: 'date', format: '', description: 'Age', priority: 0 },
      ],
      rows: items.map((o) => ({
        cells: [
          meta(o).name,
          ...r.columns.map((c) => scalar(getPath(o, c.jsonPath))),
          age(meta(o).creationTimestamp, now),
        ],
        object: {
          kind: 'PartialObjectMetadata',
          apiVersion: 'meta.k8s.io/v1',
          metadata: meta(o),
        },
      })),
    };
  }

  /**
   * Just enough OpenAPI v3 for kubectl: each write operation carries the GVK extension and the
   * fieldValidation parameter, so kubectl leaves validation to the server (fieldValidation=Strict)
   * instead of validating client-side.
   */
  private openapi(groupVersion: string): Obj {
    const paths: Obj = {};
    const schemas: Obj = {};
    for (const r of this.resources.filter((x) => gv(x) === groupVersion)) {
      const gvk = { group: r.group, version: r.version, kind: r.kind };
      const op = {
        'x-kubernetes-group-version-kind': gvk,
        parameters: [{ name: 'fieldValidation', in: 'query', schema: { type: 'string' } }],
        responses: { '200': { description: 'OK' } },
      };
      const base = `/${r.group === '' ? 'api' : 'apis'}/${gv(r)}${r.namespaced ? '/namespaces/{namespace}' : ''}/${r.plural}`;
      paths[base] = { post: op, get: { ...op, parameters: [] } };
      paths[`${base}/{name}`] = { put: op, patch: op, delete: { ...op, parameters: [] } };
      const id = `${r.group === '' ? 'io.k8s.api.core' : r.group.split('.').reverse().join('.')}.${r.version}.${r.kind}`;
      schemas[id] = {
        ...(r.schema ?? { type: 'object' }),
        'x-kubernetes-group-version-kind': [gvk],
      };
    }
    return {
      openapi: '3.0.0',
      info: { title: 'passthru fake', version: 'v1.32.0' },
      paths,
      components: { schemas },
    };
  }

  private discovery(p: string, res: http.ServerResponse): boolean {
    const groups = [...new Set(this.resources.filter((r) => r.group !== '').map((r) => gv(r)))];
    if (p === '/version') {
      this.json(res, 200, {
        major: '1',
        minor: '32',
        gitVersion: 'v1.32.0-passthru-fake',
        platform: 'linux/amd64',
      });
      return true;
    }
    if (p === '/api') {
      this.json(res, 200, {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [
          { clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${this.port}` },
        ],
      });
      return true;
    }
    if (p === '/apis') {
      this.json(res, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: groups.map((g) => {
          const [name = '', version = ''] = g.split('/');
          return {
            name,
            versions: [{ groupVersion: g, version }],
            preferredVersion: { groupVersion: g, version },
          };
        }),
      });
      return true;
    }
    if (p === '/openapi/v3') {
      this.json(res, 200, {
        paths: Object.fromEntries(
          [...groups, 'v1'].map((g) => {
            const rel = g === 'v1' ? 'api/v1' : `apis/${g}`;
            return [rel, { serverRelativeURL: `/openapi/v3/${rel}?hash=${this.port}` }];
          }),
        ),
      });
      return true;
    }
    const o = /^\/openapi\/v3\/(?:api\/(v1)|apis\/([^/]+\/[^/]+))$/.exec(p);
    if (o) {
      this.json(res, 200, this.openapi(o[1] ?? o[2] ?? ''));
      return true;
    }
    const m = /^\/(?:api\/(v1)|apis\/([^/]+\/[^/]+))$/.exec(p);
    if (!m) return false;
    const want = m[1] ?? m[2];
    const rs = this.resources.filter((r) => gv(r) === want);
    if (rs.length === 0) return false;
    this.json(res, 200, {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: want,
      resources: rs.flatMap((r) => [
        {
          name: r.plural,
          singularName: r.singular,
          namespaced: r.namespaced,
          kind: r.kind,
          verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
        },
        ...(r.status
          ? [
              {
                name: `${r.plural}/status`,
                singularName: '',
                namespaced: r.namespaced,
                kind: r.kind,
                verbs: ['get', 'patch', 'update'],
              },
            ]
          : []),
      ]),
    });
    return true;
  }
}
