import { test } from 'node:test';
import { settle } from '../../src/host/clock.js';
import { SimKernel } from '../../src/host/sim/kernel.js';
import { EDU, NIC, labTopology } from '../helpers.js';
import { HOST_PORT_CONTRACT, type ContractFixture } from './host-port-contract.js';

// QEMU's e1000e derives its Device Serial Number from the MAC (52:54:00:12:34:56 here).
const NIC_SERIAL = '52-54-00-ff-ff-12-34-56';
const topo = labTopology();
for (const d of topo.devices) if (d.address === NIC[0]) d.serialNumber = NIC_SERIAL;
const kernel = new SimKernel(topo);
const fixture: ContractFixture = {
  port: kernel.port(),
  nic: NIC[0]!,
  otherNic: NIC[1]!,
  hostDriver: 'e1000e',
  nicSerial: NIC_SERIAL,
  driverless: EDU,
  hold: (addr) => {
    kernel.openDevice(addr);
    return Promise.resolve(() => {
      kernel.closeDevice(addr);
      return Promise.resolve();
    });
  },
  waitUntil: async (pred) => {
    for (let i = 0; i < 50; i++) {
      if (await pred()) return true;
      await settle();
    }
    return false;
  },
};

// One kernel for the whole list: the cases run in order, as they do in the QEMU guest.
for (const c of HOST_PORT_CONTRACT) {
  test(`HostPort contract (sim): ${c.name}`, () => c.run(fixture));
}
