import { PtError } from '../errors.js';
import { DRIVER_NAME_RE, MODULE_NAME_RE } from '../host/port.js';
import { ADDRESS_RE } from '../pci/address.js';

/**
 * Parses what a user can collect on any Linux server without passthru, one line at a time (the
 * reader streams; nothing here holds more than one record): `lspci -vvnn -k -D`,
 * `lspci -vmm -nnk -D` and `find /sys/kernel/iommu_groups -type l`. Each line's kind is decided
 * by its content, so one file may hold all three, concatenated, in any order.
 */

/** Where a line came from, for error messages a user can act on. */
export interface LineRef {
  file: string;
  line: number;
}

/** What the dumps say about one function. Absent: the dump did not say. */
export interface ParsedFunction {
  address: string;
  classId?: string;
  progIf?: string;
  vendor?: string;
  device?: string;
  subsystemVendor?: string;
  subsystemDevice?: string;
  revision?: string;
  driver?: string;
  modules?: string[];
  numaNode?: number;
  iommuGroup?: number;
  label?: string;
  /** From `Bus: primary=.., secondary=.., subordinate=..` (bridges). */
  busRange?: { primary: number; secondary: number; subordinate: number };
  /** True once a `-vv` record's capability list was readable (lspci ran as root). */
  capsRead?: boolean;
  capsDenied?: boolean;
  express?: boolean;
  flr?: boolean;
  afFlr?: boolean;
  /** Power Management capability present and NoSoftRst- (the kernel's `pm` reset). */
  pmReset?: boolean;
  sriov?: {
    initialVfs?: number;
    totalVfs?: number;
    numVfs?: number;
    vfOffset?: number;
    vfStride?: number;
    vfDevice?: string;
  };
  dsn?: string;
  /** First line of the first record that named this function. */
  at: LineRef;
  /** Which inputs described it. */
  seenIn: Set<'lspci-vv' | 'lspci-vmm' | 'iommu-groups'>;
}

export interface ParseResult {
  functions: Map<string, ParsedFunction>;
  kinds: Set<'lspci-vv' | 'lspci-vmm' | 'iommu-groups'>;
  /** Lines skipped on purpose (comments, lspci's own warnings), counted for the summary. */
  skipped: number;
}

/** A line this long is not lspci output; refusing it keeps a hostile input's memory bounded. */
export const MAX_LINE_CHARS = 4096;
/** Far above any real server (a 4-socket host with every VF enabled has a few thousand). */
export const MAX_FUNCTIONS = 65536;
const MAX_GROUP = 2 ** 31 - 1;

function fail(at: LineRef, msg: string): never {
  throw new PtError('PT_ERR_IMPORT_INVALID', `${at.file}:${at.line}: ${msg}`, {
    details: { file: at.file, line: at.line },
  });
}

/** Shows a bad line safely: bounded and with control characters escaped. */
function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}

const HEADER_RE =
  /^(\S+) (.*) \[([0-9a-f]{4})\]: (.*)\[([0-9a-f]{4}):([0-9a-f]{4})\](?: \(rev ([0-9a-f]{2})\))?(?: \(prog-if ([0-9a-f]{2})(?: \[.*\])?\))?$/;
const SHORT_ADDRESS_RE = /^[0-9a-f]{2}:[01][0-9a-f]\.[0-7] /;
const GROUP_LINE_RE = /^\/sys\/kernel\/iommu_groups\/([^/]*)\/devices\/([^/]*)$/;
const VMM_RE = /^([A-Za-z][A-Za-z0-9]*):\t(.*)$/;

function parseAddress(text: string, at: LineRef): string {
  if (!ADDRESS_RE.test(text)) fail(at, `not a PCI address (dddd:bb:dd.f): ${quote(text)}`);
  return text;
}

function num(text: string, at: LineRef, what: string, max: number, radix = 10): number {
  const re = radix === 16 ? /^[0-9a-f]{1,8}$/ : /^[0-9]{1,10}$/;
  if (!re.test(text)) fail(at, `${what} is not a number: ${quote(text)}`);
  const n = parseInt(text, radix);
  if (n > max) fail(at, `${what} ${n} is over ${max}`);
  return n;
}

function driverName(text: string, at: LineRef): string {
  if (!DRIVER_NAME_RE.test(text) || text === '.' || text === '..')
    fail(at, `not a kernel driver name: ${quote(text)}`);
  return text;
}

