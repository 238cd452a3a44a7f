import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  services,
  unary,
  unixClient,
  type AllocateRequest,
  type AllocateResponse,
  type ContainerAllocateResponse,
  type DevicePluginOptions,
  type ListAndWatchResponse,
  type PreferredAllocationRequest,
  type PreferredAllocationResponse,
  type PodResourcesResponse,
  type RegisterRequest,
  type WireDevice,
} from '../../src/deviceplugin/proto.js';

/**
 * A kubelet device manager twin over real unix sockets, written from the kubelet's behaviour
 * (pkg/kubelet/cm/devicemanager): Register checks the version and the name, dials the plugin
 * and calls GetDevicePluginOptions inside the call, then consumes ListAndWatch; the newest
 * registration of a name wins; a restart deletes every socket in the folder.
 */

export interface Registration {
  resourceName: string;
  endpoint: string;
  version: string;
  options: DevicePluginOptions;
  /** Which kubelet instance (1, 2, ...) took it. */
  instance: number;
  /** GetDevicePluginOptions answered inside Register, before Register returned. */
  optionsDuringRegister: DevicePluginOptions;
}

interface Endpoint {
  reg: Registration;
  client: grpc.Client;
  stream: grpc.ClientReadableStream<ListAndWatchResponse> | null;
  devices: WireDevice[];
  messages: ListAndWatchResponse[];
  open: boolean;
}

export interface PodRef {
  namespace: string;
  name: string;
  container: string;
}

interface Allocation {
  pod: PodRef;
  resourceName: string;
  ids: string[];
}

const NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

function extendedName(name: string): boolean {
  const parts = name.split('/');
  if (parts.length !== 2) return false;
  const [prefix, part] = parts as [string, string];
  return (
    prefix !== '' &&
    !prefix.endsWith('kubernetes.io') &&
    /^[a-z0-9.-]+$/.test(prefix) &&
    part.length <= 63 &&
    NAME_PART.test(part)
  );
}

function fail(code: grpc.status, details: string): grpc.ServerErrorResponse {
  return Object.assign(new Error(details), { code, details });
}

export class FakeKubelet {
  readonly registrations: Registration[] = [];
  readonly allocations: Allocation[] = [];
  /** Every Allocate response, in order. */
  readonly responses: {
    resourceName: string;
    request: string[];
    response: ContainerAllocateResponse;
  }[] = [];
  readonly preStarts: { resourceName: string; ids: string[] }[] = [];
  instance = 0;
  /** Refuse this many Register calls (as a kubelet still starting up may). */
  rejectRegistrations = 0;
  private server: grpc.Server | null = null;
  private podServer: grpc.Server | null = null;
  private endpoints = new Map<string, Endpoint>();
  private waiters = new Set<() => void>();

  constructor(
    readonly dir: string,
    readonly podResourcesSocket: string,
  ) {}

  get socket(): string {
    return path.join(this.dir, 'kubelet.sock');
  }

