"""A private Docker Engine: its own data root, exec root, socket, pidfile and containerd.

Two of these coexist on one machine (one per xdist worker): dockerd starts its own
containerd with its socket and state under --exec-root and its content under --data-root,
so nothing is shared through /run/containerd or /var/lib/docker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import procs

__all__ = [
    "DOCKER_CLI",
    "Dockerd",
    "dockerd_argv",
    "ping",
    "running_dockerd",
    "short_tempdir",
    "write_daemon_json",
]

DOCKER_CLI = "/usr/bin/docker"  # Debian's 20.10 client: BuildKit with DOCKER_BUILDKIT=1
_DRIVER_FAILURE = ("driver not supported", "failed to mount overlay", "error initializing graphdriver")


@dataclass(frozen=True, slots=True, kw_only=True)
class Dockerd:
    host: str  # unix:///tmp/abd-xxxx/docker.sock
    env: Mapping[str, str]
    socket_path: Path
    data_root: Path
    exec_root: Path
    pidfile: Path
    log_path: Path
    storage_driver: str
    proc: subprocess.Popen[bytes] = field(repr=False)

    def docker(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,  # noqa: A002 (as in subprocess.run)
        timeout: float = 600.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run /usr/bin/docker against this daemon."""
        return procs.run([DOCKER_CLI, *args], env=self.env, check=check, input=input, timeout=timeout)


def short_tempdir(prefix: str) -> Path:
    """A directory under /tmp short enough for unix socket paths (108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def write_daemon_json(path: Path) -> None:
    """A private daemon.json; keeps the engine's identity key beside it instead of /etc/docker."""
    path.write_text(json.dumps({"deprecated-key-path": str(path.parent / "key.json")}))


def dockerd_argv(
    binary: str,
    *,
    data_root: Path,
    exec_root: Path,
    socket_path: Path,
    pidfile: Path,
    config_file: Path,
    storage_driver: str,
    mirror_host: str | None,
) -> list[str]:
    argv = [
        binary,
        "--config-file",
        str(config_file),
        "--data-root",
        str(data_root),
        "--exec-root",
        str(exec_root),
        "--host",
        f"unix://{socket_path}",
        "--pidfile",
        str(pidfile),
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--userland-proxy=false",
        "--shutdown-timeout",
        "5",
        "--storage-driver",
        storage_driver,
        "--log-level",
        "warn",
    ]
    if mirror_host is not None:
        argv += ["--registry-mirror", f"http://{mirror_host}", "--insecure-registry", mirror_host]
    return argv


def ping(socket_path: Path) -> bool:
    """True when the daemon answers GET /_ping on its socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(4096)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _pids_mentioning(marker: str) -> list[int]:
    """Processes whose command line mentions `marker` (our unique temp dir): stray shims."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _kill_strays(marker: str) -> None:
    for pid in _pids_mentioning(marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _start(
    binary: str,
    *,
    short: Path,
    data_root: Path,
    storage_driver: str,
    mirror_host: str | None,
    timeout: float,
) -> tuple[subprocess.Popen[bytes], Path]:
    socket_path, exec_root = short / "docker.sock", short / "x"
    config_file = short / "daemon.json"
    write_daemon_json(config_file)
    log_path = data_root.parent / f"dockerd-{storage_driver}.log"
    data_root.mkdir(parents=True, exist_ok=True)
    argv = dockerd_argv(
        binary,
        data_root=data_root,
        exec_root=exec_root,
        socket_path=socket_path,
        pidfile=short / "docker.pid",
        config_file=config_file,
        storage_driver=storage_driver,
        mirror_host=mirror_host,
    )
    proc = procs.start(argv, log_path=log_path)
    try:
        procs.wait_until(lambda: ping(socket_path), what="dockerd", timeout=timeout, proc=proc, log_path=log_path)
    except procs.HarnessError:
        procs.stop(proc)
        raise
    return proc, log_path


@contextmanager
def running_dockerd(
    work: Path,
    *,
    mirror_host: str | None,
    storage_drivers: Sequence[str] = ("overlay2", "vfs"),
    timeout: float = 60.0,
) -> Iterator[Dockerd]:
    """Start dockerd with its data root under `work`; the first storage driver that works wins."""
    procs.require_root("dockerd")
    binary = procs.require_binary("dockerd", "docker.io")
    if not Path(DOCKER_CLI).exists():
        procs.unavailable(f"{DOCKER_CLI} not found: install Debian package docker.io")
    short = short_tempdir("abd-")
    data_root = work / "data"
    proc: subprocess.Popen[bytes] | None = None
    try:
        failure: procs.HarnessError | None = None
        for driver in storage_drivers:
            try:
                proc, log_path = _start(
                    binary,
                    short=short,
                    data_root=data_root,
                    storage_driver=driver,
                    mirror_host=mirror_host,
                    timeout=timeout,
                )
            except procs.HarnessError as exc:
                failure = exc
                procs.unmount_under(data_root)
                if not any(marker in str(exc) for marker in _DRIVER_FAILURE):
                    raise
                continue
            docker_config = short / "cli"
            docker_config.mkdir(exist_ok=True)
            env = {
                **os.environ,
                "DOCKER_HOST": f"unix://{short / 'docker.sock'}",
                "DOCKER_BUILDKIT": "1",
                "DOCKER_CONFIG": str(docker_config),
            }
            daemon = Dockerd(
                host=env["DOCKER_HOST"],
                env=env,
                socket_path=short / "docker.sock",
                data_root=data_root,
                exec_root=short / "x",
                pidfile=short / "docker.pid",
                log_path=log_path,
                storage_driver=driver,
                proc=proc,
            )
            daemon.docker("version")
            yield daemon
            return
        raise procs.HarnessError(f"dockerd failed with every storage driver {storage_drivers}") from failure
    finally:
        if proc is not None:
            procs.stop(proc, timeout=20)
        _kill_strays(str(short))
        procs.unmount_under(data_root)
        procs.unmount_under(short)
        procs.remove_tree(short)
        procs.remove_tree(data_root)
