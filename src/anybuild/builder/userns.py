"""The build's own user and mount namespaces, for a builder without CAP_SYS_ADMIN (stdlib only).

In an unprivileged pod the builder cannot mount (no CAP_SYS_ADMIN), and a non-root
user cannot ``chown`` either. A user namespace of its own gives it both, within
limits the kernel sets by *how the namespace's ids are mapped*:

==========  ==============================================================  ===========================
map         how                                                             ids that are real inside
==========  ==============================================================  ===========================
identity    root (CAP_SETUID) writes ``0 0 4294967295``: in-namespace ids   every id
            are the pod's own
subuid      ``newuidmap``/``newgidmap`` with the user's /etc/subuid and      0 (the user) and 1..N
            /etc/subgid range (needs a working setuid ``newuidmap``)
single      the user's own id as root, nothing else (no privilege needed)   0 only
==========  ==============================================================  ===========================

Inside, the builder is root with every capability over its own mount namespace:
tmpfs, bind and (Linux 5.11+) overlay mounts work, ``chroot`` works, and the
mounts vanish with the namespace, whatever ends the process. Ids that are not
mapped cannot be given to files (``EINVAL``): the builder records them instead
(:mod:`anybuild.builder.owners`).

Run as a script (``python -I -S userns.py MAP -- COMMAND...``) it enters the
namespaces and ``exec``s the command as root inside; a helper process forked
before ``unshare`` writes the maps from the parent namespace, as they must be.
``userns.py MAP --trial`` does the same and exits 0 instead of running anything:
the attempt that decides which map a build uses (:func:`trial_argv`).
On failure it prints one line starting with :data:`FAILURE_PREFIX` and exits
:data:`FAILURE_EXIT` before running anything. It imports nothing from anybuild.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["FAILURE_EXIT", "FAILURE_PREFIX", "MAPS", "SCRIPT", "launcher_argv", "main", "subid_range", "trial_argv"]

SCRIPT = Path(__file__)
MAPS = ("identity", "subuid", "single")
FAILURE_PREFIX = "anybuild userns:"
FAILURE_EXIT = 125
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_PDEATHSIG = 1
_FULL = 4294967295


def launcher_argv(python: str, mapping: str, command: list[str]) -> list[str]:
    """The argv that runs *command* as root in new user and mount namespaces mapped as *mapping*."""
    return [python, "-I", "-S", str(SCRIPT), mapping, "--", *command]


def trial_argv(python: str, mapping: str) -> list[str]:
    """The argv that enters the namespaces mapped as *mapping* and exits 0, or says why it cannot."""
    return [python, "-I", "-S", str(SCRIPT), mapping, "--trial"]


def subid_range(path: Path, uid: int) -> tuple[int, int] | None:
    """The first ``name:start:count`` (or ``uid:start:count``) range of the user in /etc/subuid or /etc/subgid."""
    try:
        names = {str(uid), pwd.getpwuid(uid).pw_name}
    except KeyError:
        names = {str(uid)}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        valid = len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit()
        if valid and fields[0] in names and int(fields[2]) > 0:
            return int(fields[1]), int(fields[2])
    return None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _map_with_tools(pid: int, uid: int, gid: int) -> str | None:
    """``newuidmap``/``newgidmap`` with the user's subordinate ranges; None, or why not."""
    users = subid_range(Path("/etc/subuid"), uid)
    groups = subid_range(Path("/etc/subgid"), uid)
    if users is None or groups is None:
        return f"no range for uid {uid} in /etc/subuid and /etc/subgid"
    for tool, own, (start, count) in (("newuidmap", uid, users), ("newgidmap", gid, groups)):
        found = shutil.which(tool) or shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin")
        if found is None:
            return f"{tool} not found (Debian/Ubuntu package uidmap)"
        done = subprocess.run([found, str(pid), "0", str(own), "1", "1", str(start), str(count)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"{tool}: {(done.stderr or done.stdout).strip() or f'exit {done.returncode}'}"
    return None


def _map(pid: int, mapping: str, uid: int, gid: int) -> str | None:
    """Write the maps of *pid* (run in the parent namespace); None, or why it failed."""
    proc = f"/proc/{pid}"
    try:
        if mapping == "identity":
            _write(f"{proc}/uid_map", f"0 0 {_FULL}\n")
            _write(f"{proc}/gid_map", f"0 0 {_FULL}\n")
            return None
        if mapping == "subuid":
            return _map_with_tools(pid, uid, gid)
        _write(f"{proc}/setgroups", "deny")
        _write(f"{proc}/uid_map", f"0 {uid} 1\n")
        _write(f"{proc}/gid_map", f"0 {gid} 1\n")
    except OSError as exc:
        return f"writing the {mapping} map: {exc.strerror}"
    return None


def _fail(message: str) -> int:
    sys.stderr.write(f"{FAILURE_PREFIX} {message}\n")
    sys.stderr.flush()
    return FAILURE_EXIT


def enter(mapping: str) -> str | None:
    """Move this (single-threaded) process into new user and mount namespaces; None, or why not."""
    uid, gid = os.getuid(), os.getgid()
    go_r, go_w = os.pipe()
    status_r, status_w = os.pipe()
    helper = os.fork()
    if helper == 0:  # the helper stays in the parent namespace and writes the maps
        os.close(go_w)
        os.close(status_r)
        code = 1
        try:
            if os.read(go_r, 1) == b"1":
                why = _map(os.getppid(), mapping, uid, gid)
                os.write(status_w, (why or "").encode()[:4000])
                code = 0
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(status_w)
    libc = ctypes.CDLL(None, use_errno=True)
    failed = libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) != 0
    err = ctypes.get_errno()
    os.write(go_w, b"0" if failed else b"1")
    os.close(go_w)
    why = os.read(status_r, 4096).decode(errors="replace")
    os.close(status_r)
    os.waitpid(helper, 0)
    if failed:
        return f"unshare(CLONE_NEWUSER|CLONE_NEWNS): {errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
    if why:
        return why
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as exc:
        return f"becoming root in the namespace: {exc.strerror}"
    # nothing mounted in here propagates back out (a new userns makes shared mounts slaves already)
    if libc.mount(b"none", b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None) != 0:
        err = ctypes.get_errno()
        return f"making / private in the new mount namespace: {os.strerror(err)}"
    return None


def main(argv: list[str]) -> int:
    trial = argv[2:] == ["--trial"] and len(argv) == 3
    if len(argv) < 3 or argv[1] not in MAPS or not (trial or ("--" in argv and len(argv) > argv.index("--") + 1)):
        return _fail(f"usage: userns.py {{{'|'.join(MAPS)}}} (--trial | -- COMMAND...)")
    why = enter(argv[1])
    if why is not None:
        return _fail(why)
    if trial:
        return 0
    command = argv[argv.index("--") + 1 :]
    # die with whoever started us: the namespace and its mounts go with the process
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        return _fail("the process that started the build is gone")
    try:
        os.execvp(command[0], command)  # noqa: S606 - the builder's own command line
    except OSError as exc:
        return _fail(f"exec {command[0]}: {exc.strerror}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
