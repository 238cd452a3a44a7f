import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { SysError, errnoOf } from '../../errors.js';
import {
  canonicalModuleName,
  isValidModuleName,
  type ModuleAvailability,
  type ModuleStatus,
} from '../port.js';
import type { RootedFs } from './sysfs.js';

// ---------------------------------------------------------------- pure parsers

/** /proc/modules: "name size refcount deps state address" per line. */
export function parseProcModules(text: string): Map<string, ModuleStatus> {
  const out = new Map<string, ModuleStatus>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !f[0]) continue;
    const name = canonicalModuleName(f[0]);
    const st = f[4];
    const state = st === 'Live' ? 'live' : st === 'Unloading' ? 'unloading' : 'loading';
    const refcount = Number(f[2]);
    out.set(name, { name, state, refcount: Number.isInteger(refcount) ? refcount : 0 });
  }
  return out;
}

/** "kernel/drivers/vfio/pci/vfio-pci.ko.xz" -> "vfio_pci". */
export function moduleNameFromPath(p: string): string {
  return canonicalModuleName(path.basename(p.trim()).replace(/\.ko(\.(xz|zst|gz))?$/, ''));
}

/** modules.dep: "path.ko: dep.ko dep2.ko" per line, as canonical names. */
export function parseModulesDep(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = moduleNameFromPath(line.slice(0, colon));
    if (name === '' || out.has(name)) continue;
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(moduleNameFromPath);
    out.set(name, deps);
  }
  return out;
}

/** modules.builtin: one module path per line. */
export function parseModulesBuiltin(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    out.add(moduleNameFromPath(line));
  }
  return out;
}

/** What one modprobe.d file says that stops modprobe from loading a module. */
export interface ModprobeBlock {
  module: string;
  /** `blacklist` (ignored by `modprobe NAME`, but honoured by alias loads) or an install command. */
  kind: 'blacklist' | 'install';
  detail: string;
}

/**
 * The lines of a modprobe.d file that block modules: `blacklist NAME`, and `install NAME
 * /bin/false` or `/bin/true` (which make modprobe succeed or fail without loading anything).
 * Comments and other directives are ignored.
 */
export function parseModprobeConf(text: string): ModprobeBlock[] {
  const out: ModprobeBlock[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    const w = line.split(/\s+/);
    if (w.length < 2 || w[1] === undefined) continue;
    const module = canonicalModuleName(w[1]);
    if (w[0] === 'blacklist') out.push({ module, kind: 'blacklist', detail: 'blacklist' });
    else if (w[0] === 'install' && /\/(false|true)$/.test(w[2] ?? '')) {
      out.push({ module, kind: 'install', detail: `install ${w.slice(2).join(' ')}` });
    }
  }
  return out;
}

// ---------------------------------------------------------------- reading the host

const MODPROBE_DIRS = ['etc/modprobe.d', 'run/modprobe.d', 'lib/modprobe.d', 'usr/lib/modprobe.d'];

/**
 * The module side of the Linux host: /proc/modules, /sys/module, modules.dep, modules.builtin
 * and modprobe.d, plus running modprobe. modules.builtin is read once per kernel release (it
 * only changes with the kernel, and the keeper asks every poll).
 */
export class LinuxModules {
  private builtinCache: { release: string; names: Set<string> } | null = null;

  constructor(
    private readonly fs: RootedFs,
    private readonly modprobePath: string,
    private readonly modprobeTimeoutMs: number,
  ) {}

  kernelRelease(): string {
    return this.fs.readText(this.fs.p('proc/sys/kernel/osrelease')) ?? 'unknown';
  }

  status(names: readonly string[]): Map<string, ModuleStatus | null> {
    const proc = parseProcModules(this.fs.readText(this.fs.p('proc/modules')) ?? '');
    const out = new Map<string, ModuleStatus | null>();
    for (const raw of names) {
      const name = canonicalModuleName(raw);
      const listed = proc.get(name);
      if (listed) {
        out.set(name, listed);
        continue;
      }
      if (!isValidModuleName(name) || !this.fs.exists(this.fs.p('sys/module', name))) {
        out.set(name, null);
        continue;
      }
      // /sys/module/<name> without initstate is a built-in module; with it, a loadable one
      // caught between /proc/modules and sysfs.
      const init = this.fs.readText(this.fs.p('sys/module', name, 'initstate'));
      if (init === null) {
        // Parameters-only entries exist for some modules that are not built in; a built-in
        // module shows up in modules.builtin as well.
        out.set(name, this.isBuiltin(name) ? { name, state: 'builtin', refcount: null } : null);
      } else {
        const state = init === 'live' ? 'live' : init === 'going' ? 'unloading' : 'loading';
        out.set(name, { name, state, refcount: null });
      }
    }
    return out;
  }

  isBuiltin(name: string): boolean {
    const release = this.kernelRelease();
    if (this.builtinCache?.release !== release) {
      const text = this.fs.readText(this.fs.p('lib/modules', release, 'modules.builtin'));
      this.builtinCache = { release, names: parseModulesBuiltin(text ?? '') };
    }
    return this.builtinCache.names.has(name);
  }

  availability(raw: string): ModuleAvailability {
    const name = canonicalModuleName(raw);
    if (!isValidModuleName(name)) return { name, kind: 'missing', deps: [] };
    const blocked = this.modprobeBlock(name);
    const withBlock = (a: ModuleAvailability): ModuleAvailability =>
      blocked === undefined ? a : { ...a, blocked };
    const release = this.kernelRelease();
    const dep = parseModulesDep(
      this.fs.readText(this.fs.p('lib/modules', release, 'modules.dep')) ?? '',
    );
    const deps = dep.get(name);
    if (deps !== undefined) return withBlock({ name, kind: 'loadable', deps });
    if (this.isBuiltin(name)) return withBlock({ name, kind: 'builtin', deps: [] });
    return withBlock({ name, kind: 'missing', deps: [] });
  }

  private modprobeBlock(name: string): string | undefined {
    let blacklisted: string | undefined;
    for (const d of MODPROBE_DIRS) {
      for (const f of this.fs.readdir(this.fs.p(d)).sort()) {
        if (!f.endsWith('.conf')) continue;
        const text = this.fs.readText(this.fs.p(d, f)) ?? '';
        for (const hit of parseModprobeConf(text).filter((b) => b.module === name)) {
          // An install line stops every load; a blacklist only alias loads: report the worse.
          if (hit.kind === 'install') return `${hit.detail} in /${d}/${f}`;
          blacklisted ??= `blacklisted in /${d}/${f}`;
        }
      }
    }
    return blacklisted;
  }

  async load(raw: string): Promise<void> {
    const name = canonicalModuleName(raw);
    if (!isValidModuleName(name)) throw new SysError('EINVAL', `bad module name ${raw}`);
    if (!this.fs.live)
      throw new SysError('EPERM', `cannot load modules into a tree at ${this.fs.root}`);
    await new Promise<void>((resolve, reject) => {
      execFile(
        this.modprobePath,
        ['--', name],
        { timeout: this.modprobeTimeoutMs },
        (err, _stdout, stderr) => {
          if (!err) {
            resolve();
            return;
          }
          const code = errnoOf(err) === 'ENOENT' ? 'ENOENT' : 'EMODPROBE';
          reject(new SysError(code, `modprobe ${name}: ${stderr.trim() || err.message}`));
        },
      );
    });
  }
}
