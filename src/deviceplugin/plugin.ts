import * as grpc from '@grpc/grpc-js';
import { PtError, isPtError } from '../errors.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import { VFIO_PCI } from '../pci/model.js';
import type { Logger } from '../util/logger.js';
import { containerAllocation, preferredAllocation, type Placement } from './allocation.js';
import type { DevicePluginCounters } from './counters.js';
import type { PluginDirPort } from '../process/plugin-dir.js';
import {
  API_VERSION,
  HEALTHY,
  KUBELET_SOCKET,
  UNHEALTHY,
  services,
  unary,
  unixClient,
  type AllocateRequest,
  type AllocateResponse,
  type ContainerAllocateResponse,
  type DevicePluginOptions,
  type Empty,
  type ListAndWatchResponse,
  type PreStartContainerRequest,
  type PreferredAllocationRequest,
  type PreferredAllocationResponse,
  type RegisterRequest,
  type WireDevice,
} from './proto.js';
import { socketNameFor } from './resource-name.js';
import type { PluginDevice } from './source.js';

export type PluginHost = Pick<HostPort, 'readDeviceLinks' | 'vfioGroupNodeExists'>;

export interface ResourcePluginDeps {
  resourceName: string;
  dir: PluginDirPort;
  host: PluginHost;
  clock: Clock;
  logger: Logger;
  counters: DevicePluginCounters;
  preStartRequired: boolean;
  registerTimeoutMs: number;
}

type ListStream = grpc.ServerWritableStream<Empty, ListAndWatchResponse>;

/** What the plugin last put on its ListAndWatch streams, with the (injected) time it did. */
export interface SentList {
  at: number;
  devices: WireDevice[];
  seq: number;
}

