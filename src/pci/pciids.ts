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

/** Parses pci.ids text in one pass; lookups are map reads afterwards. */
export function parsePciIds(text: string): PciIdNames {
  const vendors = new Map<string, string>();
  const devices = new Map<string, string>();
  const subsystems = new Map<string, string>();
  const classes = new Map<string, string>();
  let vendor = '';
  let device = '';
  let inClasses = false;
  let cls = '';
  let sub = '';
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('C ')) {
      inClasses = true;
      cls = line.slice(2, 4).toLowerCase();
      classes.set(cls, line.slice(4).trim());
      continue;
    }
    if (inClasses) {
      if (line.startsWith('\t\t')) {
        classes.set(`${cls}${sub}${line.slice(2, 4).toLowerCase()}`, line.slice(4).trim());
      } else if (line.startsWith('\t')) {
        sub = line.slice(1, 3).toLowerCase();
        classes.set(`${cls}${sub}`, line.slice(3).trim());
      } else {
        // Any other top-level section after the classes (there is none today) ends them.
        inClasses = false;
      }
      continue;
    }
    if (line.startsWith('\t\t')) {
      const sv = line.slice(2, 6).toLowerCase();
      const sd = line.slice(7, 11).toLowerCase();
      subsystems.set(`${vendor}:${device}:${sv}:${sd}`, line.slice(11).trim());
    } else if (line.startsWith('\t')) {
      device = line.slice(1, 5).toLowerCase();
      devices.set(`${vendor}:${device}`, line.slice(5).trim());
    } else if (/^[0-9a-fA-F]{4} /.test(line)) {
      vendor = line.slice(0, 4).toLowerCase();
      vendors.set(vendor, line.slice(4).trim());
    }
  }
  return {
    vendor: (v) => vendors.get(v),
    device: (v, d) => devices.get(`${v}:${d}`),
    subsystem: (v, d, sv, sd) => subsystems.get(`${v}:${d}:${sv}:${sd}`),
    className: (c) => classes.get(c.slice(0, 2)),
    subclassName: (c, s) => classes.get(`${c}${s}`),
    progIfName: (c, s, p) => classes.get(`${c}${s}${p}`),
  };
}

/** Where distributions install pci.ids, in the order lspci's builds look. */
export const PCI_IDS_PATHS = [
  '/usr/share/misc/pci.ids',
  '/usr/share/hwdata/pci.ids',
  '/usr/share/pci.ids',
];
