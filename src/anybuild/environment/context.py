"""What a probe may touch: an injectable root, environment, runner and HTTP transport."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from anybuild.config import GithubSettings
from anybuild.process import Runner, SubprocessRunner

if TYPE_CHECKING:  # httpx costs ~40 ms to import: only a probe that talks HTTP loads it
    import httpx

__all__ = ["ProbeContext", "TransportFactory", "default_transport"]

TransportFactory = Callable[[str], "httpx.BaseTransport"]


def default_transport(socket_path: str) -> httpx.BaseTransport:
    """An httpx transport speaking HTTP over the unix socket at *socket_path*."""
    import httpx

    return httpx.HTTPTransport(uds=socket_path)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeContext:
    """Everything the probes read from, so tests can point them at a prepared tree.

    ``root`` prefixes every absolute system path the probes read (/proc, /etc,
    /.dockerenv, /var/run/secrets…). ``trials`` allows real side-effect probes
    (a trial overlay mount, an ``unshare --user`` attempt); tests of prepared
    trees turn it off. ``thorough`` (doctor) asks everything; a build turns it
    off to ask only what its plan reads: tools by presence (docker's version and
    buildx excepted, they choose its mode), no overlay trial for the built-in
    builder (it makes its own) or on tmpfs, buildah's only where buildah or
    podman is on PATH.
    """

    root: Path = Path("/")
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    runner: Runner = field(default_factory=SubprocessRunner)
    hostname: str = field(default_factory=socket.gethostname)
    cwd: Path = field(default_factory=Path.cwd)
    timeout: float = 1.0
    online: bool = False
    trials: bool = True
    thorough: bool = True
    registries: tuple[str, ...] = ()
    docker_transport: TransportFactory = default_transport
    docker_daemon_config: Path | None = None  # default <root>/etc/docker/daemon.json
    docker_log: Path | None = None  # a dockerd log to read errors from
    http_transport: httpx.BaseTransport | None = None  # for --online checks (GitHub API); None: real network
    github: GithubSettings | None = None  # anybuild.toml's [backend.github]: its repository wins over the remote

    def path(self, absolute: str) -> Path:
        """*absolute* (e.g. "/proc/self/status") under the probe root."""
        return self.root / absolute.lstrip("/")

    def read(self, absolute: str) -> str | None:
        """The text of a system file under the root, or None when unreadable."""
        try:
            return self.path(absolute).read_text(errors="replace")
        except OSError:
            return None

    @property
    def home(self) -> Path:
        return Path(self.env.get("HOME") or "/root")

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.env.get("PATH", os.defpath))

    @property
    def anybuild_data_dir(self) -> Path:
        explicit = self.env.get("ANYBUILD_DATA_DIR")
        if explicit:
            return Path(explicit)
        xdg = self.env.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg else self.home / ".local" / "share"
        return base / "anybuild"