function grpcError(e: unknown): grpc.ServerErrorResponse {
  if (isPtError(e)) {
    const code =
      e.code === 'PT_ERR_INVALID_ARGUMENT'
        ? grpc.status.INVALID_ARGUMENT
        : e.code === 'PT_ERR_DEVICE_NOT_FOUND'
          ? grpc.status.NOT_FOUND
          : grpc.status.FAILED_PRECONDITION;
    return Object.assign(new Error(`${e.code}: ${e.message}`), {
      code,
      details: `${e.code}: ${e.message}`,
    });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return Object.assign(new Error(msg), { code: grpc.status.INTERNAL, details: msg });
}

/**
 * One kubelet device plugin: one resource name, one gRPC server on its own socket in the
 * plugin folder, device IDs are PCI addresses. The manager tells it the current devices and
 * when to (re-)serve and (re-)register.
 */
export class ResourcePlugin {
  readonly resourceName: string;
  readonly endpoint: string;
  /** kubelet.sock identity this plugin last registered with, or null. */
  registeredWith: string | null = null;
  private readonly d: ResourcePluginDeps;
  private readonly log: Logger;
  private devices = new Map<string, PluginDevice>();
  private streams = new Set<ListStream>();
  private server: grpc.Server | null = null;
  private sent: SentList | null = null;
  private wire = '';
  private seq = 0;
  private stopped = false;

  constructor(deps: ResourcePluginDeps) {
    this.d = deps;
    this.resourceName = deps.resourceName;
    this.endpoint = socketNameFor(deps.resourceName);
    this.log = deps.logger.child({ component: 'deviceplugin', resource: deps.resourceName });
  }

  lastSent(): SentList | null {
    return this.sent;
  }

  currentDevices(): PluginDevice[] {
    return [...this.devices.values()];
  }

  private options(): DevicePluginOptions {
    return {
      pre_start_required: this.d.preStartRequired,
      get_preferred_allocation_available: true,
    };
  }

  /** Listens on a fresh socket (the kubelet deletes every socket in the folder on restart). */
  async serve(): Promise<void> {
    if (this.server) this.server.forceShutdown();
    this.streams.clear();
    this.d.dir.removeSocket(this.endpoint);
    const server = new grpc.Server();
    server.addService(services().DevicePlugin.service, {
      GetDevicePluginOptions: (
        _call: grpc.ServerUnaryCall<Empty, DevicePluginOptions>,
        cb: grpc.sendUnaryData<DevicePluginOptions>,
      ) => {
        cb(null, this.options());
      },
      ListAndWatch: (call: ListStream) => {
        this.watch(call);
      },
      GetPreferredAllocation: (
        call: grpc.ServerUnaryCall<PreferredAllocationRequest, PreferredAllocationResponse>,
        cb: grpc.sendUnaryData<PreferredAllocationResponse>,
      ) => {
        cb(null, this.preferred(call.request));
      },
      Allocate: (
        call: grpc.ServerUnaryCall<AllocateRequest, AllocateResponse>,
        cb: grpc.sendUnaryData<AllocateResponse>,
      ) => {
        this.allocate(call.request).then(
          (r) => {
            cb(null, r);
          },
          (e: unknown) => {
            cb(grpcError(e));
          },
        );
      },
      PreStartContainer: (
        call: grpc.ServerUnaryCall<PreStartContainerRequest, Empty>,
        cb: grpc.sendUnaryData<Empty>,
      ) => {
        this.preStart(call.request).then(
          () => {
            cb(null, {});
          },
          (e: unknown) => {
            cb(grpcError(e));
          },
        );
      },
    });
    const socket = this.d.dir.socketPath(this.endpoint);
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
        if (err) reject(err);
        else resolve();
      });
    });
    this.server = server;
    this.log.debug({ socket }, 'device plugin serving');
  }

  /** Register on kubelet.sock. The kubelet dials back and asks for options inside this call. */
  async register(kubeletIdentity: string): Promise<void> {
    const client = unixClient(services().Registration, this.d.dir.socketPath(KUBELET_SOCKET));
    try {
      const req: RegisterRequest = {
        version: API_VERSION,
        endpoint: this.endpoint,
        resource_name: this.resourceName,
        options: this.options(),
      };
      await unary<Empty>(client, 'Register', req, this.d.registerTimeoutMs);
      this.registeredWith = kubeletIdentity;
      this.d.counters.inc(this.resourceName, 'registrations');
      this.log.info({ endpoint: this.endpoint }, 'registered with kubelet');
    } catch (e) {
      this.registeredWith = null;
      this.d.counters.inc(this.resourceName, 'registration_failures');
      throw e;
    } finally {
      client.close();
    }
  }

  /** The claimed devices of this resource now; sends the full list when anything changed. */
  update(devices: readonly PluginDevice[]): void {
    const next = new Map<string, PluginDevice>();
    for (const d of [...devices].sort((a, b) => (a.address < b.address ? -1 : 1)))
      next.set(d.address, d);
    for (const [a, d] of next) {
      const prev = this.devices.get(a);
      if (!prev || prev.healthy === d.healthy) continue;
      this.d.counters.inc(
        this.resourceName,
        d.healthy ? 'health_flips_healthy' : 'health_flips_unhealthy',
      );
      if (d.healthy) this.log.info({ address: a }, 'device healthy');
      else this.log.warn({ address: a, reason: d.reason }, 'device unhealthy');
    }
    this.devices = next;
    this.broadcast(this.wireDevices());
  }

  private wireDevices(): WireDevice[] {
    return [...this.devices.values()].map((d) => ({
      ID: d.address,
      health: d.healthy ? HEALTHY : UNHEALTHY,
      // No topology at all when the kernel does not know the node: kubelet then treats the
      // device as usable from any node (Harvester always claimed node 0).
      topology: d.numaNode === null ? null : { nodes: [{ ID: d.numaNode }] },
    }));
  }

  private broadcast(devices: WireDevice[]): void {
    const wire = JSON.stringify(devices);
    if (wire === this.wire) return;
    this.wire = wire;
    this.sent = { at: this.d.clock.now(), devices, seq: ++this.seq };
    this.d.counters.inc(this.resourceName, 'list_updates');
    for (const s of this.streams) s.write({ devices });
  }

  private watch(call: ListStream): void {
    if (this.stopped) {
      call.end();
      return;
    }
    this.streams.add(call);
    const drop = (): void => {
      this.streams.delete(call);
    };
    call.on('cancelled', drop);
    call.on('error', drop);
    call.on('close', drop);
    // The whole list at once: the kubelet replaces its view with each message.
    call.write({ devices: this.wireDevices() });
  }

  private placements(): Map<string, Placement> {
    return new Map(
      [...this.devices.values()].map((d) => [
        d.address,
        { address: d.address, numaNode: d.numaNode, iommuGroup: d.iommuGroup },
      ]),
    );
  }

  private preferred(req: PreferredAllocationRequest): PreferredAllocationResponse {
    const p = this.placements();
    return {
      container_responses: req.container_requests.map((c) => ({
        deviceIDs: preferredAllocation(
          p,
          c.available_deviceIDs,
          c.must_include_deviceIDs,
          c.allocation_size,
        ),
      })),
    };
  }

  /**
   * Re-reads the host: the device must be one of ours, healthy, bound to vfio-pci, in an IOMMU
   * group whose /dev/vfio node exists. What the host says now wins over the last list.
   */
  private async verify(id: string): Promise<{ group: number; vfioDev: string | null }> {
    const d = this.devices.get(id);
    if (!d) {
      throw new PtError('PT_ERR_DEVICE_NOT_FOUND', `${id} is not a ${this.resourceName} device`, {
        details: { address: id },
      });
    }
    if (!d.healthy) {
      throw new PtError('PT_ERR_DEVICE_NOT_READY', `${id}: ${d.reason ?? 'not ready'}`, {
        details: { address: id },
      });
    }
    const links = await this.d.host.readDeviceLinks(d.address);
    if (links.driver !== VFIO_PCI) {
      throw new PtError(
        'PT_ERR_DEVICE_NOT_READY',
        `${id} is on ${links.driver ?? 'no driver'}, not vfio-pci`,
        { details: { address: id } },
      );
    }
    const group = links.iommuGroup;
    if (group === null || !(await this.d.host.vfioGroupNodeExists(group))) {
      throw new PtError(
        'PT_ERR_DEVICE_NOT_READY',
        group === null ? `${id} has no IOMMU group` : `/dev/vfio/${group} does not exist`,
        { details: { address: id } },
      );
    }
    return { group, vfioDev: links.vfioDev };
  }

  private async allocateOne(ids: readonly string[]): Promise<ContainerAllocateResponse> {
    if (new Set(ids).size !== ids.length) {
      throw new PtError('PT_ERR_INVALID_ARGUMENT', `duplicate device IDs: ${ids.join(',')}`);
    }
    const requested = [];
    for (const id of ids) {
      const v = await this.verify(id);
      const d = this.devices.get(id);
      if (d) requested.push({ address: d.address, iommuGroup: v.group, vfioDev: v.vfioDev });
    }
    const a = containerAllocation(this.resourceName, requested);
    return { envs: a.envs, mounts: [], devices: a.devices, annotations: {}, cdi_devices: [] };
  }

  async allocate(req: AllocateRequest): Promise<AllocateResponse> {
    try {
      const out: ContainerAllocateResponse[] = [];
      for (const c of req.container_requests) out.push(await this.allocateOne(c.devices_ids));
      this.d.counters.inc(this.resourceName, 'allocations');
      return { container_responses: out };
    } catch (e) {
      this.d.counters.inc(this.resourceName, 'allocation_failures');
      this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'allocate refused');
      throw e;
    }
  }

  async preStart(req: PreStartContainerRequest): Promise<void> {
    this.d.counters.inc(this.resourceName, 'prestart_checks');
    try {
      for (const id of req.devices_ids) await this.verify(id);
    } catch (e) {
      this.d.counters.inc(this.resourceName, 'prestart_failures');
      this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'pre-start check failed');
      throw e;
    }
  }

  /**
   * An intentional stop: an empty list first (so the kubelet drops the devices at once instead
   * of keeping them Unhealthy for its 5-minute grace), then the server and the socket go.
   */
  async stop(graceMs = 1_000): Promise<void> {
    this.stopped = true;
    this.devices.clear();
    this.broadcast([]);
    for (const s of this.streams) s.end();
    this.streams.clear();
    const server = this.server;
    this.server = null;
    if (server) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.d.dir.removeSocket(this.endpoint);
  }

  /** Whether this plugin was stopped for good. */
  isStopped(): boolean {
    return this.stopped;
  }
}
