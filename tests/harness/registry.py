"""A real Distribution registry (`docker-registry serve`) on 127.0.0.1: plain, Basic auth, TLS."""

from __future__ import annotations

import functools
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tests.harness import procs
from tests.harness.tlsca import TestCA

__all__ = ["Registry", "RegistryRequest", "parse_access_log", "running_registry"]

_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')


class RegistryRequest(NamedTuple):
    """One served request; compares equal to a plain (method, path, status) tuple."""

    method: str
    path: str
    status: int


def parse_access_log(text: str) -> list[RegistryRequest]:
    """One RegistryRequest per combined-log-format line of the registry's access log."""
    found: list[RegistryRequest] = []
    for line in text.splitlines():
        match = _ACCESS_LINE.search(line)
        if match is not None:
            found.append(RegistryRequest(method=match["method"], path=match["path"], status=int(match["status"])))
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Registry:
    host: str
    url: str
    root: Path
    log_path: Path
    error_log_path: Path
    config_path: Path
    username: str | None = None
    password: str | None = None
    ca_cert: Path | None = None
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)

    def requests(self) -> list[RegistryRequest]:
        """Requests served so far, in order, from the access log (one line per request)."""
        return parse_access_log(self.log_path.read_text(errors="replace"))


def _config(*, root: Path, port: int, htpasswd: Path | None, tls: TestCA | None) -> dict[str, object]:
    http: dict[str, object] = {
        "addr": f"127.0.0.1:{port}",
        "secret": secrets.token_hex(16),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if tls is not None:
        http["tls"] = {"certificate": str(tls.server_cert), "key": str(tls.server_key)}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "anybuild-test", "path": str(htpasswd)}}
    return config


def _write_htpasswd(path: Path, username: str, password: str) -> None:
    htpasswd = procs.require_binary("htpasswd", "apache2-utils")
    # -i reads the password from stdin so it never shows in `ps`.
    done = procs.run([htpasswd, "-Bin", username], input=password)
    path.write_text(done.stdout)


@contextmanager
def running_registry(
    root: Path, *, auth: bool = False, tls: TestCA | None = None, attempts: int = 3
) -> Iterator[Registry]:
    """Start a registry with storage and logs under `root`; stop it on exit."""
    binary = procs.require_binary("docker-registry", "docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    username = password = None
    htpasswd = None
    if auth:
        username, password = "anybuild", secrets.token_urlsafe(12)
        htpasswd = root / "htpasswd"
        _write_htpasswd(htpasswd, username, password)
    log_path, error_log_path = root / "access.log", root / "registry.log"
    config_path = root / "config.yml"
    last_error: procs.HarnessError | None = None
    for _ in range(attempts):
        port = procs.free_port()
        # JSON is YAML: the registry reads it as its config file.
        config_path.write_text(json.dumps(_config(root=root, port=port, htpasswd=htpasswd, tls=tls)))
        proc = procs.start([binary, "serve", str(config_path)], log_path=error_log_path, stdout_path=log_path)
        try:
            procs.wait_until(
                functools.partial(procs.port_open, port),
                what="docker-registry",
                timeout=30,
                proc=proc,
                log_path=error_log_path,
            )
        except procs.HarnessError as exc:  # most likely the port was taken meanwhile
            procs.stop(proc)
            last_error = exc
            continue
        scheme = "https" if tls is not None else "http"
        registry = Registry(
            host=f"127.0.0.1:{port}",
            url=f"{scheme}://127.0.0.1:{port}",
            root=root,
            log_path=log_path,
            error_log_path=error_log_path,
            config_path=config_path,
            username=username,
            password=password,
            ca_cert=tls.ca_cert if tls is not None else None,
            proc=proc,
        )
        try:
            yield registry
        finally:
            procs.stop(proc)
        return
    raise procs.HarnessError(f"docker-registry did not start after {attempts} attempts") from last_error
