// One process for every test file: measured far faster than a process per file (DESIGN.md).
import '../src/pci/address.test.js';
import '../src/pci/pciids.test.js';
import '../src/host/sim/kernel.test.js';
import './lspci.test.js';
import './field-failure.test.js';
import './claims.test.js';
import './linux-host.test.js';
import './cli.test.js';
