/**
 * The PCIe Device Serial Number (extended capability 0x0003): a 64-bit number the card carries
 * (often derived from its MAC or burnt in at the factory), so a claim can tell two cards of one
 * model apart. It lives past offset 0x100 of config space, which only root can read and which
 * costs a config cycle per dword on real hardware: read it at claim and verify time only.
 */

/** As lspci -vv prints it: eight bytes, most significant first, `-` between. */
export const DEVICE_SERIAL_RE = /^[0-9a-f]{2}(-[0-9a-f]{2}){7}$/;

export const DSN_CAP_ID = 0x0003;
const EXT_CAP_START = 0x100;
const EXT_CAP_END = 0x1000;

/** Reads `length` bytes of config space at `offset`; null when they cannot be read. */
export type ConfigReader = (offset: number, length: number) => Promise<Uint8Array | null>;

/** The serial as lspci prints it, from the capability's lower and upper dwords. */
export function formatDeviceSerial(lower: number, upper: number): string {
  const bytes = [
    upper >>> 24,
    upper >>> 16,
    upper >>> 8,
    upper,
    lower >>> 24,
    lower >>> 16,
    lower >>> 8,
    lower,
  ];
  return bytes.map((b) => (b & 0xff).toString(16).padStart(2, '0')).join('-');
}

/**
 * Walks the extended capability list from 0x100 and returns the Device Serial Number, or null
 * when there is none or config space past the header cannot be read (not root, a conventional
 * PCI device with 256 bytes). A list that loops or points below 0x100 ends the walk.
 */
export async function findDeviceSerial(read: ConfigReader): Promise<string | null> {
  const seen = new Set<number>();
  let at = EXT_CAP_START;
  while (at >= EXT_CAP_START && at + 4 <= EXT_CAP_END && !seen.has(at)) {
    seen.add(at);
    const h = await read(at, 4);
    if (h === null || h.length < 4) return null;
    const header = new DataView(h.buffer, h.byteOffset, 4).getUint32(0, true);
    // All ones: the device is gone (or the function does not answer); zero: no capabilities.
    if (header === 0 || header === 0xffffffff) return null;
    if ((header & 0xffff) === DSN_CAP_ID) {
      const b = await read(at + 4, 8);
      if (b === null || b.length < 8) return null;
      const dv = new DataView(b.buffer, b.byteOffset, 8);
      return formatDeviceSerial(dv.getUint32(0, true), dv.getUint32(4, true));
    }
    at = (header >>> 20) & 0xffc;
  }
  return null;
}
