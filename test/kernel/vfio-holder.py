#!/usr/bin/env python3
"""Holds a PCI device through vfio the way QEMU does, for the real-kernel suite.

Usage: vfio-holder.py ADDRESS GROUP [--group-only]

Opens /dev/vfio/vfio (the container) and /dev/vfio/GROUP, attaches the group to the container
(VFIO_GROUP_SET_CONTAINER), selects the type1 IOMMU (VFIO_SET_IOMMU) and, unless --group-only,
asks for the device fd (VFIO_GROUP_GET_DEVICE_FD). Prints one line "holding pid=N fds=..." to
stdout once everything is open, then holds until stdin closes or SIGTERM arrives, and exits 0
(the kernel closes the fds). Errors go to stderr with exit status 1.
"""
import fcntl
import os
import signal
import struct
import sys

# _IO(';', 100 + n) from <linux/vfio.h>: ';' is 0x3b.
VFIO_GET_API_VERSION = 0x3B64
VFIO_SET_IOMMU = 0x3B66
VFIO_GROUP_GET_STATUS = 0x3B67
VFIO_GROUP_SET_CONTAINER = 0x3B68
VFIO_GROUP_GET_DEVICE_FD = 0x3B6A
VFIO_TYPE1_IOMMU = 1
VFIO_GROUP_FLAGS_VIABLE = 1


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    address, group = sys.argv[1], sys.argv[2]
    group_only = "--group-only" in sys.argv[3:]
    container = os.open("/dev/vfio/vfio", os.O_RDWR)
    api = fcntl.ioctl(container, VFIO_GET_API_VERSION)
    gfd = os.open(f"/dev/vfio/{group}", os.O_RDWR)
    status = bytearray(struct.pack("II", 8, 0))
    fcntl.ioctl(gfd, VFIO_GROUP_GET_STATUS, status, True)
    flags = struct.unpack("II", status)[1]
    if not flags & VFIO_GROUP_FLAGS_VIABLE:
        print(f"group {group} is not viable", file=sys.stderr)
        return 1
    fcntl.ioctl(gfd, VFIO_GROUP_SET_CONTAINER, bytearray(struct.pack("i", container)), True)
    fcntl.ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU)
    fds = [container, gfd]
    if not group_only:
        name = bytearray(address.encode() + b"\0")
        fds.append(fcntl.ioctl(gfd, VFIO_GROUP_GET_DEVICE_FD, name, True))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"holding pid={os.getpid()} api={api} fds={','.join(map(str, fds))}", flush=True)
    while sys.stdin.buffer.read(4096):
        pass
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as e:
        print(f"vfio-holder: {e}", file=sys.stderr)
        sys.exit(1)
