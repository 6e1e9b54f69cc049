"""Base images made offline and pushed to the test registry under their Docker Hub names.

busybox comes from Debian's busybox-static; debian from `debootstrap --variant=minbase`
(cached as a rootfs tar, shared between xdist workers and runs under a file lock);
node:20-bookworm-slim is that debian layer plus a layer with the host's node and npm.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from tests.harness import procs
from tests.harness.oci import (
    EPOCH,
    Entry,
    ImageConfig,
    Kind,
    Layer,
    layer_from_entries,
    layer_from_tar,
    write_index_layout,
    write_layout,
)

__all__ = [
    "DEBIAN_MIRROR",
    "HUB_GROUP",
    "HUB_PASSWD",
    "PATH_ENV",
    "BaseImages",
    "busybox_entries",
    "cache_dir",
    "cached",
    "debian_foreign_rootfs_tar",
    "debian_rootfs_tar",
    "foreign_busybox",
    "is_static_elf",
    "node_layer_tar",
    "push_layout",
    "static_busybox",
    "tar_directory",
]

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The mirror this machine's /etc/apt/sources.list.d/debian.sources uses.
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SUITE = "bookworm"
CACHE_VERSION = "v1"  # bump when the way a cached artefact is made changes

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnobody:x:65534:\n"
# The accounts of Docker Hub's busybox (Buildroot's skeleton), which upstream tests name (daemon, bin...).
HUB_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nbin:x:2:2:bin:/bin:/bin/false\n"
    "sys:x:3:3:sys:/dev:/bin/false\nsync:x:4:100:sync:/bin:/bin/sync\nmail:x:8:8:mail:/var/spool/mail:/bin/false\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\noperator:x:37:37:Operator:/var:/bin/false\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n"
)
HUB_GROUP = "".join(f"{name}:x:{gid}:{'root' if name == 'wheel' else ''}\n" for name, gid in (
    ("root", 0), ("daemon", 1), ("bin", 2), ("sys", 3), ("adm", 4), ("tty", 5), ("disk", 6), ("lp", 7), ("mail", 8),
    ("kmem", 9), ("wheel", 10), ("cdrom", 11), ("dialout", 18), ("floppy", 19), ("video", 28), ("audio", 29),
    ("tape", 32), ("www-data", 33), ("operator", 37), ("utmp", 43), ("plugdev", 46), ("staff", 50), ("lock", 54),
    ("netdev", 82), ("users", 100), ("nobody", 65534)))


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    override = environ.get("ANYBUILD_TEST_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "anybuild-tests"


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached(name: str, make: Callable[[Path, Path], None], *, cache: Path) -> Path:
    """`cache/name`, made once by `make(out, scratch)` under a file lock, renamed into place.

    Shared by xdist workers and concurrent runs: the loser of the lock finds the file made.
    The rename is atomic, so a crash never leaves a half-written artefact under `name`.
    """
    final = cache / name
    if final.exists():
        return final
    with _locked(cache / f"{name}.lock"):
        if final.exists():  # another worker made it while we waited
            return final
        scratch = Path(tempfile.mkdtemp(dir=cache, prefix=f".{name}."))
        try:
            make(scratch / name, scratch)
            os.replace(scratch / name, final)
        finally:
            procs.unmount_under(scratch)  # never recurse into a leftover /proc or /sys mount
            subprocess.run(["rm", "-rf", "--one-file-system", str(scratch)], check=False)
    return final


def is_static_elf(path: Path) -> bool:
    """True for a 64-bit little-endian ELF without a PT_INTERP program header (no loader)."""
    with path.open("rb") as handle:
        header = handle.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return False
        phoff = int.from_bytes(header[0x20:0x28], "little")
        phentsize = int.from_bytes(header[0x36:0x38], "little")
        phnum = int.from_bytes(header[0x38:0x3A], "little")
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    pt_interp = 3
    return all(int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") != pt_interp for i in range(phnum))


def static_busybox() -> Path:
    """The host's statically linked busybox (Debian busybox-static), or skip/fail."""
    busybox = Path(procs.require_binary("busybox", "busybox-static")).resolve()
    if not is_static_elf(busybox):
        procs.unavailable(f"{busybox} is not statically linked: install Debian package busybox-static")
    return busybox