function moduleNames(text: string, at: LineRef): string[] {
  const out = text.split(/,\s*/).filter((m) => m !== '');
  for (const m of out) if (!MODULE_NAME_RE.test(m)) fail(at, `not a module name: ${quote(m)}`);
  return out;
}

/** `Name [xxxx]` as `-vmm -nn` prints it: the id, or a clear error. */
function bracketed(text: string, digits: number, at: LineRef, what: string): string {
  const m = /\[([0-9a-f]+)\]$/.exec(text);
  if (m?.[1]?.length !== digits)
    fail(at, `${what} has no [${'x'.repeat(digits)}] id (run lspci with -nn): ${quote(text)}`);
  return m[1];
}

type Kind = 'lspci-vv' | 'lspci-vmm' | 'iommu-groups';

/**
 * The streaming parser: feed it lines in order with {@link line}, then call {@link finish}.
 * Memory is one entry per PCI function (bounded by {@link MAX_FUNCTIONS}) plus the record being
 * read.
 */
export class DumpParser {
  private readonly functions = new Map<string, ParsedFunction>();
  private readonly kinds = new Set<Kind>();
  private skipped = 0;
  /** The record being read: a `-vv` block or a `-vmm` block. */
  private current: {
    kind: 'lspci-vv' | 'lspci-vmm';
    fn: ParsedFunction;
    seen: Set<string>;
  } | null = null;
  /** The `-vv` capability whose indented lines follow. */
  private cap: 'express' | 'pm' | 'af' | 'sriov' | 'other' = 'other';
  private file = '';
  private readonly seenVv = new Set<string>();
  private readonly seenVmm = new Set<string>();

