import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { LinuxHost } from '../src/host/linux/host.js';
import type { HostUses } from '../src/host/port.js';
import { HostTree, PCI, route } from './host-uses-fixture.js';

const NVME = '0000:04:00.0';
const AHCI = '0000:00:1f.2';
const NIC1 = '0000:01:00.0';
const NIC2 = '0000:02:00.0';
const NIC3 = '0000:03:00.0';

async function withTree(f: (t: HostTree) => Promise<void>): Promise<void> {
  const t = await HostTree.create();
  try {
    await f(t);
  } finally {
    await t.remove();
  }
}

function usesOf(r: HostUses, addr: string): string[] {
  return r.uses.filter((u) => u.address === addr).map((u) => u.use);
}

const read = (t: HostTree): Promise<HostUses> =>
  new LinuxHost({ root: t.root, uevents: false }).hostUses();

const nvmeDisk = `${PCI.nvme.slice('sys/devices/'.length)}/nvme/nvme0/nvme0n1`;

test('hostUses finds the root 9p share even when its mount is invisible, mounted disks and the default-route NIC behind a bridge', async () => {
  await withTree(async (t) => {
    await t.file(`${PCI.rootfs9p}/virtio0/mount_tag`, 'hostfs\0');
    await t.dir('sys/bus/virtio/drivers/9pnet_virtio');
    await t.link('sys/bus/virtio/drivers/9pnet_virtio', `${PCI.rootfs9p}/virtio0/driver`);
    await t.link(`${PCI.rootfs9p}/virtio0`, 'sys/bus/virtio/devices/virtio0');
    await t.block(nvmeDisk, '259:0');
    await t.block(`${nvmeDisk}/nvme0n1p2`, '259:2', { partition: true });
    await t.iface('br0', {});
    await t.dir('sys/class/net/br0/brif/eth0');
    await t.iface('eth0', { device: PCI.nic1 });
    await t.mountinfo([
      '0:30 / / rw - overlay overlay rw,lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work',
      '259:2 / /boot rw - ext4 /dev/nvme0n1p2 rw',
      '0:5 / /proc rw - proc proc rw',
    ]);
    await t.routes([route('br0', '0.0.0.0', 0, '192.168.2.1')]);
    const r = await read(t);
    assert.ok(usesOf(r, '0000:00:02.0').some((u) => /9p share "hostfs"/.test(u)));
    assert.deepEqual(usesOf(r, NVME), ['filesystem mounted at /boot']);
    assert.deepEqual(usesOf(r, NIC1), ['network interface br0 carries the default route']);
    assert.deepEqual(usesOf(r, NIC2), []);
    assert.deepEqual(r.unknown, [], 'the overlay root is traced to the unmounted share');
    const root = r.backing.find((b) => b.target === '/');
    assert.deepEqual(root?.devices, ['0000:00:02.0']);
  });
});

test('a root mounted as /dev/root is traced through its major:minor to the nvme', async () => {
  await withTree(async (t) => {
    await t.block(nvmeDisk, '259:0');
    await t.block(`${nvmeDisk}/nvme0n1p2`, '259:2', { partition: true });
    await t.mountinfo(['259:2 / / rw,relatime shared:1 - ext4 /dev/root rw']);
    const r = await read(t);
    assert.deepEqual(usesOf(r, NVME), ['filesystem mounted at /']);
    assert.deepEqual(r.unknown, []);
    assert.deepEqual(r.backing[0]?.via, ['nvme0n1p2']);
  });
});

test('an unreadable /proc/self/mountinfo makes the answer unknown, naming the file and errno', async () => {
  await withTree(async (t) => {
    // Root reads through any mode bits: a directory in its place is the read error we can make.
    await t.dir('proc/self/mountinfo');
    const r = await read(t);
    assert.equal(r.unknown.length, 1);
    assert.match(
      r.unknown[0] ?? '',
      /cannot read \/proc\/self\/mountinfo \(EISDIR\): cannot tell what backs any mounted filesystem/,
    );
  });
});

