import {
  constants as fsConstants,
  closeSync,
  fstatSync,
  openSync,
  readFileSync,
  type Stats,
} from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { PtError, errnoOf } from '../errors.js';
import { packageRoot } from '../process/package-root.js';
import {
  PCI_IDS_PATHS,
  deferredPciIds,
  emptyPciIds,
  noPciIds,
  parsePciIds,
  type PciIdNames,
  type ReleasablePciIds,
} from '../pci/pciids.js';
import { LinuxHost } from './linux/host.js';
import type { Topology } from '../topology/format.js';
import { discover } from '../pci/discovery.js';

/** pci.ids is about 1.5 MB today; anything far larger is not a pci.ids. */
const MAX_PCI_IDS_BYTES = 64 * 1024 * 1024;
/** A topology of 4096 functions is about 2 MB. */
const MAX_TOPOLOGY_BYTES = 64 * 1024 * 1024;

type InputCode = 'PT_ERR_INVALID_ARGUMENT' | 'PT_ERR_TOPOLOGY_INVALID';

/** Opens without blocking (O_NONBLOCK: a FIFO with no writer would wait forever). */
const INPUT_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY;

/** Refuses what is not a regular file of at most maxBytes, as seen on the open descriptor. */
function checkInput(st: Stats, p: string, maxBytes: number, what: string, code: InputCode): void {
  if (!st.isFile()) throw new PtError(code, `${what} at ${p} is ${kindOf(st)}, not a regular file`);
  if (st.size > maxBytes)
    throw new PtError(code, `${what} at ${p} is ${st.size} bytes, over the ${maxBytes} limit`);
}

/**
 * Opens a regular file given on the command line and hands it to `use`. The kind is checked on
 * the open descriptor, so a FIFO, a device (/dev/zero) or a socket is refused instead of read
 * forever.
 */
async function withInputFile<T>(
  p: string,
  maxBytes: number,
  what: string,
  code: InputCode,
  use: (fh: fs.FileHandle) => Promise<T>,
): Promise<T> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(p, INPUT_FLAGS);
  } catch (e) {
    throw new PtError(code, `cannot read ${what} at ${p}: ${errnoOf(e) ?? String(e)}`);
  }
  try {
    checkInput(await fh.stat(), p, maxBytes, what, code);
    return await use(fh);
  } catch (e) {
    if (e instanceof PtError) throw e;
    throw new PtError(code, `cannot read ${what} at ${p}: ${errnoOf(e) ?? String(e)}`);
  } finally {
    await fh.close();
  }
}

const readInputFile = (p: string, maxBytes: number, what: string, code: InputCode) =>
  withInputFile(p, maxBytes, what, code, (fh) => fh.readFile('utf8'));

/** pci.ids is checked where it is named and read on the first lookup (loadPciIds). */
const checkPciIdsFile = (p: string) =>
  withInputFile(p, MAX_PCI_IDS_BYTES, 'pci.ids', 'PT_ERR_INVALID_ARGUMENT', async () => {
    // Open and of the right kind and size: nothing to read yet.
  });

function kindOf(st: {
  isDirectory(): boolean;
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSocket(): boolean;
}): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * pci.ids from the given path or the first standard location that is a regular file; hex ids
 * without one. The file is checked here (a bad --pci-ids fails at once) but read and searched
 * on the first name looked up, which a command naming nothing (`list` on an empty host) never
 * does (issue 11: start-up). That read is synchronous, as lookups are: one read of a local
 * file of about 1.5 MB. Should the file vanish or change kind in between, names fall back to
 * hex ids rather than failing a lookup in the middle of a discovery.
 */
export async function loadPciIds(
  explicit?: string,
): Promise<{ names: ReleasablePciIds; path: string | null }> {
  if (explicit !== undefined) {
    await checkPciIdsFile(explicit);
    return { names: deferredPciIds(() => readPciIds(explicit)), path: explicit };
  }
  for (const p of PCI_IDS_PATHS) {
    try {
      await checkPciIdsFile(p);
    } catch {
      continue; // The next standard location, then hex ids.
    }
    return { names: deferredPciIds(() => readPciIds(p)), path: p };
  }
  return { names: noPciIds, path: null };
}