  line(text: string, at: LineRef): void {
    if (at.file !== this.file) {
      // A new file ends any record the previous one left open (a truncated file).
      this.current = null;
      this.file = at.file;
    }
    if (text.length > MAX_LINE_CHARS) fail(at, `line longer than ${MAX_LINE_CHARS} characters`);
    // Tabs are lspci's field separators; any other control character is not lspci output.
    // eslint-disable-next-line no-control-regex -- finding control characters is the point
    if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(text.replace(/\r$/, '')))
      fail(at, 'control characters: this is not lspci or find output');
    const t = text.replace(/\r$/, '');
    if (t.trim() === '') {
      this.current = null;
      return;
    }
    if (t.startsWith('#') || t.startsWith('lspci: ') || t.startsWith('pcilib: ')) {
      // Comments a user adds between dumps, and lspci's warnings when stderr was captured too.
      this.skipped++;
      return;
    }
    if (t.startsWith('/')) {
      this.current = null;
      this.groupLine(t, at);
      return;
    }
    if (t.startsWith('\t')) {
      if (this.current?.kind !== 'lspci-vv')
        fail(at, `indented line outside an lspci -vv record: ${quote(t)}`);
      this.vvField(this.current.fn, t, at);
      return;
    }
    const vmm = VMM_RE.exec(t);
    if (vmm) {
      this.vmmField(vmm[1] ?? '', vmm[2] ?? '', at);
      return;
    }
    this.vvHeader(t, at);
  }

  finish(): ParseResult {
    this.current = null;
    return { functions: this.functions, kinds: this.kinds, skipped: this.skipped };
  }

  private fn(address: string, kind: Kind, at: LineRef): ParsedFunction {
    this.kinds.add(kind);
    let f = this.functions.get(address);
    if (f === undefined) {
      if (this.functions.size >= MAX_FUNCTIONS)
        fail(at, `more than ${MAX_FUNCTIONS} PCI functions: not a dump of one server`);
      f = { address, at, seenIn: new Set() };
      this.functions.set(address, f);
    }
    f.seenIn.add(kind);
    return f;
  }

  /** Two dumps of one server agree; when they do not, the user mixed up servers or times. */
  private set<K extends keyof ParsedFunction>(
    f: ParsedFunction,
    key: K,
    value: ParsedFunction[K],
    at: LineRef,
  ): void {
    const old = f[key];
    if (old !== undefined && JSON.stringify(old) !== JSON.stringify(value))
      fail(
        at,
        `${f.address} ${key} is ${JSON.stringify(value)} here but ${JSON.stringify(old)} in an earlier input (${f.at.file}:${f.at.line}): are these dumps of one server, taken together?`,
      );
    f[key] = value;
  }

  private groupLine(t: string, at: LineRef): void {
    const m = GROUP_LINE_RE.exec(t);
    if (!m)
      fail(
        at,
        `not a line of \`find /sys/kernel/iommu_groups -type l\` (/sys/kernel/iommu_groups/N/devices/dddd:bb:dd.f): ${quote(t)}`,
      );
    const group = num(m[1] ?? '', at, 'IOMMU group', MAX_GROUP);
    const address = parseAddress(m[2] ?? '', at);
    this.set(this.fn(address, 'iommu-groups', at), 'iommuGroup', group, at);
  }

  private vvHeader(t: string, at: LineRef): void {
    if (SHORT_ADDRESS_RE.test(t))
      fail(at, 'address without a PCI domain: run lspci with -D (lspci -vvnn -k -D)');
    const m = HEADER_RE.exec(t);
    if (!m) {
      if (/^\S+ [^[]*: /.test(t) && ADDRESS_RE.test(t.split(' ')[0] ?? ''))
        fail(at, 'no [vvvv:dddd] ids: run lspci with -nn (lspci -vvnn -k -D)');
      fail(at, `not lspci -vvnn -k -D, lspci -vmm -nnk -D or find output: ${quote(t)}`);
    }
    const address = parseAddress(m[1] ?? '', at);
    const f = this.fn(address, 'lspci-vv', at);
    if (this.seenVv.has(address)) fail(at, `${address} appears twice in lspci -vv output`);
    this.seenVv.add(address);
    this.set(f, 'classId', m[3] ?? '', at);
    this.set(f, 'vendor', m[5] ?? '', at);
    this.set(f, 'device', m[6] ?? '', at);
    this.set(f, 'revision', m[7] ?? '00', at);
    this.set(f, 'progIf', m[8] ?? '00', at);
    this.current = { kind: 'lspci-vv', fn: f, seen: new Set() };
    this.cap = 'other';
  }

  private vvField(f: ParsedFunction, t: string, at: LineRef): void {
    if (t.startsWith('\t\t')) {
      this.capLine(f, t.trim(), at);
      return;
    }
    const body = t.slice(1);
    const colon = body.indexOf(': ');
    const key = colon < 0 ? body : body.slice(0, colon);
    const value = colon < 0 ? '' : body.slice(colon + 2);
    this.cap = 'other';
    switch (key) {
      case 'Subsystem': {
        const m = /\[([0-9a-f]{4}):([0-9a-f]{4})\]$/.exec(value);
        if (!m) fail(at, `Subsystem has no [vvvv:dddd] ids (run lspci with -nn): ${quote(value)}`);
        this.set(f, 'subsystemVendor', m[1] ?? '', at);
        this.set(f, 'subsystemDevice', m[2] ?? '', at);
        return;
      }
      case 'NUMA node':
        this.set(f, 'numaNode', num(value, at, 'NUMA node', 4095), at);
        return;
      case 'IOMMU group':
        this.set(f, 'iommuGroup', num(value, at, 'IOMMU group', MAX_GROUP), at);
        return;
      case 'Kernel driver in use':
        this.set(f, 'driver', driverName(value, at), at);
        return;
      case 'Kernel modules':
        this.set(f, 'modules', moduleNames(value, at), at);
        return;
      case 'DeviceName':
        this.set(f, 'label', value.slice(0, 256), at);
        return;
      case 'Bus': {
        const m = /^primary=([0-9a-f]{2}), secondary=([0-9a-f]{2}), subordinate=([0-9a-f]{2})/.exec(
          value,
        );
        if (!m) fail(at, `Bus line without primary/secondary/subordinate: ${quote(value)}`);
        this.set(
          f,
          'busRange',
          {
            primary: parseInt(m[1] ?? '', 16),
            secondary: parseInt(m[2] ?? '', 16),
            subordinate: parseInt(m[3] ?? '', 16),
          },
          at,
        );
        return;
      }
      case 'Capabilities':
        this.capHeader(f, value);
        return;
      default:
        // Control, Status, Latency, Interrupt, Region, ...: not part of a topology.
        return;
    }
  }

  private capHeader(f: ParsedFunction, value: string): void {
    if (value.startsWith('<access denied>')) {
      f.capsDenied = true;
      return;
    }
    f.capsRead = true;
    const name = value.replace(/^\[[0-9a-f]+(?: v\d+)?\] /, '');
    if (name.startsWith('Express ')) {
      f.express = true;
      this.cap = 'express';
    } else if (name.startsWith('Power Management')) this.cap = 'pm';
    else if (name.startsWith('PCI Advanced Features')) this.cap = 'af';
    else if (name.startsWith('Single Root I/O Virtualization')) {
      f.sriov ??= {};
      this.cap = 'sriov';
    } else if (name.startsWith('Device Serial Number ')) {
      f.dsn = name.slice('Device Serial Number '.length).slice(0, 64);
      this.cap = 'other';
    } else this.cap = 'other';
  }

  private capLine(f: ParsedFunction, t: string, at: LineRef): void {
    switch (this.cap) {
      case 'express':
        // DevCap: ... FLReset+ (lspci prints it for endpoints with Function Level Reset).
        if (t.startsWith('DevCap:') || /^ExtTag[+-] /.test(t)) {
          if (/\bFLReset\+/.test(t)) f.flr = true;
        }
        return;
      case 'af':
        if (t.startsWith('AFCap:') && /\bFLR\+/.test(t)) f.afFlr = true;
        return;
      case 'pm':
        // The kernel's pm reset needs D3hot to reset the function: NoSoftRst- (pci_pm_reset).
        if (t.startsWith('Status: D') && /\bNoSoftRst-/.test(t)) f.pmReset = true;
        return;
      case 'sriov': {
        const s = (f.sriov ??= {});
        const counts = /^Initial VFs: (\d+), Total VFs: (\d+), Number of VFs: (\d+)/.exec(t);
        if (counts) {
          s.initialVfs = num(counts[1] ?? '', at, 'Initial VFs', 65535);
          s.totalVfs = num(counts[2] ?? '', at, 'Total VFs', 65535);
          s.numVfs = num(counts[3] ?? '', at, 'Number of VFs', 65535);
          return;
        }
        const off = /^VF offset: (\d+), stride: (\d+), Device ID: ([0-9a-f]{4})$/.exec(t);
        if (off) {
          s.vfOffset = num(off[1] ?? '', at, 'VF offset', 65535);
          s.vfStride = num(off[2] ?? '', at, 'VF stride', 65535);
          s.vfDevice = off[3] ?? '';
        }
        return;
      }
      default:
        return;
    }
  }

  private vmmField(key: string, value: string, at: LineRef): void {
    if (key === 'Slot') {
      const address = parseAddress(value, at);
      if (this.seenVmm.has(address)) fail(at, `${address} appears twice in lspci -vmm output`);
      this.seenVmm.add(address);
      this.current = { kind: 'lspci-vmm', fn: this.fn(address, 'lspci-vmm', at), seen: new Set() };
      return;
    }
    if (this.current?.kind !== 'lspci-vmm')
      fail(at, `lspci -vmm field ${key} before the record's Slot line: ${quote(key)}`);
    const f = this.current.fn;
    switch (key) {
      case 'Class':
        this.set(f, 'classId', bracketed(value, 4, at, 'Class'), at);
        return;
      case 'Vendor':
        this.set(f, 'vendor', bracketed(value, 4, at, 'Vendor'), at);
        return;
      case 'Device':
        this.set(f, 'device', bracketed(value, 4, at, 'Device'), at);
        return;
      case 'SVendor':
        this.set(f, 'subsystemVendor', bracketed(value, 4, at, 'SVendor'), at);
        return;
      case 'SDevice':
        this.set(f, 'subsystemDevice', bracketed(value, 4, at, 'SDevice'), at);
        return;
      case 'Rev':
        if (!/^[0-9a-f]{2}$/.test(value)) fail(at, `Rev is not 2 hex digits: ${quote(value)}`);
        this.set(f, 'revision', value, at);
        return;
      case 'ProgIf':
        if (!/^[0-9a-f]{2}$/.test(value)) fail(at, `ProgIf is not 2 hex digits: ${quote(value)}`);
        this.set(f, 'progIf', value, at);
        return;
      case 'Driver':
        this.set(f, 'driver', driverName(value, at), at);
        return;
      case 'Module': {
        // -vmm prints one Module line per module (-vv one line with all): the -vv list, when
        // there is one, already says the same.
        if (!this.current.seen.has('Module') && f.modules !== undefined)
          this.current.seen.add('vv');
        this.current.seen.add('Module');
        if (!this.current.seen.has('vv'))
          f.modules = [...(f.modules ?? []), ...moduleNames(value, at)];
        else moduleNames(value, at);
        return;
      }
      case 'NUMANode':
        this.set(f, 'numaNode', num(value, at, 'NUMANode', 4095), at);
        return;
      case 'IOMMUGroup':
        this.set(f, 'iommuGroup', num(value, at, 'IOMMUGroup', MAX_GROUP), at);
        return;
      case 'DeviceName':
        this.set(f, 'label', value.slice(0, 256), at);
        return;
      default:
        // PhySlot and fields of later pciutils: not part of a topology.
        return;
    }
  }
}
