import * as posix from 'node:path/posix';

export interface BootConfigInput {
  root: string;
  modules: string[];
  originalDrivers: string[];
  agentCommand: string;
  stateDir: string;
}

/**
 * What makes passthrough survive a reboot before the agent runs: the vfio modules load early
 * (modules-load.d), vfio-pci is loaded before the drivers claimed devices had (softdep), and
 * the agent starts as a service and re-applies every claim.
 */
export function bootConfigFiles(
  i: BootConfigInput,
): { path: string; content: string; mode: number }[] {
  const at = (p: string): string => posix.join(i.root, p);
  const header = '# Written by `passthru boot-config`. Re-run it after changing claims.\n';
  const softdeps = i.originalDrivers.map((d) => `softdep ${d} pre: vfio-pci`).join('\n');
  return [
    {
      path: at('/etc/modules-load.d/passthru-vfio.conf'),
      content: `${header}${i.modules.join('\n')}\n`,
      mode: 0o644,
    },
    {
      path: at('/etc/modprobe.d/passthru-vfio.conf'),
      content: `${header}# vfio-pci loads before the drivers that claimed devices used, so it is there when the agent binds.\n${softdeps}${softdeps ? '\n' : ''}`,
      mode: 0o644,
    },
    {
      path: at('/etc/systemd/system/passthru-agent.service'),
      content: `${header}[Unit]
Description=passthru agent: keeps claimed PCI devices on vfio-pci
After=systemd-modules-load.service local-fs.target
Before=libvirtd.service virtqemud.service

[Service]
ExecStart=${i.agentCommand} agent --state-dir ${i.stateDir}
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`,
      mode: 0o644,
    },
  ];
}
