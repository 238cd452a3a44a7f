import { test } from 'node:test';
import { settle } from '../../src/host/clock.js';
import { SimKernel } from '../../src/host/sim/kernel.js';
import { EDU, NIC, labTopology } from '../helpers.js';
import { HOST_PORT_CONTRACT, type ContractFixture } from './host-port-contract.js';

const kernel = new SimKernel(labTopology());
const fixture: ContractFixture = {
  port: kernel.port(),
  nic: NIC[0]!,
  otherNic: NIC[1]!,
  hostDriver: 'e1000e',
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
