/**
 * Filesystems backed by no device at all: kernel state, memory, or a placeholder that other
 * mounts sit on. None of them needs tracing. (overlay is not here: its layers live on other
 * mounts, which are traced in its place.)
 */
export const PSEUDO_FILESYSTEMS: readonly string[] = [
  'autofs', // a trigger point; the filesystem it mounts is a mount of its own
  'binfmt_misc',
  'bpf',
  'cgroup',
  'cgroup2',
  'configfs',
  'debugfs',
  'devpts',
  'devtmpfs',
  'efivarfs',
  'fusectl',
  'hugetlbfs',
  'mqueue',
  'nfsd',
  'nsfs',
  'proc',
  'pstore',
  'ramfs',
  'rootfs',
  'rpc_pipefs',
  'securityfs',
  'selinuxfs',
  'smackfs',
  'sysfs',
  'tmpfs',
  'tracefs',
  // FUSE daemons that serve kernel or session state, not storage.
  'fuse.gvfsd-fuse',
  'fuse.lxcfs',
  'fuse.portal',
];

/** Network filesystems whose server address the kernel shows as addr= in the super options. */
export const ADDR_OPTION_FILESYSTEMS: readonly string[] = ['nfs', 'nfs4', 'cifs', 'smb3'];

export function isPseudoFilesystem(fstype: string): boolean {
  return PSEUDO_FILESYSTEMS.includes(fstype);
}

/** ceph's source lists monitors: `1.2.3.4:6789,[2001:db8::1]:6789:/path`. */
export function cephMonitors(source: string): string[] {
  const hosts = source.replace(/:\/.*$/, '');
  return hosts
    .split(',')
    .map((h) => {
      const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(h);
      if (v6?.[1] !== undefined) return v6[1];
      return h.replace(/:\d+$/, '');
    })
    .filter((h) => h !== '');
}

/** A udev database record (/run/udev/data/b<major>:<minor>): its E: properties. */
export function parseUdevProperties(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('E:')) continue;
    const eq = line.indexOf('=');
    if (eq > 2) out.set(line.slice(2, eq), line.slice(eq + 1));
  }
  return out;
}
