import { PtError } from '../errors.js';

/** A validated PCI function address, `dddd:bb:dd.f` in lowercase hex. Only {@link parsePciAddress} makes one. */
export type PciAddress = string & { readonly __brand: 'PciAddress' };

// Domains are 4 hex digits, except Intel VMD domains which Linux names with 5 (10000:...).
// Device is 0x00-0x1f, function 0-7: anything else cannot exist on a PCI bus.
export const ADDRESS_RE = /^([0-9a-f]{4,5}):([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$/;

export function isPciAddress(input: string): input is PciAddress {
  return ADDRESS_RE.test(input);
}

export function parsePciAddress(input: unknown): PciAddress {
  if (typeof input !== 'string') {
    throw new PtError('PT_ERR_INVALID_ADDRESS', 'PCI address must be a string');
  }
  const lowered = input.trim().toLowerCase();
  if (ADDRESS_RE.test(lowered)) return lowered as PciAddress;
  const hint = /^[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/.test(lowered)
    ? ` (did you mean 0000:${lowered}?)`
    : '';
  throw new PtError(
    'PT_ERR_INVALID_ADDRESS',
    `invalid PCI address ${JSON.stringify(input.slice(0, 64))}: expected dddd:bb:dd.f in hex${hint}`,
    { details: { input: input.slice(0, 64) } },
  );
}

export interface AddressParts {
  domain: number;
  bus: number;
  device: number;
  fn: number;
}

export function addressParts(addr: PciAddress): AddressParts {
  const m = ADDRESS_RE.exec(addr);
  if (!m) throw new PtError('PT_ERR_INVALID_ADDRESS', `invalid PCI address ${addr}`);
  return {
    domain: parseInt(m[1] ?? '0', 16),
    bus: parseInt(m[2] ?? '0', 16),
    device: parseInt(m[3] ?? '0', 16),
    fn: parseInt(m[4] ?? '0', 16),
  };
}

export function formatAddress(p: AddressParts): PciAddress {
  const h = (n: number, w: number): string => n.toString(16).padStart(w, '0');
  return parsePciAddress(`${h(p.domain, 4)}:${h(p.bus, 2)}:${h(p.device, 2)}.${p.fn}`);
}

/** Routing id (bus << 8 | devfn), the unit SR-IOV offsets and strides count in. */
export function routingId(addr: PciAddress): number {
  const p = addressParts(addr);
  return (p.bus << 8) | (p.device << 3) | p.fn;
}

export function fromRoutingId(domain: number, rid: number): PciAddress {
  return formatAddress({ domain, bus: (rid >> 8) & 0xff, device: (rid >> 3) & 0x1f, fn: rid & 7 });
}

export function compareAddresses(a: PciAddress, b: PciAddress): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Harvester names objects `<node>-<address without ':' and '.'>`. */
export function compactAddress(addr: PciAddress): string {
  return addr.replace(/[:.]/g, '');
}
