/** The real-kernel scenarios, in the order the suite boots them. */
export const SCENARIOS = [
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
] as const;
