/** One line of /proc/self/mountinfo (see proc(5)). */
export interface MountInfo {
  id: number;
  parent: number;
  major: number;
  minor: number;
  /** The directory of the filesystem that forms this mount's root (differs for bind mounts). */
  root: string;
  mountPoint: string;
  fstype: string;
  source: string;
  superOptions: string;
}

export interface ParsedMountinfo {
  mounts: MountInfo[];
  /** Lines that do not have the mountinfo shape: a mount passthru cannot reason about. */
  bad: string[];
}

/** The kernel escapes space, tab, newline and backslash in paths as \ooo octal. */
export function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The inverse of unescapeOctal for the characters the kernel escapes (for tests and echo). */
export function escapeOctal(s: string): string {
  return s.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

export function parseMountinfo(text: string): ParsedMountinfo {
  const mounts: MountInfo[] = [];
  const bad: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const f = line.split(' ');
    // Optional fields run up to a lone "-"; the three fields after it are fixed.
    const sep = f.indexOf('-', 6);
    const dev = /^(\d+):(\d+)$/.exec(f[2] ?? '');
    const [id, parent, root, mountPoint] = [f[0], f[1], f[3], f[4]];
    const [fstype, source, superOptions] = [f[sep + 1], f[sep + 2], f[sep + 3]];
    if (
      sep < 0 ||
      dev === null ||
      !/^\d+$/.test(id ?? '') ||
      !/^\d+$/.test(parent ?? '') ||
      root === undefined ||
      mountPoint === undefined ||
      fstype === undefined ||
      source === undefined ||
      superOptions === undefined
    ) {
      bad.push(line);
      continue;
    }
    mounts.push({
      id: Number(id),
      parent: Number(parent),
      major: Number(dev[1]),
      minor: Number(dev[2]),
      root: unescapeOctal(root),
      mountPoint: unescapeOctal(mountPoint),
      fstype: unescapeOctal(fstype),
      source: unescapeOctal(source),
      superOptions: unescapeOctal(superOptions),
    });
  }
  return { mounts, bad };
}

/** Splits mount options at commas; `key=value` pairs become entries, flags map to ''. */
export function mountOptions(opts: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const o of opts.split(',')) {
    if (o === '') continue;
    const eq = o.indexOf('=');
    if (eq < 0) out.set(o, '');
    else out.set(o.slice(0, eq), o.slice(eq + 1));
  }
  return out;
}

/** overlayfs lowerdir lists: colon-separated, with `\:` for a colon inside a path. */
export function splitLowerdirs(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value.charAt(i);
    if (c === '\\' && i + 1 < value.length) {
      cur += value.charAt(i + 1);
      i++;
    } else if (c === ':') {
      if (cur !== '') out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  if (cur !== '') out.push(cur);
  return out;
}

/**
 * The visible mount whose mount point holds `file` (the longest prefix), ignoring the mounts in
 * `except`. Mounts later in the table shadow earlier ones at the same point, as in the kernel.
 */
export function mountHolding(
  mounts: readonly MountInfo[],
  file: string,
  except: ReadonlySet<number> = new Set(),
): MountInfo | null {
  let best: MountInfo | null = null;
  for (const m of mounts) {
    if (except.has(m.id)) continue;
    const mp = m.mountPoint;
    const inside = mp === '/' || file === mp || file.startsWith(`${mp}/`);
    if (!inside) continue;
    if (best === null || mp.length >= best.mountPoint.length) best = m;
  }
  return best;
}

/**
 * mountHolding in O(path depth) for hosts with thousands of mounts (container nodes): the
 * mounts by mount point, later ones last.
 */
export class MountIndex {
  private readonly byPoint = new Map<string, MountInfo[]>();

  constructor(mounts: readonly MountInfo[]) {
    for (const m of mounts) {
      const at = this.byPoint.get(m.mountPoint);
      if (at) at.push(m);
      else this.byPoint.set(m.mountPoint, [m]);
    }
  }

  holding(file: string, except: ReadonlySet<number> = new Set()): MountInfo | null {
    let dir = file === '' ? '/' : file;
    for (;;) {
      const at = this.byPoint.get(dir);
      if (at) {
        for (let i = at.length - 1; i >= 0; i--) {
          const m = at[i];
          if (m !== undefined && !except.has(m.id)) return m;
        }
      }
      if (dir === '/' || dir === '') return null;
      const cut = dir.lastIndexOf('/');
      dir = cut <= 0 ? '/' : dir.slice(0, cut);
    }
  }
}