test('an unreadable /proc/net/route makes the answer unknown', async () => {
  await withTree(async (t) => {
    await t.mountinfo(['0:5 / /proc rw - proc proc rw']);
    await fs.rm(path.join(t.root, 'proc/net/route'));
    await t.dir('proc/net/route');
    const r = await read(t);
    assert.ok(
      r.unknown.some((u) => /cannot read \/proc\/net\/route \(EISDIR\)/.test(u)),
      JSON.stringify(r.unknown),
    );
  });
});

test('an NVMe multipath head under nvme-subsystem is traced to every controller behind it', async () => {
  await withTree(async (t) => {
    const head = 'virtual/nvme-subsystem/nvme-subsys0/nvme0n1';
    const h = await t.block(head, '259:0');
    await t.block(`${head}/nvme0n1p1`, '259:1', { partition: true });
    const c0 = await t.block(`${PCI.nvme.slice(12)}/nvme/nvme0/nvme0c0n1`, '259:8');
    const c1 = await t.block(`${PCI.nic3.slice(12)}/nvme/nvme1/nvme0c1n1`, '259:9');
    await t.below(h, c0, 'multipath');
    await t.below(h, c1, 'multipath');
    await t.mountinfo(['259:1 / /srv rw - xfs /dev/nvme0n1p1 rw']);
    const r = await read(t);
    assert.deepEqual(usesOf(r, NVME), ['filesystem mounted at /srv']);
    assert.deepEqual(usesOf(r, NIC3), ['filesystem mounted at /srv']);
    assert.deepEqual(r.unknown, []);
  });
});

test('LVM on md on two disks is traced to both controllers', async () => {
  await withTree(async (t) => {
    const sda = await t.block(
      `${PCI.ahci.slice(12)}/ata1/host0/target0:0:0/0:0:0:0/block/sda`,
      '8:0',
    );
    const sda1 = await t.block(`${sda.slice(12)}/sda1`, '8:1', { partition: true });
    await t.block(nvmeDisk, '259:0');
    const nv1 = await t.block(`${nvmeDisk}/nvme0n1p1`, '259:1', { partition: true });
    const md0 = await t.block('virtual/block/md0', '9:0');
    await t.below(md0, sda1);
    await t.below(md0, nv1);
    const dm0 = await t.block('virtual/block/dm-0', '253:0');
    await t.below(dm0, md0);
    await t.mountinfo(['253:0 / / rw - ext4 /dev/mapper/vg-root rw']);
    const r = await read(t);
    assert.deepEqual(usesOf(r, AHCI), ['filesystem mounted at /']);
    assert.deepEqual(usesOf(r, NVME), ['filesystem mounted at /']);
    assert.deepEqual(r.backing[0]?.via, ['dm-0', 'md0', 'nvme0n1p1', 'sda1']);
    assert.deepEqual(r.unknown, []);
  });
});

test('a dm device with nothing below it is untraced: "cannot tell what backs /data"', async () => {
  await withTree(async (t) => {
    await t.block('virtual/block/dm-3', '253:3');
    await t.mountinfo(['253:3 / /data rw - ext4 /dev/mapper/x rw']);
    const r = await read(t);
    assert.deepEqual(r.unknown, [
      'cannot tell what backs /data: dm-3 is a virtual block device with nothing below it passthru can follow',
    ]);
    assert.equal(r.backing[0]?.status, 'untraced');
  });
});

test('a ZFS root is traced to the pool members udev labels with the pool name; an unknown pool is untraced', async () => {
  await withTree(async (t) => {
    await t.block(nvmeDisk, '259:0');
    await t.block(`${nvmeDisk}/nvme0n1p3`, '259:3', { partition: true });
    await t.file(
      'run/udev/data/b259:3',
      'S:disk/by-id/x\nE:ID_FS_TYPE=zfs_member\nE:ID_FS_LABEL=rpool\n',
    );
    await t.mountinfo([
      '0:26 /ROOT/debian / rw - zfs rpool/ROOT/debian rw,xattr,posixacl',
      '0:27 / /tank rw - zfs tank/data rw',
    ]);
    const r = await read(t);
    assert.deepEqual(usesOf(r, NVME), ['filesystem mounted at /']);
    assert.deepEqual(r.unknown, [
      'cannot tell what backs /tank: no member disk of zfs pool tank (no zfs_member labelled tank in /run/udev/data)',
    ]);
  });
});

