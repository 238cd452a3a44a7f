import * as posix from 'node:path/posix';
import { UDEV_RULES_PATH, renderUdevRules } from '../agent/udev-rules.js';
import { PtError } from '../errors.js';
import type { PciAddress } from '../pci/address.js';

export interface BootConfigInput {
  root: string;
  modules: string[];
  originalDrivers: string[];
  /** Addresses that must stay on vfio-pci from boot: claims and their bound companions. */
  claimed: PciAddress[];
  /** argv of the agent command (node and the script). */
  agentCommand: string[];
  /** Absolute, as seen on the booted host. */
  stateDir: string;
}

/**
 * A kernel module or driver name as modprobe.d may hold it. A name with a newline or a space
 * would become a line of its own there (`install vfio_pci /bin/sh ...`, a command modprobe
 * runs as root), so anything else is refused.
 */
const MODULE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

function checkName(kind: string, name: string): string {
  if (!MODULE_NAME.test(name))
    throw new PtError(
      'PT_ERR_INVALID_ARGUMENT',
      `refusing to write ${kind} ${JSON.stringify(name)} into modprobe.d: not a module name`,
    );
  return name;
}

/**
 * One argument of a systemd ExecStart line: double-quoted, with `\` and `"` escaped, `%`
 * doubled (systemd specifiers) and `$` doubled (environment expansion). Control characters
 * cannot be written safely at all.
 */
export function systemdQuote(arg: string): string {
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(arg))
    throw new PtError(
      'PT_ERR_INVALID_ARGUMENT',
      `refusing to write ${JSON.stringify(arg)} into a systemd unit: it holds a control character`,
    );
  return `"${arg
    .replace(/[\\"]/g, (c) => `\\${c}`)
    .replace(/%/g, '%%')
    .replace(/\$/g, '$$$$')}"`;
}

/**
 * What makes passthrough survive a reboot before the agent runs: udev rules set
 * driver_override=vfio-pci on each claimed device as it appears (so no host driver takes it),
 * the vfio modules load early (modules-load.d), and the agent starts as a service and
 * re-applies every claim.
 */
export function bootConfigFiles(
  i: BootConfigInput,
): { path: string; content: string; mode: number }[] {
  if (!posix.isAbsolute(i.stateDir))
    throw new PtError('PT_ERR_INVALID_ARGUMENT', `the state dir must be absolute: ${i.stateDir}`);
  const modules = i.modules.map((m) => checkName('module', m));
  const drivers = i.originalDrivers.map((d) => checkName('driver', d));
  const at = (p: string): string => posix.join(i.root, p);
  const header = '# Written by `passthru boot-config`. Re-run it after changing claims.\n';
  const softdeps = drivers.map((d) => `softdep ${d} pre: vfio-pci`).join('\n');
  const exec = [...i.agentCommand, 'agent', '--state-dir', i.stateDir].map(systemdQuote).join(' ');
  return [
    {
      path: at('/etc/modules-load.d/passthru-vfio.conf'),
      content: `${header}${modules.join('\n')}\n`,
      mode: 0o644,
    },
    {
      path: at('/etc/modprobe.d/passthru-vfio.conf'),
      // A softdep only orders module loading: vfio-pci is loaded before these drivers. It
      // does not stop them binding claimed devices (after a reboot no driver_override is
      // set and vfio-pci has no ids); the udev rules below do that.
      content: `${header}# vfio-pci loads before the modules of the drivers claimed devices had. This orders loading only:\n# the udev rules in ${UDEV_RULES_PATH} keep those drivers off the claimed devices.\n${softdeps}${softdeps ? '\n' : ''}`,
      mode: 0o644,
    },
    {
      path: at(UDEV_RULES_PATH),
      content: renderUdevRules(i.claimed),
      mode: 0o644,
    },
    {
      path: at('/etc/systemd/system/passthru-agent.service'),
      content: `${header}[Unit]
Description=passthru agent: keeps claimed PCI devices on vfio-pci
After=systemd-modules-load.service local-fs.target
Before=libvirtd.service virtqemud.service

[Service]
ExecStart=${exec}
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`,
      mode: 0o644,
    },
  ];
}
