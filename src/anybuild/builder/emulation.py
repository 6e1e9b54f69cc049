"""RUN steps of a foreign platform, under QEMU user-mode emulation (Debian's ``qemu-user-static``).

A stage built for another architecture than the machine's runs its RUN steps under
``qemu-ARCH-static``. How the emulator gets between the kernel and the image's binaries
is chosen from attempts, strongest first (:class:`Route`):

``host-binfmt``
    A binfmt_misc handler registered on the host for that architecture, with flag ``F``
    (the emulator opened at registration, so it works inside the build's chroot). The
    attempt: a tiny static program of that architecture (:func:`probe_program`, written
    here, 100-odd bytes that exit 42) run in a chroot that holds nothing else.
``userns-binfmt``
    Linux 6.7 and later give each user namespace a binfmt_misc of its own: the builder,
    in its own user namespace (:mod:`anybuild.builder.host`), mounts one and registers
    the static emulator there with flag ``F``. No privilege, no change to the host; the
    handler goes with the namespace. The attempt: the mount, the registration, the probe.
``entrypoint``
    The emulator bound into the sandbox and put before the command
    (``qemu-aarch64-static -0 sh /bin/sh -c …``). It works without binfmt_misc at all,
    but only for the first program: one the command starts with ``exec`` of a foreign
    binary fails (ENOEXEC), so shells whose applets run in-process (busybox) and
    single programs work, ``apt-get`` does not.

``ANYBUILD_EMULATION=host|userns|entrypoint`` forces a route (an error when it cannot
work); the route taken is named in the build's output and its result.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from anybuild.errors import EnvironmentUnsupported, UsageError
from anybuild.oci.platform import Platform

__all__ = [
    "EMULATION_ENV",
    "Emulation",
    "EmulatorChoice",
    "Route",
    "emulator_path",
    "foreign",
    "probe_host",
    "probe_program",
    "qemu_arch",
    "register_in_namespace",
    "requested_route",
]

EMULATION_ENV = "ANYBUILD_EMULATION"
PACKAGE = "qemu-user-static"
PROBE_EXIT = 42
ENTRYPOINT_TARGET = "/run/anybuild/qemu"  # where the emulator is bound in the sandbox (a stub, removed after)


class Route(StrEnum):
    HOST = "host-binfmt"
    USERNS = "userns-binfmt"
    ENTRYPOINT = "entrypoint"


_OVERRIDES = {"host": Route.HOST, "userns": Route.USERNS, "entrypoint": Route.ENTRYPOINT}

# OCI architecture -> QEMU's name, ELF machine, 64-bit, little-endian, e_flags, code that exits 42
_ARCHES: dict[str, tuple[str, int, bool, bool, int, bytes]] = {
    "arm64": ("aarch64", 183, True, True, 0,
              struct.pack("<3I", 0xD2800540, 0xD2800BA8, 0xD4000001)),  # mov x0,#42; mov x8,#93; svc 0
    "arm": ("arm", 40, False, True, 0x05000400,
            struct.pack("<3I", 0xE3A0002A, 0xE3A07001, 0xEF000000)),  # mov r0,#42; mov r7,#1; svc 0
    "riscv64": ("riscv64", 243, True, True, 0,
                struct.pack("<3I", 0x02A00513, 0x05D00893, 0x00000073)),  # li a0,42; li a7,93; ecall
    "ppc64le": ("ppc64le", 21, True, True, 2,
                struct.pack("<3I", 0x3860002A, 0x38000001, 0x44000002)),  # li r3,42; li r0,1; sc
    "s390x": ("s390x", 22, True, False, 0, bytes.fromhex("a729002a0a01")),  # lghi %r2,42; svc 1
    "amd64": ("x86_64", 62, True, True, 0, bytes.fromhex("bf2a000000b83c0000000f05")),  # exit(42)
    "386": ("i386", 3, False, True, 0, bytes.fromhex("bb2a000000b801000000cd80")),  # exit(42)
}

# what a machine of the first architecture runs natively besides its own
_NATIVE_TOO = {"amd64": ("386",), "arm64": ("arm",)}


def qemu_arch(platform: Platform) -> str | None:
    """QEMU's name for *platform*'s architecture (``aarch64`` for arm64), or None when unknown."""
    entry = _ARCHES.get(platform.architecture)
    return entry[0] if entry else None


def foreign(host: Platform, platform: Platform) -> bool:
    """Whether RUN steps of *platform* need an emulator on *host*."""
    if platform.os != host.os:
        return True
    return platform.architecture != host.architecture and \
        platform.architecture not in _NATIVE_TOO.get(host.architecture, ())


def probe_program(platform: Platform) -> bytes:
    """A static ELF executable for *platform* that exits with 42, and does nothing else."""
    try:
        _name, machine, wide, little, flags, code = _ARCHES[platform.architecture]
    except KeyError:
        raise UsageError(f"no emulator is known for {platform}",
                         hint=f"anybuild emulates: {', '.join(f'linux/{a}' for a in sorted(_ARCHES))}") from None
    end = "<" if little else ">"
    base = 0x400000
    if wide:
        header, program = 64, 56
        start = header + program
        total = start + len(code)
        ident = b"\x7fELF" + bytes([2, 1 if little else 2, 1, 0]) + bytes(8)
        ehdr = ident + struct.pack(end + "HHIQQQIHHHHHH", 2, machine, 1, base + start, header, 0, flags,
                                   header, program, 1, 0, 0, 0)
        phdr = struct.pack(end + "IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x10000)
    else:
        header, program = 52, 32
        start = header + program
        total = start + len(code)
        ident = b"\x7fELF" + bytes([1, 1 if little else 2, 1, 0]) + bytes(8)
        ehdr = ident + struct.pack(end + "HHIIIIIHHHHHH", 2, machine, 1, base + start, header, 0, flags,
                                   header, program, 1, 0, 0, 0)
        phdr = struct.pack(end + "IIIIIIII", 1, 0, base, base, total, total, 5, 0x10000)
    return ehdr + phdr + code


def _register_line(name: str, platform: Platform, emulator: Path, *, flags: str = "PF") -> str:
    """binfmt_misc's ``:name:M::magic:mask:interpreter:flags`` for *platform*'s executables (ET_EXEC and ET_DYN).

    ``F``: the interpreter is opened now, so it works in any chroot; ``P``: the program's own argv[0] is
    passed on (busybox's applets are told apart by it), which QEMU takes when the interpreter's name ends
    in ``-binfmt-P``, as Debian's wrappers in /usr/libexec/qemu-binfmt/ do."""
    _qemu, machine, wide, little, _flags, _code = _ARCHES[platform.architecture]
    end = "<" if little else ">"
    magic = b"\x7fELF" + bytes([2 if wide else 1, 1 if little else 2, 1, 0]) + bytes(8) + struct.pack(end + "HH", 2,
                                                                                                      machine)
    type_mask = struct.pack(end + "H", 0xFFFE)
    mask = b"\xff" * 7 + b"\x00" + b"\xff" * 8 + type_mask + b"\xff\xff"

    def escaped(data: bytes) -> str:
        return "".join(f"\\x{b:02x}" for b in data)

    return f":{name}:M::{escaped(magic)}:{escaped(mask)}:{emulator}:{flags}"


EMULATOR_DIRS = "/usr/bin:/usr/local/bin"  # looked in after PATH (Debian's qemu-user-static installs in /usr/bin)


def emulator_path(platform: Platform, env: Mapping[str, str], *, dirs: str = EMULATOR_DIRS) -> Path | None:
    """The static emulator for *platform* (``qemu-aarch64-static``) on PATH or in *dirs*, or None."""
    arch = qemu_arch(platform)
    if arch is None:
        return None
    name = f"qemu-{arch}-static"
    found = shutil.which(name, path=env.get("PATH")) or (shutil.which(name, path=dirs) if dirs else None)
    return Path(found) if found else None


def _chroot_into(directory: str) -> Callable[[], None]:
    def enter() -> None:
        os.chroot(directory)
        os.chdir("/")
    return enter


def _run_probe(platform: Platform, scratch: Path) -> str | None:
    """Run :func:`probe_program` in a chroot of its own (as a sandbox would): None when it exited 42, else why
    not. Without the right to chroot it runs where it is (which cannot tell a handler without flag F)."""
    with tempfile.TemporaryDirectory(prefix="emulation-", dir=scratch) as tmp:
        program = Path(tmp) / "probe"
        program.write_bytes(probe_program(platform))
        program.chmod(0o755)
        chroot = os.geteuid() == 0 or _can_chroot()
        try:
            done = subprocess.run(["/probe"] if chroot else [str(program)], check=False, timeout=30,
                                  preexec_fn=_chroot_into(tmp) if chroot else None,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            if exc.errno == errno.ENOEXEC:
                return f"the kernel cannot run a {platform} program here (no binfmt_misc handler for it)"
            if exc.errno == errno.ENOENT:  # the handler's interpreter is not in the chroot: no flag F
                return (f"a binfmt_misc handler for {platform} is registered without flag F (its emulator is looked "
                        "up inside the image, where it is not)")
            return f"running a {platform} program: {exc.strerror}"
        except subprocess.SubprocessError as exc:  # chroot refused in the child
            return f"running a {platform} program: {exc}"
        if done.returncode != PROBE_EXIT:
            said = done.stderr.decode(errors="replace").strip()[-200:]
            return f"a {platform} program exited {done.returncode}, not {PROBE_EXIT}" + (f": {said}" if said else "")
    return None


def _can_chroot() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 18 & 1)  # CAP_SYS_CHROOT
    except OSError:
        pass
    return False


def probe_host(platform: Platform, scratch: Path) -> str | None:
    """Whether the host's binfmt_misc runs *platform*'s programs in a chroot: None if it does, else why not."""
    return _run_probe(platform, scratch)


_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8


def register_in_namespace(platform: Platform, emulator: Path, mount_point: Path, scratch: Path) -> str | None:
    """Mount a binfmt_misc of this user namespace's own at *mount_point* (Linux 6.7+), register *emulator*
    for *platform* there with flag F, and run the probe; None when it works, else why not."""
    mount_point.mkdir(parents=True, exist_ok=True)
    if not (mount_point / "register").exists():
        libc = ctypes.CDLL(None, use_errno=True)
        flags = ctypes.c_ulong(_MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        if libc.mount(b"binfmt_misc", str(mount_point).encode(), b"binfmt_misc", flags, None) != 0:
            err = ctypes.get_errno()
            return (f"mounting binfmt_misc in the build's user namespace: {os.strerror(err)} (a binfmt_misc of a "
                    "user namespace's own needs Linux 6.7 or later, and a user namespace the builder made)")
    name = f"anybuild-{qemu_arch(platform)}"
    if not (mount_point / name).exists():
        # the emulator under a name ending in -binfmt-P, so that QEMU keeps the program's argv[0] (flag P)
        wrappers = scratch / "qemu-binfmt"
        wrappers.mkdir(exist_ok=True)
        wrapper = wrappers / f"{qemu_arch(platform)}-binfmt-P"
        if not wrapper.is_symlink():
            wrapper.symlink_to(emulator.resolve())
        try:
            fd = os.open(mount_point / "register", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, _register_line(name, platform, wrapper).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            return f"registering {emulator} in the build's binfmt_misc: {exc.strerror}"
    return _run_probe(platform, scratch)


def requested_route(env: Mapping[str, str]) -> Route | None:
    """The route ``ANYBUILD_EMULATION`` forces, None for automatic; a bad value is an input error."""
    text = (env.get(EMULATION_ENV) or "").strip().lower()
    if text in ("", "auto"):
        return None
    if text not in _OVERRIDES:
        raise UsageError(f"{EMULATION_ENV}={text!r} is not an emulation route",
                         hint="set it to host, userns or entrypoint (or auto, or unset it)")
    return _OVERRIDES[text]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorChoice:
    """How one foreign platform's RUN steps run."""

    platform: Platform
    route: Route
    emulator: Path | None  # the static emulator (entry point and userns routes)

    def describe(self) -> str:
        name = self.emulator.name if self.emulator else f"qemu-{qemu_arch(self.platform)}-static"
        how = {Route.HOST: "the host's binfmt_misc handler",
               Route.USERNS: "a binfmt_misc of the build's own user namespace",
               Route.ENTRYPOINT: "an explicit entry point (programs it execs must be native or applets)"}[self.route]
        return f"{self.platform} RUN steps under {name}, through {how} ({self.route})"


@dataclass(slots=True, kw_only=True)
class Emulation:
    """The routes of a build's foreign platforms, chosen at the first RUN that needs one (see the module's doc)."""

    host: Platform
    env: Mapping[str, str]
    scratch: Path  # the build's scratch directory: probes, and the binfmt_misc mount of the userns route
    in_userns: bool  # the builder runs in a user namespace it made (the userns route is possible)
    on_line: Callable[[str], None] = lambda _line: None
    emulator_dirs: str = EMULATOR_DIRS  # where emulators are looked for after PATH
    chosen: dict[str, EmulatorChoice] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def choice(self, platform: Platform, where: str = "") -> EmulatorChoice | None:
        """How RUN steps of *platform* run: None natively, else a route; raise when no route works."""
        if not foreign(self.host, platform):
            return None
        key = str(platform)
        with self._lock:
            if key not in self.chosen:
                self.chosen[key] = self._choose(platform, where)
                self.on_line(f"anybuild: emulation: {self.chosen[key].describe()}")
            return self.chosen[key]

    def entrypoint(self, platform: Platform) -> Path | None:
        """The emulator to put before a RUN's command (the entry point route), else None."""
        choice = self.choice(platform)
        return choice.emulator if choice is not None and choice.route is Route.ENTRYPOINT else None

    def routes(self) -> dict[str, str]:
        return {key: str(choice.route) for key, choice in self.chosen.items()}

    def _choose(self, platform: Platform, where: str) -> EmulatorChoice:
        forced = requested_route(self.env)
        arch = qemu_arch(platform)
        at = f"{where}: " if where else ""
        if arch is None:
            raise EnvironmentUnsupported(f"{at}RUN for {platform} needs an emulator, and none is known for it",
                                         hint="build that platform on a machine of its own architecture")
        emulator = emulator_path(platform, self.env, dirs=self.emulator_dirs)
        tried: list[str] = []
        for route in (forced,) if forced else (Route.HOST, Route.USERNS, Route.ENTRYPOINT):
            if route is Route.HOST:
                why = probe_host(platform, self.scratch)
            elif emulator is None:
                why = f"qemu-{arch}-static is not installed"
            elif route is Route.USERNS:
                why = (register_in_namespace(platform, emulator, self.scratch / "binfmt_misc", self.scratch)
                       if self.in_userns else "the builder runs in no user namespace of its own")
            else:
                why = None
            if why is None:
                return EmulatorChoice(platform=platform, route=route, emulator=emulator)
            tried.append(f"{route}: {why}")
        if emulator is None and forced in (None, Route.USERNS, Route.ENTRYPOINT):
            raise EnvironmentUnsupported(
                f"{at}RUN for {platform} needs the emulator qemu-{arch}-static, which is not installed "
                f"({'; '.join(tried)})",
                hint=f"install Debian/Ubuntu package {PACKAGE} (apt-get install {PACKAGE}), or build "
                     f"{platform} on a machine of that architecture")
        raise EnvironmentUnsupported(
            f"{at}RUN for {platform} cannot run here: {'; '.join(tried)}",
            hint=(f"unset {EMULATION_ENV} to let anybuild choose" if forced else
                  f"install {PACKAGE}, or register its handlers (F flag) on the host"))



TRIAL_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/riscv64", "linux/ppc64le", "linux/s390x")


def trial_platforms(host: Platform, scratch: Path, env: Mapping[str, str], *, in_userns: bool,
                    platforms: tuple[str, ...] = TRIAL_PLATFORMS) -> list[dict[str, object]]:
    """What ``doctor`` reports: for each platform, every route tried for real (a probe program run through
    it), the first that worked, and why the others did not. Run in the namespace a build would use."""
    report: list[dict[str, object]] = []
    for text in platforms:
        platform = Platform.parse(text)
        if not foreign(host, platform):
            report.append({"platform": str(platform), "route": "native", "tried": []})
            continue
        emulator = emulator_path(platform, env)
        tried: list[str] = []
        chosen: str | None = None
        for route in (Route.HOST, Route.USERNS, Route.ENTRYPOINT):
            if route is Route.HOST:
                why = probe_host(platform, scratch)
            elif emulator is None:
                why = f"qemu-{qemu_arch(platform)}-static is not installed (Debian package {PACKAGE})"
            elif route is Route.USERNS:
                why = (register_in_namespace(platform, emulator, scratch / "binfmt_misc", scratch)
                       if in_userns else "the builder runs in no user namespace of its own")
            else:
                why = _run_explicitly(platform, emulator, scratch)
            tried.append(f"{route}: ok" if why is None else f"{route}: {why}")
            if why is None and chosen is None:
                chosen = str(route)
        report.append({"platform": str(platform), "route": chosen, "tried": tried})
    return report


def _run_explicitly(platform: Platform, emulator: Path, scratch: Path) -> str | None:
    """The entry point route's attempt: the probe program run by the emulator named on the command line."""
    with tempfile.TemporaryDirectory(prefix="emulation-", dir=scratch) as tmp:
        program = Path(tmp) / "probe"
        program.write_bytes(probe_program(platform))
        program.chmod(0o755)
        try:
            done = subprocess.run([str(emulator), str(program)], check=False, timeout=30,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"running {emulator.name}: {exc}"
    if done.returncode != PROBE_EXIT:
        return f"{emulator.name} ran the probe, which exited {done.returncode}, not {PROBE_EXIT}"
    return None


def main(argv: list[str]) -> int:
    """``python -m anybuild.builder.emulation SCRATCH``: :func:`trial_platforms` as one JSON line."""
    import json
    import platform as machine
    import sys

    from anybuild.builder.sandbox.model import USERNS_ENV

    scratch = Path(argv[1])
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="platforms-", dir=scratch) as tmp:
        host = Platform.for_machine(machine.system(), machine.machine())
        report = trial_platforms(host, Path(tmp), os.environ, in_userns=bool(os.environ.get(USERNS_ENV)))
        if (Path(tmp) / "binfmt_misc" / "register").exists():
            libc = ctypes.CDLL(None, use_errno=True)
            libc.umount2(str(Path(tmp) / "binfmt_misc").encode(), 2)  # MNT_DETACH
    sys.stdout.write(json.dumps({"host": str(host), "platforms": report}) + "\n")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
