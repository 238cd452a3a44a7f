import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as path from 'node:path';
import { packageRoot } from '../process/package-root.js';

/**
 * The kubelet's gRPC APIs, loaded at run time from the vendored upstream protos in proto/
 * (unchanged; see NOTICE). keepCase keeps the wire names (`devices_ids`, `available_deviceIDs`),
 * longs as numbers make NUMANode.ID a plain number.
 */
const LOAD_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  oneofs: true,
};

/** The vendored protos, under proto/ beside the package (the image copies that folder too). */
export const PROTO_FILES = {
  devicePlugin: 'deviceplugin/v1beta1/api.proto',
  podResources: 'podresources/v1/api.proto',
} as const;

const protoPath = (rel: string): string => path.join(packageRoot(), 'proto', rel);

export const API_VERSION = 'v1beta1';
export const HEALTHY = 'Healthy';
export const UNHEALTHY = 'Unhealthy';
export const KUBELET_SOCKET = 'kubelet.sock';
export const DEFAULT_PLUGIN_DIR = '/var/lib/kubelet/device-plugins';
export const DEFAULT_POD_RESOURCES_SOCKET = '/var/lib/kubelet/pod-resources/kubelet.sock';

export interface DevicePluginOptions {
  pre_start_required: boolean;
  get_preferred_allocation_available: boolean;
}
export interface RegisterRequest {
  version: string;
  endpoint: string;
  resource_name: string;
  options: DevicePluginOptions;
}
export interface WireDevice {
  ID: string;
  health: string;
  topology: { nodes: { ID: number }[] } | null;
}
export interface ListAndWatchResponse {
  devices: WireDevice[];
}
export interface PreferredAllocationRequest {
  container_requests: {
    available_deviceIDs: string[];
    must_include_deviceIDs: string[];
    allocation_size: number;
  }[];
}
export interface PreferredAllocationResponse {
  container_responses: { deviceIDs: string[] }[];
}
export interface AllocateRequest {
  container_requests: { devices_ids: string[] }[];
}
export interface ContainerAllocateResponse {
  envs: Record<string, string>;
  mounts: { container_path: string; host_path: string; read_only: boolean }[];
  devices: { container_path: string; host_path: string; permissions: string }[];
  annotations: Record<string, string>;
  cdi_devices: { name: string }[];
}
export interface AllocateResponse {
  container_responses: ContainerAllocateResponse[];
}
export interface PreStartContainerRequest {
  devices_ids: string[];
}
export interface Empty {
  [k: string]: never;
}

export interface PodResourcesResponse {
  pod_resources: {
    name: string;
    namespace: string;
    containers: {
      name: string;
      devices: {
        resource_name: string;
        device_ids: string[];
        topology: { nodes: { ID: number }[] } | null;
      }[];
    }[];
  }[];
}

export interface Services {
  Registration: grpc.ServiceClientConstructor;
  DevicePlugin: grpc.ServiceClientConstructor;
  PodResourcesLister: grpc.ServiceClientConstructor;
}

let loaded: Services | null = null;

function service(pkg: grpc.GrpcObject, name: string): grpc.ServiceClientConstructor {
  const s = pkg[name];
  if (typeof s !== 'function') throw new Error(`proto: no service ${name}`);
  return s;
}

function pkgOf(root: grpc.GrpcObject, name: string): grpc.GrpcObject {
  const p = root[name];
  if (typeof p !== 'object') throw new Error(`proto: no package ${name}`);
  return p as grpc.GrpcObject;
}

/** Loads both protos once per process. */
export function services(): Services {
  if (loaded) return loaded;
  const dp = grpc.loadPackageDefinition(
    protoLoader.loadSync(protoPath(PROTO_FILES.devicePlugin), LOAD_OPTIONS),
  );
  const pr = grpc.loadPackageDefinition(
    protoLoader.loadSync(protoPath(PROTO_FILES.podResources), LOAD_OPTIONS),
  );
  loaded = {
    Registration: service(pkgOf(dp, 'v1beta1'), 'Registration'),
    DevicePlugin: service(pkgOf(dp, 'v1beta1'), 'DevicePlugin'),
    PodResourcesLister: service(pkgOf(pr, 'v1'), 'PodResourcesLister'),
  };
  return loaded;
}

type UnaryMethod<Res> = (
  req: unknown,
  meta: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Res) => void,
) => grpc.ClientUnaryCall;

/** A unary call with a deadline, as a promise. Methods of generated clients are dynamic. */
export function unary<Res>(
  client: grpc.Client,
  method: string,
  req: unknown,
  timeoutMs: number,
): Promise<Res> {
  const fn = (client as unknown as Record<string, unknown>)[method];
  if (typeof fn !== 'function') return Promise.reject(new Error(`no method ${method}`));
  const call = (fn as UnaryMethod<Res>).bind(client);
  return new Promise<Res>((resolve, reject) => {
    call(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) reject(err);
      else if (res === undefined) reject(new Error(`${method}: empty response`));
      else resolve(res);
    });
  });
}

/** A client over a unix socket; `unix://` plus an absolute path. */
export function unixClient(ctor: grpc.ServiceClientConstructor, socketPath: string): grpc.Client {
  return new ctor(`unix://${socketPath}`, grpc.credentials.createInsecure());
}