/** The first lookup's read: synchronous, as lookups are, with readInputFile's checks. */
function readPciIds(p: string): PciIdNames {
  let fd: number;
  try {
    fd = openSync(p, INPUT_FLAGS);
  } catch {
    return emptyPciIds;
  }
  try {
    checkInput(fstatSync(fd), p, MAX_PCI_IDS_BYTES, 'pci.ids', 'PT_ERR_INVALID_ARGUMENT');
    // latin1: a third of UTF-8 decoding's time; the names found are decoded as UTF-8.
    return parsePciIds(readFileSync(fd, 'latin1'), { utf8AsLatin1: true });
  } catch {
    return emptyPciIds;
  } finally {
    closeSync(fd);
  }
}

/**
 * A topology's name becomes a folder name (the simulated host's state folder): one path
 * segment, never `.` or `..`, so it cannot steer paths (adversarial finding 9).
 */
export const TOPOLOGY_NAME = /^[A-Za-z0-9._-]+$/;

export function isSafeTopologyName(name: string): boolean {
  return TOPOLOGY_NAME.test(name) && name !== '.' && name !== '..' && name.length <= 128;
}

/** The topologies shipped with passthru (topologies/*.json beside the package). */
export function shippedTopologyDir(): string {
  return path.join(packageRoot(), 'topologies');
}

export async function listShippedTopologies(): Promise<string[]> {
  try {
    return (await fs.readdir(shippedTopologyDir()))
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -5))
      .sort();
  } catch {
    return [];
  }
}

/**
 * A topology from a JSON file, a sysfs tree on disk (a directory holding sys/bus/pci), or the
 * name of a shipped topology. Its name is checked with isSafeTopologyName.
 */
export async function loadTopology(spec: string): Promise<Topology> {
  let p = spec;
  if (!spec.includes('/') && !spec.endsWith('.json')) {
    p = path.join(shippedTopologyDir(), `${spec}.json`);
  }
  let st;
  try {
    st = await fs.stat(p);
  } catch {
    const shipped = await listShippedTopologies();
    throw new PtError(
      'PT_ERR_TOPOLOGY_INVALID',
      `no topology at ${spec} (shipped topologies: ${shipped.join(', ') || 'none'})`,
    );
  }
  if (st.isDirectory()) {
    const host = new LinuxHost({ root: p, uevents: false });
    const inv = await discover(host);
    if (inv.devices.length === 0) {
      throw new PtError('PT_ERR_TOPOLOGY_INVALID', `no PCI devices under ${p}/sys/bus/pci/devices`);
    }
    // The folder's name may hold anything a file name can; the topology name may not.
    const base = path.basename(path.resolve(p)).replace(/[^A-Za-z0-9._-]/g, '_');
    const { inventoryToTopology } = await import('../pci/snapshot.js');
    const topo = inventoryToTopology(
      inv,
      isSafeTopologyName(base) ? base : 'tree',
      await host.kernelInfo(),
      await host.hostUses(),
    );
    return await checked(topo, p);
  }
  const text = await readInputFile(p, MAX_TOPOLOGY_BYTES, 'topology', 'PT_ERR_TOPOLOGY_INVALID');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new PtError(
      'PT_ERR_TOPOLOGY_INVALID',
      `cannot parse ${p}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  return await checked(raw, p);
}

/** The validator (typebox's compiler) loads with the first topology: `list` never needs it. */
async function checked(raw: unknown, p: string): Promise<Topology> {
  const { validateTopology } = await import('../topology/format.js');
  let topo: Topology;
  try {
    topo = validateTopology(raw);
  } catch (e) {
    if (e instanceof PtError) throw e;
    // The validator met a shape it did not expect: still a bad input, not a bug of ours.
    throw new PtError(
      'PT_ERR_TOPOLOGY_INVALID',
      `invalid topology ${p}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  if (!isSafeTopologyName(topo.name))
    throw new PtError(
      'PT_ERR_TOPOLOGY_INVALID',
      `invalid topology ${p}: name must match ${TOPOLOGY_NAME.source} and not be . or .. (it names the simulated host's state folder)`,
    );
  return topo;
}