def foreign_busybox(arch: str, *, cache: Path) -> Path:
    """Debian's busybox-static for another architecture (e.g. arm64), the same version as the host's, fetched
    with apt-get into a private apt state (the host's dpkg architectures and lists are left alone) and cached."""
    host = Path(procs.require_binary("busybox", "busybox-static")).resolve()
    apt = procs.require_binary("apt-get", "apt")
    version = procs.run(["dpkg-query", "-W", "-f=${Version}", "busybox-static"], check=False).stdout.strip()
    if not version:
        procs.unavailable(f"{host}: the Debian package busybox-static is not installed (its version is needed)")

    def make(out: Path, scratch: Path) -> None:
        state = scratch / "apt"
        for sub in ("lists/partial", "cache/archives/partial"):
            (state / sub).mkdir(parents=True)
        options = ["-q", f"-o=Dir::State::Lists={state / 'lists'}", f"-o=Dir::Cache={state / 'cache'}",
                   f"-o=APT::Architectures::={arch}", "-o=Debug::NoLocking=1"]
        done = procs.run([apt, *options, "update"], timeout=600, check=False)
        if done.returncode == 0:
            done = procs.run([apt, *options, "download", f"busybox-static:{arch}={version}"], timeout=600,
                             check=False, cwd=scratch)
        debs = list(scratch.glob(f"busybox-static_*_{arch}.deb"))
        if done.returncode != 0 or not debs:
            procs.unavailable(f"apt-get download busybox-static:{arch}={version} failed: "
                              f"{(done.stderr or done.stdout)[-600:]}")
        procs.run(["dpkg-deb", "-x", str(debs[0]), str(scratch / "x")])
        os.replace(scratch / "x" / "bin" / "busybox", out)

    safe = version.replace(":", "_").replace("/", "_")
    return cached(f"busybox-static-{safe}-{arch}-{CACHE_VERSION}", make, cache=cache)


def busybox_entries(busybox: Path, *, mount_points: bool = True, passwd: str = _PASSWD,
                    group: str = _GROUP, applets_of: Path | None = None) -> list[Entry]:
    """Rootfs of /bin/busybox, its applet symlinks, minimal /etc/passwd and /etc/group.

    Without *mount_points* the rootfs has no /proc and no /sys, as Docker Hub's busybox and
    many minimal or distroless bases: a RUN's sandbox then has to make them. The applets are
    listed by *applets_of* (the host's busybox of the same version, for a foreign one), else by *busybox*.
    """
    applets = procs.run([str(applets_of or busybox), "--list-full"]).stdout.split()
    entries: dict[str, Entry] = {}

    def add_dir(path: str, mode: int = 0o755) -> None:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            if sub not in entries:
                entries[sub] = Entry(path=sub, kind=Kind.DIR, mode=mode if sub == path else 0o755)

    top = ("bin", "dev", "etc", "home", "proc", "sys", "usr/bin", "usr/sbin", "sbin", "var")
    for directory in top if mount_points else [d for d in top if d not in ("proc", "sys")]:
        add_dir(directory)
    add_dir("root", 0o700)
    add_dir("tmp", 0o1777)
    add_dir("var/tmp", 0o1777)
    entries["bin/busybox"] = Entry(path="bin/busybox", kind=Kind.FILE, mode=0o755, data=busybox.read_bytes())
    for applet in applets:
        path = applet.strip("/")
        if path == "bin/busybox" or path in entries:
            continue
        add_dir(path.rsplit("/", 1)[0])
        entries[path] = Entry(path=path, kind=Kind.SYMLINK, mode=0o777, target="/bin/busybox")
    entries["etc/passwd"] = Entry(path="etc/passwd", kind=Kind.FILE, mode=0o644, data=passwd.encode())
    entries["etc/group"] = Entry(path="etc/group", kind=Kind.FILE, mode=0o644, data=group.encode())
    return list(entries.values())


