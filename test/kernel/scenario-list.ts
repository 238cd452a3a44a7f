export interface ScenarioSpec {
  name: string;
  what: string;
  /** Boots in a row with one job folder (default 1): /job/persist carries files across. */
  boots?: number;
  /** How the guest loads drivers at boot (default modprobe per modalias; udev runs udevd's rules). */
  coldplug?: 'modprobe' | 'udev';
}

/** The real-kernel scenarios, in the order the suite boots them. */
export const SCENARIOS: readonly ScenarioSpec[] = [
  { name: 'discovery', what: 'passthru list --json agrees with lspci -vmm -nnk -D' },
  {
    name: 'claim-release',
    what: 'claim puts a NIC on vfio-pci with /dev/vfio/<group>; release gives it back to e1000e',
  },
  {
    name: 'field-failure',
    what: 'modprobe -r vfio_pci + rmmod vfio_pci_core behind a running agent, 10 times',
  },
  {
    name: 'crash-mid-bind',
    what: 'agent SIGKILLed between unbind and probe; restart converges, ledger intact',
  },
  {
    name: 'multifunction',
    what: 'one function of a shared group refused naming the blocker; --with-group claims both',
  },
  {
    name: 'host-critical',
    what: "the guest's own 9p root devices and a NIC that is up with an address are refused; doctor traces /",
  },
  {
    name: 'driverctl',
    what: 'driverctl set-override and passthru claim leave the device in the same state',
  },
  { name: 'sriov-vf', what: 'VFs of the SR-IOV nvme appear and can be claimed' },
  {
    name: 'host-contract',
    what: 'the HostPort contract cases (test/contract) pass against LinuxHost on real sysfs',
  },
  {
    name: 'vfio-hold-facts',
    what: 'unbind with only the group fd held; sriov_numvfs=0 while a VF is held (what the sim models)',
  },
  {
    name: 'vm-holds-device',
    what: 'a process holds a vfio NIC: vfioHolders names it; other devices still answer',
  },
  {
    name: 'vm-holds-release',
    what: 'a process holds a claimed NIC through vfio: release refused (exit 4, PT_ERR_DEVICE_IN_USE, pid and python3), NIC stays on vfio-pci; release --wait shows "held by pid N (python3)"; status answers < 1 s throughout; NIC on e1000e < 1 s after the close; agent exits < 2 s after SIGTERM',
  },
  {
    name: 'release-probe-fails',
    what: 'rmmod e1000e after the claim: release not ok, NIC driverless, state.json keeps e1000e; after modprobe e1000e (drivers_autoprobe on, then off) the NIC is on e1000e and the entry dropped',
  },
  {
    name: 'kill-mid-release',
    what: 'agent SIGKILLed between the release unbind and probe: NIC driverless, override cleared, ledger keeps e1000e; restarted agent gives it to e1000e and drops the entry',
  },
  {
    name: 'hot-readd',
    what: 'claimed NIC removed and rescanned 3 times: e1000e takes it at rescan, the agent puts it back on vfio-pci < 1 s after the rescan, ledger still says e1000e',
  },
  {
    name: 'boot-window',
    what: "two boots with udev coldplug; the claim, state and boot-config's files kept: at the second boot the claimed NIC is never bound to e1000e (no e1000e probe line for its address), it is on vfio-pci (or driverless) before the agent starts, and the agent keeps it there",
    boots: 2,
    coldplug: 'udev',
  },
  {
    name: 'import-dumps',
    what: "passthru import of the guest's lspci -vvnn -k -D, lspci -vmm -nnk -D and iommu_groups listing, as booted and with 2 nvme VFs: --sim list --json equals the guest's own, field by field",
  },
];