test('an NFS root over a NIC that is not on the default route is traced to that NIC', async () => {
  await withTree(async (t) => {
    await t.iface('eth0', { device: PCI.nic1 });
    await t.iface('eth1', { device: PCI.nic2, up: false });
    await t.routes([route('eth0', '0.0.0.0', 0, '192.168.1.1'), route('eth1', '10.1.0.0', 16)]);
    await t.mountinfo([
      '0:40 / / rw - nfs4 10.1.0.5:/export/root rw,vers=4.2,addr=10.1.0.5,clientaddr=10.1.0.20',
    ]);
    const r = await read(t);
    assert.deepEqual(usesOf(r, NIC2), ['filesystem mounted at /']);
    assert.deepEqual(r.backing[0]?.via, ['10.1.0.5 via eth1', 'eth1']);
    assert.deepEqual(r.unknown, []);
  });
});

test('an iSCSI disk is traced through its session to the NIC that carries the route to the target', async () => {
  await withTree(async (t) => {
    await t.iface('eth1', { device: PCI.nic2 });
    await t.routes([route('eth1', '10.1.0.0', 16)]);
    await t.block('platform/host2/session1/target2:0:0/2:0:0:0/block/sdb', '8:16');
    await t.file('sys/class/iscsi_connection/connection1:0/address', '10.1.0.9\n');
    await t.mountinfo(['8:16 / /var/lib/db rw - ext4 /dev/sdb rw']);
    const r = await read(t);
    assert.deepEqual(usesOf(r, NIC2), [
      'filesystem mounted at /var/lib/db',
      'network interface eth1 is up with a global address (10.1.0.0/16)',
    ]);
    assert.deepEqual(r.unknown, []);
  });
});

test('a UP NIC with a global address is host-critical; a down one and a link-local-only one are not', async () => {
  await withTree(async (t) => {
    await t.iface('eth0', { device: PCI.nic1 });
    await t.iface('eth1', { device: PCI.nic2, up: false });
    await t.iface('eth2', { device: PCI.nic3 });
    await t.file(
      'proc/net/if_inet6',
      [
        '20010db8000000000000000000000005 02 40 00 80 eth0',
        '20010db8000000000000000000000006 03 40 00 80 eth1',
        'fe80000000000000021122fffe334455 04 40 20 80 eth2',
      ].join('\n') + '\n',
    );
    const r = await read(t);
    assert.deepEqual(usesOf(r, NIC1), [
      'network interface eth0 is up with a global address (2001:db8::5)',
    ]);
    assert.deepEqual(usesOf(r, NIC2), []);
    assert.deepEqual(usesOf(r, NIC3), []);
  });
});

test('pseudo filesystems need no tracing, an overlay is traced through the mounts holding its layers, a FUSE mount is untraced', async () => {
  await withTree(async (t) => {
    await t.block(nvmeDisk, '259:0');
    await t.mountinfo([
      '259:0 / / rw - ext4 /dev/nvme0n1 rw',
      '0:5 / /proc rw - proc proc rw',
      '0:6 / /sys rw - sysfs sysfs rw',
      '0:7 / /run rw - tmpfs tmpfs rw',
      '0:8 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw',
      '0:9 / /dev rw - devtmpfs udev rw',
      '0:50 / /var/lib/docker/overlay2/a/merged rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X:/var/lib/docker/overlay2/l/Y,upperdir=/var/lib/docker/overlay2/a/diff,workdir=/var/lib/docker/overlay2/a/work',
      '0:51 / /srv rw - fuse.sshfs me@host:/srv rw,user_id=0',
    ]);
    const r = await read(t);
    assert.deepEqual(
      r.backing.filter((b) => b.status === 'pseudo').map((b) => b.target),
      ['/proc', '/sys', '/run', '/sys/fs/cgroup', '/dev'],
    );
    assert.deepEqual(usesOf(r, NVME), [
      'filesystem mounted at /',
      'filesystem mounted at /var/lib/docker/overlay2/a/merged',
    ]);
    assert.deepEqual(r.unknown, [
      'cannot tell what backs /srv: fuse.sshfs (from me@host:/srv) is not on a block device passthru can follow',
    ]);
  });
});

