import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runDoctor } from '../src/doctor/doctor.js';
import { LinuxHost } from '../src/host/linux/host.js';
import { HostTree, PCI } from './host-uses-fixture.js';

async function doctorOn(setup: (t: HostTree) => Promise<void>) {
  const t = await HostTree.create();
  try {
    await setup(t);
    return await runDoctor(new LinuxHost({ root: t.root, uevents: false }));
  } finally {
    await t.remove();
  }
}

const nvmeDisk = `${PCI.nvme.slice(12)}/nvme/nvme0/nvme0n1`;

test('doctor: a blacklist line for vfio_pci is a WARN naming why, an install /bin/true line a FAIL, also when another file blacklists it', async () => {
  const bl = await doctorOn((t) => t.file('etc/modprobe.d/no-vfio.conf', 'blacklist vfio_pci\n'));
  const warn = bl.checks.find((c) => c.id === 'vfio-blacklisted');
  assert.equal(warn?.status, 'warn');
  assert.match(warn.summary, /vfio_pci \(blacklisted in \/etc\/modprobe.d\/no-vfio.conf\)/);
  assert.match(warn.summary, /`modprobe` by name \(what passthru runs\) ignores blacklists/);
  assert.equal(
    bl.checks.find((c) => c.id === 'vfio-blocked'),
    undefined,
  );
  const inst = await doctorOn((t) =>
    t.file('etc/modprobe.d/no-vfio.conf', 'install vfio_pci /bin/true\n'),
  );
  const fail = inst.checks.find((c) => c.id === 'vfio-blocked');
  assert.equal(fail?.status, 'fail');
  assert.match(fail.summary, /install \/bin\/true/);
  assert.equal(inst.ok, false);
  const both = await doctorOn(async (t) => {
    await t.file('etc/modprobe.d/a.conf', 'blacklist vfio_pci\n');
    await t.file('etc/modprobe.d/b.conf', 'install vfio_pci /bin/false\n');
  });
  assert.equal(
    both.checks.find((c) => c.id === 'vfio-blocked')?.status,
    'fail',
    'an install line in a later file is not hidden by a blacklist',
  );
});

test('doctor: shows what backs / and swap, the pseudo filesystems, untraced mounts as WARN, and host-critical devices with why', async () => {
  const r = await doctorOn(async (t) => {
    await t.block(nvmeDisk, '259:0');
    await t.block(`${nvmeDisk}/nvme0n1p2`, '259:2', { partition: true });
    await t.block(`${nvmeDisk}/nvme0n1p3`, '259:3', { partition: true });
    await t.mountinfo([
      '259:2 / / rw - ext4 /dev/root rw',
      '0:5 / /proc rw - proc proc rw',
      '0:7 / /run rw - tmpfs tmpfs rw',
      '0:51 / /srv rw - fuse.sshfs me@host:/srv rw',
    ]);
    await t.file(
      'proc/swaps',
      'Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p3 partition 1000 0 -2\n',
    );
  });
  const by = (id: string) => r.checks.find((c) => c.id === id);
  assert.deepEqual(by('backing:/'), {
    id: 'backing:/',
    status: 'info',
    summary: '/ (ext4 from /dev/root) on nvme0n1p2 -> 0000:04:00.0',
  });
  assert.equal(
    by('backing:swap:/dev/nvme0n1p3')?.summary,
    'swap /dev/nvme0n1p3 on nvme0n1p3 -> 0000:04:00.0',
  );
  assert.equal(by('backing:pseudo')?.summary, 'no device behind (pseudo filesystems): /proc, /run');
  const unknown = r.checks.filter((c) => c.id === 'host-uses-unknown');
  assert.deepEqual(
    unknown.map((c) => [c.status, c.summary]),
    [
      [
        'warn',
        'cannot tell what backs /srv: fuse.sshfs (from me@host:/srv) is not on a block device passthru can follow',
      ],
    ],
  );
  assert.equal(
    by('host-critical:0000:04:00.0')?.summary,
    'host-critical 0000:04:00.0 (Class 0108): filesystem mounted at /; swap on /dev/nvme0n1p3',
  );
  assert.match(
    by('never-offered')?.summary ?? '',
    /^not offered for passthrough: 5 bridges \(never, even with --force\), 0 platform functions/,
  );
});