def tar_directory(root: Path, out: Path, *, skip_contents_of: tuple[str, ...] = ()) -> None:
    """A deterministic tar of `root`: sorted, mtime EPOCH, numeric owners kept, names dropped."""

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = EPOCH
        info.uname = info.gname = ""
        info.pax_headers = {}
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for current, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = Path(current).relative_to(root)
            if rel.as_posix() in skip_contents_of:
                dirnames.clear()
                continue
            for name in sorted([*dirnames, *filenames]):
                path = Path(current) / name
                arcname = (rel / name).as_posix()
                tar.add(path, arcname=arcname, recursive=False, filter=normalize)
            # symlinks to directories are listed in dirnames but os.walk does not follow them


def debian_rootfs_tar(*, cache: Path) -> Path:
    """The cached minbase bookworm rootfs tar, debootstrapped on first use."""
    debootstrap = procs.require_binary("debootstrap", "debootstrap")
    procs.require_root("debootstrap")

    def make(out: Path, scratch: Path) -> None:
        rootfs = scratch / "rootfs"
        done = procs.run(
            [debootstrap, "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
            timeout=1200,
            check=False,
        )
        if done.returncode != 0:
            procs.unmount_under(rootfs)
            log = rootfs / "debootstrap" / "debootstrap.log"
            procs.unavailable(
                f"debootstrap from {DEBIAN_MIRROR} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout)[-800:]}\n{procs.log_tail(log, 20)}"
            )
        for pattern in (
            "var/lib/apt/lists/*",
            "var/cache/apt/*.bin",
            "var/cache/apt/archives/*.deb",
            "var/log/*.log",
            "var/log/apt/*",
        ):
            for path in rootfs.glob(pattern):
                if path.is_file() or path.is_symlink():
                    path.unlink()
        procs.unmount_under(rootfs)  # debootstrap may leave proc/sys mounted on failure paths
        tar_directory(rootfs, out, skip_contents_of=("dev", "proc", "sys", "run", "tmp"))
        subprocess.run(["rm", "-rf", "--one-file-system", str(rootfs)], check=False)

    return cached(f"debian-{DEBIAN_SUITE}-minbase-{CACHE_VERSION}.tar", make, cache=cache)


def debian_foreign_rootfs_tar(arch: str, *, cache: Path) -> Path:
    """The cached minbase bookworm rootfs tar of another architecture (e.g. arm64): `debootstrap --foreign`,
    then its second stage run under the static emulator registered in a binfmt_misc of a user namespace's
    own (identity-mapped; Linux 6.7+), so the host's binfmt_misc is never touched (tests/harness/second_stage.py).
    Several minutes under QEMU the first time; cached after."""
    from anybuild.builder.emulation import emulator_path
    from anybuild.builder.userns import launcher_argv
    from anybuild.oci.platform import Platform

    debootstrap = procs.require_binary("debootstrap", "debootstrap")
    procs.require_root("debootstrap")
    platform = Platform.parse(f"linux/{arch}")
    emulator = emulator_path(platform, os.environ)
    if emulator is None:
        procs.unavailable(f"no static emulator for {platform}: install Debian package qemu-user-static")

    def make(out: Path, scratch: Path) -> None:
        rootfs = scratch / "rootfs"
        done = procs.run([debootstrap, "--foreign", f"--arch={arch}", "--variant=minbase", DEBIAN_SUITE, str(rootfs),
                          DEBIAN_MIRROR], timeout=1200, check=False)
        if done.returncode == 0:
            stage = [sys.executable, str(Path(__file__).with_name("second_stage.py")), str(rootfs), str(emulator),
                     str(platform), str(scratch / "emulation")]
            done = procs.run(launcher_argv(sys.executable, "identity", stage), timeout=3600, check=False)
        if done.returncode != 0:
            procs.unmount_under(rootfs)
            procs.unavailable(
                f"debootstrap --foreign --arch={arch} and its second stage under {emulator.name} failed "
                f"({done.returncode}): {(done.stderr or done.stdout)[-800:]}\n"
                f"{procs.log_tail(rootfs / 'debootstrap' / 'debootstrap.log', 20)}")
        for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                        "var/log/*.log", "var/log/apt/*"):
            for path in rootfs.glob(pattern):
                if path.is_file() or path.is_symlink():
                    path.unlink()
        procs.unmount_under(rootfs)
        tar_directory(rootfs, out, skip_contents_of=("dev", "proc", "sys", "run", "tmp"))
        subprocess.run(["rm", "-rf", "--one-file-system", str(rootfs)], check=False)

    return cached(f"debian-{DEBIAN_SUITE}-minbase-{arch}-{CACHE_VERSION}.tar", make, cache=cache)


