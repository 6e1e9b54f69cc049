"""`debootstrap --second-stage` of a foreign rootfs, run where the host is left alone.

Started by :func:`tests.harness.bases.complete_foreign_rootfs` through anybuild's user namespace launcher
(identity map: root's ids are the host's): here, in a new PID namespace, a binfmt_misc of this user
namespace's own (Linux 6.7+) gets the static emulator (flags P and F), /proc is mounted in the rootfs, and
the second stage runs chrooted, its foreign programs under QEMU. The host's binfmt_misc is never touched.

    python second_stage.py ROOTFS EMULATOR PLATFORM SCRATCH
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

from anybuild.builder.emulation import register_in_namespace
from anybuild.oci.platform import Platform

_CLONE_NEWPID = 0x20000000


def main(argv: list[str]) -> int:
    rootfs, emulator, platform, scratch = Path(argv[1]), Path(argv[2]), Platform.parse(argv[3]), Path(argv[4])
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(_CLONE_NEWPID) != 0:
        sys.stderr.write(f"second stage: unshare(CLONE_NEWPID): {os.strerror(ctypes.get_errno())}\n")
        return 125
    child = os.fork()
    if child:
        _, status = os.waitpid(child, 0)
        return os.waitstatus_to_exitcode(status)
    why = register_in_namespace(platform, emulator, scratch / "binfmt_misc", scratch)
    if why is not None:
        sys.stderr.write(f"second stage: {why}\n")
        os._exit(125)
    proc = rootfs / "proc"
    proc.mkdir(exist_ok=True)
    if libc.mount(b"proc", str(proc).encode(), b"proc", 0, None) != 0:
        sys.stderr.write(f"second stage: mount proc: {os.strerror(ctypes.get_errno())}\n")
        os._exit(125)
    os.chroot(rootfs)
    os.chdir("/")
    # container=lxc: debootstrap then skips its mknod checks, which a user namespace refuses (the first stage,
    # run as the host's root, made the device nodes)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "container": "lxc"}
    os.execve("/debootstrap/debootstrap", ["/debootstrap/debootstrap", "--second-stage"], env)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
