"""The part every sandbox shares: mount targets made ready, output collected, all undone.

:func:`prepared` is a context manager around one run. On entry it lists the
mounts (``/proc``, ``/dev``, ``/sys``, the host's ``/etc/resolv.conf`` and
``/etc/hosts``, then the RUN's own mounts), resolves their targets inside the
rootfs and creates the missing ones as stubs. On exit, whatever happened
(failure, Ctrl-C), it unmounts anything left under the rootfs, removes the stubs
and the run's temporary directory.

The mount points of the container runtime itself (``/proc``, ``/dev``, ``/sys``) stay when
the image had none, empty directories owned by root, as Docker's do: runc makes them,
and BuildKit's stub cleaner removes only /etc/hosts, /etc/resolv.conf and the RUN's own
mount targets. BuildKit keeps them on purpose (moby/buildkit#7039 even makes them again
where a rootless runtime did not, so that the same Dockerfile gives the same layer).
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.builder.inroot import RootDir
from anybuild.builder.sandbox.model import MountKind, RunSpec
from anybuild.builder.sandbox.stubs import make_stubs, remove_stubs, unmount_below
from anybuild.cancellation import cleanup
from anybuild.process import Runner

__all__ = ["DEFAULT_HOST_FILES", "TAIL_LINES", "Prepared", "ResolvedMount", "prepared"]

TAIL_LINES = 40
RUNTIME_MOUNTS = frozenset({"proc", "dev", "sys"})  # kinds whose mount points stay in the layer (made 0755)
DEFAULT_HOST_FILES: Mapping[str, Path] = {
    "/etc/resolv.conf": Path("/etc/resolv.conf"),
    "/etc/hosts": Path("/etc/hosts"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedMount:
    """A mount with its target resolved inside the rootfs."""

    kind: str  # "proc" | "dev" | "sys" | "bind" | "tmpfs"
    target: str  # absolute path inside the rootfs, symlinks resolved
    host_target: Path  # the same on the host
    source: Path | None = None
    readonly: bool = False
    own: bool = False  # the RUN's own --mount (a failure to make it is the Dockerfile's, not the sandbox's)
    size: int | None = None  # bytes, for a tmpfs

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "target": str(self.host_target),
                "source": str(self.source) if self.source else None, "readonly": self.readonly,
                "own": self.own, "guest": self.target, "size": self.size}


@dataclass(slots=True, kw_only=True)
class Prepared:
    root: RootDir
    mounts: list[ResolvedMount]
    workdir: Path  # private temporary directory for this run
    on_line: Callable[[str], None]
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))

    def line(self, text: str) -> None:
        self.tail.append(text)
        self.on_line(text)


def standard_mounts(spec: RunSpec, host_files: Mapping[str, Path]) -> list[tuple[str, str, Path | None, bool]]:
    """(kind, target, source, readonly) of every mount of a run, in mount order."""
    mounts: list[tuple[str, str, Path | None, bool]] = [
        ("proc", "/proc", None, False),
        ("dev", "/dev", None, False),
        ("sys", "/sys", None, True),
    ]
    mounts += [("bind", target, source, True) for target, source in host_files.items() if source.exists()]
    for mount in spec.mounts:
        kind = "tmpfs" if mount.kind is MountKind.TMPFS else "bind"
        mounts.append((kind, mount.target, mount.source, mount.readonly))
    return mounts


def _sizes(spec: RunSpec, wanted: int) -> list[int | None]:
    """The tmpfs size of each of the *wanted* mounts (the RUN's own come last)."""
    own = [m.size for m in spec.mounts]
    return [None] * (wanted - len(own)) + own


def _is_dir(kind: str, source: Path | None) -> bool:
    return kind in ("proc", "dev", "sys", "tmpfs") or (source is not None and source.is_dir())


@contextlib.contextmanager
def prepared(
    spec: RunSpec,
    *,
    runner: Runner,
    work: Path,
    on_line: Callable[[str], None],
    host_files: Mapping[str, Path] = DEFAULT_HOST_FILES,
) -> Iterator[Prepared]:
    wanted = standard_mounts(spec, host_files)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    with RootDir.open(spec.rootfs) as root:
        stubs, resolved = make_stubs(root, [(target, _is_dir(kind, source)) for kind, target, source, _ in wanted])
        runtime = {rel for (kind, *_), rel in zip(wanted, resolved, strict=True) if kind in RUNTIME_MOUNTS}
        for stub in stubs:
            if stub.path in runtime:  # whatever the umask: runc makes them 0755
                with root.parent(stub.path) as (fd, name):
                    os.chmod(name, 0o755, dir_fd=fd)  # noqa: S103 - runc's mode
        stubs = [stub for stub in stubs if stub.path not in runtime]
        try:
            first_own = len(wanted) - len(spec.mounts)
            mounts = [
                ResolvedMount(kind=kind, target="/" + rel if rel != "." else "/", host_target=root.host_path(rel),
                              source=source, readonly=readonly, own=index >= first_own, size=size)
                for index, ((kind, _target, source, readonly), rel, size)
                in enumerate(zip(wanted, resolved, _sizes(spec, len(wanted)), strict=True))
            ]
            yield Prepared(root=root, mounts=mounts, workdir=workdir, on_line=on_line)
        finally:
            with cleanup():  # a stopped RUN is undone all the same
                try:
                    unmount_below(spec.rootfs, runner=runner, include_root=False)
                    remove_stubs(root, stubs)
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)

