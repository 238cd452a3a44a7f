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

/** Names whose source can be let go of while nobody looks names up, and read again later. */
export interface ReleasablePciIds extends PciIdNames {
  /**
   * Lets go of the source (and what was found in it) when no name was looked up since the
   * previous call; true when it did. A long-running agent calls it now and then: the text of
   * pci.ids is 1.3 MiB of its heap, used at start and when a page or a listing asks (issue 11).
   */
  releaseIfUnused(): boolean;
}

/**
 * Names whose source is read on first lookup: a command that looks no name up (`list` on an
 * empty host) reads nothing (issue 11: start-up). `load` runs again after a release.
 */
export function deferredPciIds(load: () => PciIdNames): ReleasablePciIds {
  let names: PciIdNames | undefined;
  let used = false;
  const n = (): PciIdNames => {
    used = true;
    return (names ??= load());
  };
  return {
    vendor: (v) => n().vendor(v),
    device: (v, d) => n().device(v, d),
    subsystem: (v, d, sv, sd) => n().subsystem(v, d, sv, sd),
    className: (c) => n().className(c),
    subclassName: (c, s) => n().subclassName(c, s),
    progIfName: (c, s, p) => n().progIfName(c, s, p),
    releaseIfUnused: () => {
      const release = !used && names !== undefined;
      if (release) names = undefined;
      used = false;
      return release;
    },
  };
}

/** No names at all (no pci.ids found): nothing to let go of. */
export const noPciIds: ReleasablePciIds = { ...emptyPciIds, releaseIfUnused: () => false };

/**
 * A copy of a name that does not keep the text it was cut from alive: V8 makes a slice of 13
 * characters or more a view into its parent, and a device's name outlives a release of the
 * 1.3 MiB pci.ids text it came from.
 */
function own(name: string): string {
  return name.length < 13 ? name : (JSON.parse(JSON.stringify(name)) as string);
}

/**
 * A name from text read as latin1 (one character per byte: reading pci.ids so takes a third of
 * the time UTF-8 decoding does), decoded as the UTF-8 it is. The decoded string is a copy.
 */
function fromUtf8Bytes(name: string): string {
  return /[\x80-\xff]/.test(name) ? Buffer.from(name, 'latin1').toString('utf8') : own(name);
}

/**
 * Names from pci.ids text, found on lookup: nothing is indexed but what is looked up. A vendor
 * is found by one search of the text, its device by a search inside the vendor's lines, a
 * subsystem inside the device's; each answer is kept. Parsing the whole file cost 38 ms of
 * every command's start, and indexing every vendor then parsing a large one (Intel's) still
 * 7-10 ms of a `list` (issue 11). Ids match in either case, as in lspci (pciutils' id_hex);
 * lookups take lower-case hex, as sysfs gives it.
 */
export function parsePciIds(text: string, opts: { utf8AsLatin1?: boolean } = {}): PciIdNames {
  const nameOf = opts.utf8AsLatin1 === true ? fromUtf8Bytes : own;
  let classesFrom: number | undefined;
  const vendors = new Map<string, Entry | null>();
  const devices = new Map<string, Entry | null>();
  const subsystems = new Map<string, string | undefined>();
  let classes: Map<string, string> | undefined;

  /** The vendor lines end where the class section (`C cc  name`, always last) begins. */
  const vendorsEnd = (): number =>
    (classesFrom ??= findLine(text, /(?:^|\n)C /, 0, text.length, 'C ') ?? text.length);

  const vendor = (v: string): Entry | null => {
    let e = vendors.get(v);
    if (e === undefined) {
      e = HEX4.test(v)
        ? entry(
            text,
            new RegExp(`(?:^|\\n)${v} `, 'i'),
            `${v} `,
            0,
            vendorsEnd(),
            4,
            VENDOR_END,
            nameOf,
          )
        : null;
      vendors.set(v, e);
    }
    return e;
  };

  const device = (v: string, d: string): Entry | null => {
    const key = `${v}:${d}`;
    let e = devices.get(key);
    if (e === undefined) {
      const ve = HEX4.test(d) ? vendor(v) : null;
      e =
        ve &&
        entry(text, new RegExp(`\\n\\t${d}`, 'i'), `\t${d}`, ve.eol, ve.end, 5, DEVICE_END, nameOf);
      devices.set(key, e);
    }
    return e;
  };

  const subsystem = (v: string, d: string, sv: string, sd: string): string | undefined => {
    const key = `${v}:${d}:${sv}:${sd}`;
    if (subsystems.has(key)) return subsystems.get(key);
    const de = HEX4.test(sv) && HEX4.test(sd) ? device(v, d) : null;
    const name =
      de === null
        ? undefined
        : entry(
            text,
            new RegExp(`\\n\\t\\t${sv}[^\\n]${sd}`, 'i'),
            `\t\t${sv} ${sd}`,
            de.eol,
            de.end,
            11,
            null,
            nameOf,
          )?.name;
    subsystems.set(key, name);
    return name;
  };

  const classMap = (): Map<string, string> =>
    (classes ??= parseClasses(text.slice(vendorsEnd()), nameOf));

  return {
    vendor: (v) => vendor(v)?.name,
    device: (v, d) => device(v, d)?.name,
    subsystem,
    className: (c) => classMap().get(c.slice(0, 2)),
    subclassName: (c, s) => classMap().get(`${c}${s}`),
    progIfName: (c, s, p) => classMap().get(`${c}${s}${p}`),
  };
}

