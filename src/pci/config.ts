/** The standard 64-byte PCI configuration header: enough for lspci's identity fields. */
export interface ConfigFields {
  vendor: string;
  device: string;
  classId: string;
  revision: string;
  subsystemVendor: string;
  subsystemDevice: string;
  bridge: boolean;
}

export function buildConfigHeader(f: ConfigFields): Uint8Array {
  const b = new Uint8Array(64);
  const dv = new DataView(b.buffer);
  dv.setUint16(0x00, parseInt(f.vendor, 16), true);
  dv.setUint16(0x02, parseInt(f.device, 16), true);
  dv.setUint8(0x08, parseInt(f.revision, 16));
  dv.setUint8(0x09, parseInt(f.classId.slice(4, 6), 16));
  dv.setUint8(0x0a, parseInt(f.classId.slice(2, 4), 16));
  dv.setUint8(0x0b, parseInt(f.classId.slice(0, 2), 16));
  // Header type 1 is a PCI-to-PCI bridge; its subsystem ids live in a capability instead.
  dv.setUint8(0x0e, f.bridge ? 1 : 0);
  if (!f.bridge) {
    dv.setUint16(0x2c, parseInt(f.subsystemVendor, 16), true);
    dv.setUint16(0x2e, parseInt(f.subsystemDevice, 16), true);
  }
  return b;
}

export function headerType(config: Uint8Array): number {
  return (config[0x0e] ?? 0) & 0x7f;
}