test('swap on a dm device and a swap file (escaped name) are traced to their disks', async () => {
  await withTree(async (t) => {
    await t.block(nvmeDisk, '259:0');
    const p2 = await t.block(`${nvmeDisk}/nvme0n1p2`, '259:2', { partition: true });
    const dm1 = await t.block('virtual/block/dm-1', '253:1');
    await t.below(dm1, p2);
    await t.block(`${PCI.ahci.slice(12)}/ata1/host0/target0:0:0/0:0:0:0/block/sda`, '8:0');
    await t.mountinfo(['8:0 / / rw - ext4 /dev/sda rw']);
    await t.file(
      'proc/swaps',
      'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/dm-1                               partition\t999420\t\t0\t\t-2\n/swap\\040file                            file\t\t2097148\t\t0\t\t-3\n',
    );
    const r = await read(t);
    assert.deepEqual(usesOf(r, NVME), ['swap on /dev/dm-1']);
    assert.deepEqual(usesOf(r, AHCI), ['filesystem mounted at /', 'swap on /swap file']);
    assert.deepEqual(r.unknown, []);
  });
});

test('an overlay root whose layers are on no visible mount, with no unmounted share, is untraced', async () => {
  await withTree(async (t) => {
    await t.mountinfo(['0:30 / / rw - overlay overlay rw,lowerdir=/lower,upperdir=/rw/upper']);
    const r = await read(t);
    assert.deepEqual(r.unknown, [
      'cannot tell what backs /: overlay layer /lower is on no mount visible in this mount namespace',
    ]);
  });
});

test('a virtiofs mount whose tag sysfs does not show is traced to every untagged virtiofs device; a 9p tag no device has is untraced', async () => {
  await withTree(async (t) => {
    await t.dir(`${PCI.rootfs9p}/virtio1`);
    await t.dir('sys/bus/virtio/drivers/virtiofs');
    await t.link('sys/bus/virtio/drivers/virtiofs', `${PCI.rootfs9p}/virtio1/driver`);
    await t.link(`${PCI.rootfs9p}/virtio1`, 'sys/bus/virtio/devices/virtio1');
    await t.mountinfo([
      '0:40 / / rw - virtiofs rootfs rw',
      '0:41 / /job rw - 9p jobfs rw,trans=virtio',
    ]);
    const r = await read(t);
    assert.deepEqual(usesOf(r, '0000:00:02.0'), [
      'virtiofs filesystem at /',
      'virtiofs share (tag not in sysfs) (may back a mounted filesystem)',
    ]);
    assert.deepEqual(r.unknown, [
      'cannot tell what backs /job: no virtio device carries the share "jobfs"',
    ]);
  });
});

test('--root: a FIFO planted as /proc/self/mountinfo makes the answer unknown at once, never a hung read', async () => {
  await withTree(async (t) => {
    await t.dir('proc/self');
    execFileSync('mkfifo', [path.join(t.root, 'proc/self/mountinfo')]);
    const r = await read(t);
    assert.equal(r.unknown.length, 1);
    assert.match(r.unknown[0] ?? '', /cannot read \/proc\/self\/mountinfo \(not a regular file/);
  });
});

test("--root: a block device whose /sys/dev/block link leads out of the tree is not traced there: no use of the PCI address in the outside path, and the mount's backing is unknown", async () => {
  const outside = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-uses-outside-'));
  try {
    await withTree(async (t) => {
      const fake = path.join(outside, 'pci0000:00', '0000:0a:00.0', 'nvme0n1');
      await fs.mkdir(fake, { recursive: true });
      await fs.writeFile(path.join(fake, 'dev'), '259:0\n');
      await t.dir('sys/dev/block');
      await fs.symlink(fake, path.join(t.root, 'sys/dev/block/259:0'));
      await t.mountinfo(['259:0 / / rw,relatime shared:1 - ext4 /dev/nvme0n1 rw']);
      const r = await read(t);
      assert.deepEqual(usesOf(r, '0000:0a:00.0'), []);
      assert.equal(r.backing.find((b) => b.target === '/')?.status, 'untraced');
      assert.ok(r.unknown.some((u) => u.startsWith('cannot tell what backs /')));
    });
  } finally {
    await fs.rm(outside, { recursive: true, force: true });
  }
});