  async start(): Promise<void> {
    this.instance++;
    const instance = this.instance;
    const server = new grpc.Server();
    server.addService(services().Registration.service, {
      Register: (
        call: grpc.ServerUnaryCall<RegisterRequest, Record<string, never>>,
        cb: grpc.sendUnaryData<Record<string, never>>,
      ) => {
        this.register(call.request, instance).then(
          () => {
            cb(null, {});
          },
          (e: unknown) => {
            cb(
              fail(
                grpc.status.UNKNOWN,
                e instanceof Error ? e.message : `registration failed: ${String(e)}`,
              ),
            );
          },
        );
      },
    });
    fs.rmSync(this.socket, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${this.socket}`, grpc.ServerCredentials.createInsecure(), (e) => {
        if (e) reject(e);
        else resolve();
      });
    });
    this.server = server;
    if (!this.podServer) await this.servePodResources();
  }

  private async servePodResources(): Promise<void> {
    const server = new grpc.Server();
    server.addService(services().PodResourcesLister.service, {
      List: (
        _call: grpc.ServerUnaryCall<unknown, PodResourcesResponse>,
        cb: grpc.sendUnaryData<PodResourcesResponse>,
      ) => {
        cb(null, this.podResources());
      },
      GetAllocatableResources: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => {
        cb(fail(grpc.status.UNIMPLEMENTED, 'not in the fake'));
      },
      Get: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => {
        cb(fail(grpc.status.UNIMPLEMENTED, 'not in the fake'));
      },
    });
    fs.rmSync(this.podResourcesSocket, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(
        `unix://${this.podResourcesSocket}`,
        grpc.ServerCredentials.createInsecure(),
        (e) => {
          if (e) reject(e);
          else resolve();
        },
      );
    });
    this.podServer = server;
  }

  private podResources(): PodResourcesResponse {
    const pods = new Map<string, PodResourcesResponse['pod_resources'][number]>();
    for (const a of this.allocations) {
      const key = `${a.pod.namespace}/${a.pod.name}`;
      let p = pods.get(key);
      if (!p) {
        p = { name: a.pod.name, namespace: a.pod.namespace, containers: [] };
        pods.set(key, p);
      }
      let c = p.containers.find((x) => x.name === a.pod.container);
      if (!c) {
        c = { name: a.pod.container, devices: [] };
        p.containers.push(c);
      }
      c.devices.push({ resource_name: a.resourceName, device_ids: a.ids, topology: null });
    }
    return { pod_resources: [...pods.values()] };
  }

  private async register(req: RegisterRequest, instance: number): Promise<void> {
    if (this.rejectRegistrations > 0) {
      this.rejectRegistrations--;
      throw new Error('device manager not ready');
    }
    if (req.version !== 'v1beta1') throw new Error(`unsupported version ${req.version}`);
    if (!extendedName(req.resource_name))
      throw new Error(`invalid extended resource name ${req.resource_name}`);
    const client = unixClient(services().DevicePlugin, path.join(this.dir, req.endpoint));
    try {
      await new Promise<void>((resolve, reject) => {
        client.waitForReady(Date.now() + 10_000, (e?: Error) => {
          if (e) reject(e);
          else resolve();
        });
      });
      const opts = await unary<DevicePluginOptions>(client, 'GetDevicePluginOptions', {}, 10_000);
      const reg: Registration = {
        resourceName: req.resource_name,
        endpoint: req.endpoint,
        version: req.version,
        options: req.options,
        instance,
        optionsDuringRegister: opts,
      };
      // The newest registration of a name wins.
      this.closeEndpoint(req.resource_name);
      const ep: Endpoint = { reg, client, stream: null, devices: [], messages: [], open: true };
      this.endpoints.set(req.resource_name, ep);
      this.registrations.push(reg);
      this.listAndWatch(ep);
      this.notify();
    } catch (e) {
      client.close();
      throw e;
    }
  }

  private listAndWatch(ep: Endpoint): void {
    const fn = (ep.client as unknown as Record<string, unknown>).ListAndWatch as (
      req: Record<string, never>,
    ) => grpc.ClientReadableStream<ListAndWatchResponse>;
    const stream = fn.call(ep.client, {});
    ep.stream = stream;
    stream.on('data', (m: ListAndWatchResponse) => {
      ep.devices = m.devices;
      ep.messages.push(m);
      this.notify();
    });
    const ended = (): void => {
      if (!ep.open) return;
      ep.open = false;
      // What the kubelet does when the stream ends: every device Unhealthy.
      ep.devices = ep.devices.map((d) => ({ ...d, health: 'Unhealthy' }));
      this.notify();
    };
    stream.on('end', ended);
    stream.on('error', ended);
  }

  private closeEndpoint(name: string): void {
    const ep = this.endpoints.get(name);
    if (!ep) return;
    ep.open = false;
    ep.stream?.cancel();
    ep.client.close();
  }

  /** The kubelet's current view of a resource. */
  view(
    name: string,
  ):
    | { reg: Registration; devices: WireDevice[]; messages: ListAndWatchResponse[]; open: boolean }
    | undefined {
    const ep = this.endpoints.get(name);
    return ep
      ? { reg: ep.reg, devices: ep.devices, messages: ep.messages, open: ep.open }
      : undefined;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /**
   * Resolves when `pred` holds, re-checked at each registration and each list received. The
   * real-time limit only turns a hang into a readable failure; nothing asserts on time.
   */
  waitFor(pred: () => boolean, what: string, limitMs = 10_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!pred()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`fake kubelet: still waiting for ${what}`));
      }, limitMs);
      this.waiters.add(check);
    });
  }

  private client(name: string): grpc.Client {
    const ep = this.endpoints.get(name);
    if (!ep?.open) throw new Error(`no open endpoint for ${name}`);
    return ep.client;
  }

  async preferred(
    name: string,
    available: string[],
    mustInclude: string[],
    size: number,
  ): Promise<string[]> {
    const req: PreferredAllocationRequest = {
      container_requests: [
        {
          available_deviceIDs: available,
          must_include_deviceIDs: mustInclude,
          allocation_size: size,
        },
      ],
    };
    const res = await unary<PreferredAllocationResponse>(
      this.client(name),
      'GetPreferredAllocation',
      req,
      5_000,
    );
    return res.container_responses[0]?.deviceIDs ?? [];
  }

  /** Allocate exactly these IDs for one container (one ContainerAllocateRequest, as kubelet). */
  async allocateIds(name: string, ids: string[], pod?: PodRef): Promise<ContainerAllocateResponse> {
    const req: AllocateRequest = { container_requests: [{ devices_ids: ids }] };
    const res = await unary<AllocateResponse>(this.client(name), 'Allocate', req, 5_000);
    const r = res.container_responses[0];
    if (!r) throw new Error('Allocate: no container response');
    this.responses.push({ resourceName: name, request: ids, response: r });
    if (pod) this.allocations.push({ pod, resourceName: name, ids });
    return r;
  }

  async preStart(name: string, ids: string[]): Promise<void> {
    await unary(this.client(name), 'PreStartContainer', { devices_ids: ids }, 5_000);
    this.preStarts.push({ resourceName: name, ids });
  }

  /**
   * Mirrors devicesToAllocate for a pod asking for `n` devices: healthy, unallocated devices
   * (optionally only those on one NUMA node, as Topology Manager hints would narrow them), the
   * plugin's preference when it offers one, then Allocate and, if asked for, PreStartContainer.
   */
  async allocate(
    name: string,
    n: number,
    pod: PodRef,
    numaNode?: number,
  ): Promise<{ ids: string[]; response: ContainerAllocateResponse }> {
    const ep = this.endpoints.get(name);
    if (!ep?.open) throw new Error(`no open endpoint for ${name}`);
    const used = new Set(
      this.allocations.filter((a) => a.resourceName === name).flatMap((a) => a.ids),
    );
    const free = ep.devices
      .filter((d) => d.health === 'Healthy' && !used.has(d.ID))
      .filter(
        (d) => numaNode === undefined || (d.topology?.nodes ?? []).some((x) => x.ID === numaNode),
      )
      .map((d) => d.ID);
    if (free.length < n) throw new Error(`${name}: ${free.length} healthy devices, ${n} wanted`);
    let ids = free.slice(0, n);
    if (ep.reg.options.get_preferred_allocation_available) {
      const pref = (await this.preferred(name, free, [], n)).filter((id) => free.includes(id));
      if (pref.length === n) ids = pref;
    }
    const response = await this.allocateIds(name, ids, pod);
    if (ep.reg.options.pre_start_required) await this.preStart(name, ids);
    return { ids, response };
  }

  release(pod: PodRef): void {
    for (let i = this.allocations.length - 1; i >= 0; i--) {
      const a = this.allocations[i];
      if (a && a.pod.namespace === pod.namespace && a.pod.name === pod.name)
        this.allocations.splice(i, 1);
    }
  }

  private async stopServer(): Promise<void> {
    for (const name of this.endpoints.keys()) this.closeEndpoint(name);
    const s = this.server;
    this.server = null;
    s?.forceShutdown();
    await Promise.resolve();
  }

  /**
   * A kubelet restart: the old process goes, the new one deletes every socket in the folder
   * (sparing directories, regular files and kubelet_internal_checkpoint) and listens on
   * kubelet.sock again.
   */
  async restart(): Promise<void> {
    await this.stopServer();
    for (const f of fs.readdirSync(this.dir)) {
      if (f === 'kubelet_internal_checkpoint') continue;
      const p = path.join(this.dir, f);
      try {
        if (fs.lstatSync(p).isSocket()) fs.rmSync(p, { force: true });
      } catch {
        // gone already
      }
    }
    await this.start();
  }

  /** The kubelet is not running (yet): no kubelet.sock in the folder. */
  async down(): Promise<void> {
    await this.stopServer();
    fs.rmSync(this.socket, { force: true });
  }

  async stop(): Promise<void> {
    await this.stopServer();
    this.podServer?.forceShutdown();
    this.podServer = null;
  }
}