/** A line found for an id: its name, where it ends, and where the lines under it end. */
interface Entry {
  name: string;
  eol: number;
  end: number;
}

/** Lookups take the lower-case hex sysfs gives; the file's ids match in either case. */
const HEX4 = /^[0-9a-f]{4}$/;
/** A vendor's lines end at the next top-level line; comments and empty lines do not end them. */
const VENDOR_END = /\n[^\t#\n]/;
/** A device's subsystem lines end at the next line that is neither a subsystem nor a comment. */
const DEVICE_END = /\n(?:[^\t#\n]|\t[^\t])/;

/**
 * The first line in [from, to) that `re` matches, its name (after `nameAt` characters) and,
 * with `endRe`, where the lines under it end. `from` is 0 or the newline ending a line.
 */
function entry(
  text: string,
  re: RegExp,
  literal: string,
  from: number,
  to: number,
  nameAt: number,
  endRe: RegExp | null,
  name: (s: string) => string,
): Entry | null {
  const pos = findLine(text, re, from, to, literal);
  if (pos === undefined) return null;
  let eol = text.indexOf('\n', pos);
  if (eol < 0) eol = text.length;
  const end = endRe === null ? to : (findLine(text, endRe, eol, to) ?? to);
  return { name: name(text.slice(pos + nameAt, eol).trim()), eol, end };
}

/**
 * Where the first line in [from, to) that `re` matches begins. `re` matches a line with the
 * newline before it, or at the start of the text. `literal`, the line's start as pci.ids writes
 * it (lower-case ids, one space), is looked for first: a search for a fixed string is several
 * times faster than the case-blind pattern, which runs only when it finds nothing. The search
 * reads no further than `to` (a sliced string is not a copy).
 */
function findLine(
  text: string,
  re: RegExp,
  from: number,
  to: number,
  literal?: string,
): number | undefined {
  if (literal !== undefined) {
    if (from === 0 && text.startsWith(literal)) return 0;
    const at = text.indexOf(`\n${literal}`, from);
    if (at >= 0 && at + 1 + literal.length <= to) return at + 1;
  }
  const m = re.exec(text.slice(from, to));
  if (m === null) return undefined;
  return from + m.index + (text.charCodeAt(from + m.index) === 0x0a ? 1 : 0);
}

/** The class section: `C cc  name`, then `\tss  name` and `\t\tpp  name` under it. */
function parseClasses(text: string, name: (s: string) => string): Map<string, string> {
  const classes = new Map<string, string>();
  let cls = '';
  let sub = '';
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('C ')) {
      cls = line.slice(2, 4).toLowerCase();
      classes.set(cls, name(line.slice(4).trim()));
    } else if (line.startsWith('\t\t')) {
      classes.set(`${cls}${sub}${line.slice(2, 4).toLowerCase()}`, name(line.slice(4).trim()));
    } else if (line.startsWith('\t')) {
      sub = line.slice(1, 3).toLowerCase();
      classes.set(`${cls}${sub}`, name(line.slice(3).trim()));
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
