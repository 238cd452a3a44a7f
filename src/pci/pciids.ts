/**
 * Names from the pci.ids database (the file lspci uses). Parsed from text handed in by the
 * caller, so this module reads no files itself.
 */
export interface PciIdNames {
  vendor(vendorId: string): string | undefined;
  device(vendorId: string, deviceId: string): string | undefined;
  subsystem(
    vendorId: string,
    deviceId: string,
    subVendor: string,
    subDevice: string,
  ): string | undefined;
  className(cls: string): string | undefined;
  subclassName(cls: string, sub: string): string | undefined;
  progIfName(cls: string, sub: string, progIf: string): string | undefined;
}

export const emptyPciIds: PciIdNames = {
  vendor: () => undefined,
  device: () => undefined,
  subsystem: () => undefined,
  className: () => undefined,
  subclassName: () => undefined,
  progIfName: () => undefined,
};

/**
 * Names from pci.ids text, indexed on first lookup: nothing is parsed when nothing is looked
 * up (`list` on an empty host), and a lookup parses only the vendor it names. Parsing the whole
 * file eagerly cost 38 ms of every command's start (issue 11). The first lookup finds the
 * vendor lines (one scan over the text, no per-line strings); a vendor's devices and
 * subsystems are parsed when one of them is first asked for; the class section when a class is.
 */
export function parsePciIds(text: string): PciIdNames {
  let vendorAt: Map<string, number> | null = null;
  let classesFrom = -1;
  const blocks = new Map<string, VendorBlock>();
  let classes: Map<string, string> | null = null;

  const index = (): Map<string, number> => {
    if (vendorAt !== null) return vendorAt;
    const at = new Map<string, number>();
    for (let pos = 0; pos < text.length;) {
      let eol = text.indexOf('\n', pos);
      if (eol < 0) eol = text.length;
      const c = text.charCodeAt(pos);
      if (c === 0x43 /* C */ && text.charCodeAt(pos + 1) === 0x20) {
        // The class section comes last: vendors end where it begins.
        classesFrom = pos;
        break;
      }
      if (isHex(c) && eol - pos > 4 && text.charCodeAt(pos + 4) === 0x20) {
        const id = text.slice(pos, pos + 4);
        if (HEX4.test(id)) at.set(id.toLowerCase(), pos);
      }
      pos = eol + 1;
    }
    vendorAt = at;
    return at;
  };

  const block = (vendor: string): VendorBlock | undefined => {
    const known = blocks.get(vendor);
    if (known !== undefined) return known;
    const pos = index().get(vendor);
    if (pos === undefined) return undefined;
    const b = parseVendorBlock(text, pos);
    blocks.set(vendor, b);
    return b;
  };

  const classMap = (): Map<string, string> => {
    if (classes !== null) return classes;
    index();
    classes = classesFrom < 0 ? new Map() : parseClasses(text.slice(classesFrom));
    return classes;
  };

  return {
    vendor: (v) => block(v)?.name,
    device: (v, d) => block(v)?.devices.get(d),
    subsystem: (v, d, sv, sd) => block(v)?.subsystems.get(`${d}:${sv}:${sd}`),
    className: (c) => classMap().get(c.slice(0, 2)),
    subclassName: (c, s) => classMap().get(`${c}${s}`),
    progIfName: (c, s, p) => classMap().get(`${c}${s}${p}`),
  };
}

interface VendorBlock {
  name: string;
  devices: Map<string, string>;
  /** Keyed `device:subvendor:subdevice`. */
  subsystems: Map<string, string>;
}

const HEX4 = /^[0-9a-fA-F]{4}$/;

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** The vendor line at `pos` and its indented lines, up to the next top-level line. */
function parseVendorBlock(text: string, pos: number): VendorBlock {
  let eol = text.indexOf('\n', pos);
  if (eol < 0) eol = text.length;
  const b: VendorBlock = {
    name: text.slice(pos + 4, eol).trim(),
    devices: new Map(),
    subsystems: new Map(),
  };
  let device = '';
  for (pos = eol + 1; pos < text.length; pos = eol + 1) {
    eol = text.indexOf('\n', pos);
    if (eol < 0) eol = text.length;
    const line = text.slice(pos, eol);
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('\t\t')) {
      const sv = line.slice(2, 6).toLowerCase();
      const sd = line.slice(7, 11).toLowerCase();
      b.subsystems.set(`${device}:${sv}:${sd}`, line.slice(11).trim());
    } else if (line.startsWith('\t')) {
      device = line.slice(1, 5).toLowerCase();
      b.devices.set(device, line.slice(5).trim());
    } else break;
  }
  return b;
}

/** The class section: `C cc  name`, then `\tss  name` and `\t\tpp  name` under it. */
function parseClasses(text: string): Map<string, string> {
  const classes = new Map<string, string>();
  let cls = '';
  let sub = '';
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('C ')) {
      cls = line.slice(2, 4).toLowerCase();
      classes.set(cls, line.slice(4).trim());
    } else if (line.startsWith('\t\t')) {
      classes.set(`${cls}${sub}${line.slice(2, 4).toLowerCase()}`, line.slice(4).trim());
    } else if (line.startsWith('\t')) {
      sub = line.slice(1, 3).toLowerCase();
      classes.set(`${cls}${sub}`, line.slice(3).trim());
    } else {
      // Any other top-level section after the classes (there is none today) ends them.
      break;
    }
  }
  return classes;
}

/** Where distributions install pci.ids, in the order lspci's builds look. */
export const PCI_IDS_PATHS = [
  '/usr/share/misc/pci.ids',
  '/usr/share/hwdata/pci.ids',
  '/usr/share/pci.ids',
];