def _tar_names(tar_path: Path) -> set[str]:
    with tarfile.open(tar_path) as tar:
        return {name.removeprefix("./") for name in tar.getnames()}


def _node_libs_missing(node: Path, names: set[str]) -> list[Path]:
    """Host libraries `node` links against that the debian rootfs does not have."""
    missing: list[Path] = []
    for line in procs.run(["ldd", str(node)]).stdout.splitlines():
        parts = line.split("=>")
        if len(parts) != 2 or not parts[1].strip().startswith("/"):
            continue
        lib = Path(parts[1].split()[0])
        rel = lib.as_posix().lstrip("/")
        candidates = {rel, f"usr/{rel}", rel.removeprefix("usr/")}
        if not candidates & names:
            missing.append(lib)
    return missing


def node_layer_tar(*, debian_tar: Path, cache: Path) -> Path:
    """The cached layer adding the host's node + npm and a `node` user (uid 1000) to debian."""
    node = Path(procs.require_binary("node", "nodejs"))
    version = procs.run([str(node), "--version"]).stdout.strip()

    def make(out: Path, scratch: Path) -> None:
        stage = scratch / "stage"
        node_real = node.resolve()
        (stage / "usr/bin").mkdir(parents=True)
        shutil.copy2(node_real, stage / "usr/bin/node")
        modules = node_real.parent.parent / "lib" / "node_modules"
        if modules.is_dir():
            shutil.copytree(modules, stage / "usr/lib/node_modules", symlinks=True)
            for tool in ("npm", "npx", "corepack"):
                host_link = node_real.parent / tool
                if host_link.is_symlink():
                    (stage / "usr/bin" / tool).symlink_to(os.readlink(host_link))
        names = _tar_names(debian_tar)
        for lib in _node_libs_missing(node_real, names):
            target = stage / "usr" / lib.as_posix().lstrip("/").removeprefix("usr/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib.resolve(), target)
        with tarfile.open(debian_tar) as tar:
            passwd, group = tar.extractfile("etc/passwd"), tar.extractfile("etc/group")
            assert passwd is not None and group is not None
            (stage / "etc").mkdir()
            (stage / "etc/passwd").write_bytes(passwd.read() + b"node:x:1000:1000::/home/node:/bin/bash\n")
            (stage / "etc/group").write_bytes(group.read() + b"node:x:1000:\n")
        (stage / "home/node").mkdir(parents=True)
        os.chown(stage / "home/node", 1000, 1000)
        tar_directory(stage, out)
        _check_node_runs(debian_tar, out, scratch / "check")

    safe = version.lstrip("v").replace("/", "_")
    return cached(f"node-{safe}-on-{DEBIAN_SUITE}-{CACHE_VERSION}.tar", make, cache=cache)


def _check_node_runs(debian_tar: Path, node_tar: Path, root: Path) -> None:
    """Unpack both layers and run `node --version` inside them with chroot."""
    root.mkdir()
    for layer in (debian_tar, node_tar):
        procs.run(["tar", "-xf", str(layer), "-C", str(root)], timeout=300)
    try:
        procs.run(["chroot", str(root), "/usr/bin/node", "--version"], timeout=60)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


def push_layout(layout: Path, tag: str, destination: str, *, all_platforms: bool = False) -> None:
    """`skopeo copy` one tag of an OCI layout to a plain-HTTP registry (an index whole with *all_platforms*)."""
    skopeo = procs.require_binary("skopeo", "skopeo")
    procs.run(
        [
            skopeo,
            "--insecure-policy",
            "copy",
            *(["--all"] if all_platforms else []),
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{layout}:{tag}",
            f"docker://{destination}",
        ],
        timeout=300,
    )


class BaseImages:
    """Base images in the test registry, which then serves as a docker.io mirror."""

    __slots__ = (
        "_busybox_multi",
        "_debian",
        "_debian_layer",
        "_debian_multi",
        "_node",
        "_work",
        "busybox",
        "busybox_layout",
        "cache",
        "mirror_host",
    )

    def __init__(self, *, mirror_host: str, work: Path, cache: Path) -> None:
        self.mirror_host = mirror_host
        self.cache = cache
        self._work = work
        self._debian: str | None = None
        self._debian_layer: Layer | None = None
        self._node: str | None = None
        self._busybox_multi: str | None = None
        self._debian_multi: str | None = None
        self.busybox_layout = work / "busybox-layout"
        busybox = static_busybox()
        layer = layer_from_entries(busybox_entries(busybox), comment="busybox-static rootfs")
        config = ImageConfig(env=[PATH_ENV], cmd=["sh"])
        write_layout(self.busybox_layout, layers=[layer], config=config, tags=["1.36", "latest"])
        for tag in ("1.36", "latest"):
            push_layout(self.busybox_layout, tag, f"{mirror_host}/library/busybox:{tag}")
        self.busybox = f"{mirror_host}/library/busybox:1.36"
        # Docker Hub's accounts, with and without /proc and /sys: the two kinds of base of the upstream
        # conformance cases (tests/builder/test_upstream_conformance.py).
        for tag, mount_points in (("full", True), ("bare", False)):
            entries = busybox_entries(busybox, mount_points=mount_points, passwd=HUB_PASSWD, group=HUB_GROUP)
            layout = work / f"busybox-{tag}-layout"
            layer = layer_from_entries(entries, comment=f"busybox-static rootfs ({tag})")
            write_layout(layout, layers=[layer], config=config, tags=[tag])
            push_layout(layout, tag, f"{mirror_host}/library/busybox:{tag}")

    def busybox_multi(self) -> str:
        """Reference of `library/busybox:1.36-multi` in the mirror: an image index of linux/amd64 (the host's
        busybox-static) and linux/arm64 (Debian's busybox-static:arm64), as Docker Hub's busybox is one."""
        if self._busybox_multi is None:
            host = static_busybox()
            arm64 = foreign_busybox("arm64", cache=self.cache)
            config = ImageConfig(env=[PATH_ENV], cmd=["sh"])
            images = {
                "linux/amd64": ([layer_from_entries(busybox_entries(host), comment="busybox-static rootfs")], config),
                "linux/arm64": ([layer_from_entries(busybox_entries(arm64, applets_of=host),
                                                    comment="busybox-static:arm64 rootfs")], config),
            }
            layout = self._work / "busybox-multi-layout"
            write_index_layout(layout, images=images, tags=["1.36-multi"])
            push_layout(layout, "1.36-multi", f"{self.mirror_host}/library/busybox:1.36-multi", all_platforms=True)
            self._busybox_multi = f"{self.mirror_host}/library/busybox:1.36-multi"
        return self._busybox_multi

    def _debian_base_layer(self) -> Layer:
        """The debootstrap layer, compressed once per session (debian and node share it)."""
        if self._debian_layer is None:
            tar = debian_rootfs_tar(cache=self.cache)
            self._debian_layer = layer_from_tar(tar, comment="debootstrap --variant=minbase bookworm")
        return self._debian_layer

    def debian(self) -> str:
        """Reference of `library/debian:bookworm` in the mirror (debootstraps on first use)."""
        if self._debian is None:
            layout = self._work / "debian-layout"
            config = ImageConfig(env=[PATH_ENV], cmd=["bash"])
            write_layout(layout, layers=[self._debian_base_layer()], config=config, tags=["bookworm", "bookworm-slim"])
            for tag in ("bookworm", "bookworm-slim"):
                push_layout(layout, tag, f"{self.mirror_host}/library/debian:{tag}")
            self._debian = f"{self.mirror_host}/library/debian:bookworm"
        return self._debian

    def debian_multi(self) -> str:
        """Reference of `library/debian:bookworm-multi` in the mirror: an image index of the linux/amd64 minbase
        and a linux/arm64 one (debootstrap --foreign, completed under the emulator)."""
        if self._debian_multi is None:
            arm64 = layer_from_tar(debian_foreign_rootfs_tar("arm64", cache=self.cache),
                                   comment="debootstrap --variant=minbase --arch=arm64 bookworm")
            config = ImageConfig(env=[PATH_ENV], cmd=["bash"])
            layout = self._work / "debian-multi-layout"
            write_index_layout(layout, images={"linux/amd64": ([self._debian_base_layer()], config),
                                               "linux/arm64": ([arm64], config)}, tags=["bookworm-multi"])
            push_layout(layout, "bookworm-multi", f"{self.mirror_host}/library/debian:bookworm-multi",
                        all_platforms=True)
            self._debian_multi = f"{self.mirror_host}/library/debian:bookworm-multi"
        return self._debian_multi

    def node(self) -> str:
        """Reference of `library/node:20-bookworm-slim` in the mirror."""
        if self._node is None:
            debian_tar = debian_rootfs_tar(cache=self.cache)
            node_tar = node_layer_tar(debian_tar=debian_tar, cache=self.cache)
            version = procs.run(["node", "--version"]).stdout.strip().lstrip("v")
            layout = self._work / "node-layout"
            layers = [
                self._debian_base_layer(),
                layer_from_tar(node_tar, comment="host node and npm, user node"),
            ]
            env = [PATH_ENV, f"NODE_VERSION={version}"]
            host_ca = Path(os.environ.get("NODE_EXTRA_CA_CERTS", ""))
            if host_ca.is_file():
                # This machine reaches the npm registry through a TLS-intercepting proxy that only the
                # host's CA bundle trusts; a node image made here trusts it too, as a company base would.
                layers.append(layer_from_entries([
                    Entry(path="etc/ssl", kind=Kind.DIR), Entry(path="etc/ssl/certs", kind=Kind.DIR),
                    Entry(path="etc/ssl/certs/host-ca.crt", kind=Kind.FILE, mode=0o644, data=host_ca.read_bytes()),
                ], comment="the host's CA bundle"))
                env.append("NODE_EXTRA_CA_CERTS=/etc/ssl/certs/host-ca.crt")
            config = ImageConfig(env=env, cmd=["node"])
            write_layout(layout, layers=layers, config=config, tags=["20-bookworm-slim"])
            push_layout(layout, "20-bookworm-slim", f"{self.mirror_host}/library/node:20-bookworm-slim")
            self._node = f"{self.mirror_host}/library/node:20-bookworm-slim"
        return self._node
