"""A registry with Bearer-token auth (``auth: token``) and its token issuer, for tests/registry."""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import procs
from tests.harness.registry import RegistryRequest, parse_access_log

from .tokenissuer import ISSUER, SERVICE, TokenIssuer, make_issuer, serving


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRegistry:
    host: str
    issuer: TokenIssuer
    log_path: Path
    writer: tuple[str, str]
    reader: tuple[str, str]

    def requests(self) -> list[RegistryRequest]:
        return parse_access_log(self.log_path.read_text(errors="replace"))


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    binary = procs.require_binary("docker-registry", "docker-registry")
    root = tmp_path_factory.mktemp("token-registry")
    writer = ("writer", secrets.token_urlsafe(12))
    reader = ("reader", secrets.token_urlsafe(12))
    issuer = make_issuer(root / "issuer", {writer[0]: (writer[1], frozenset({"pull", "push"})),
                                           reader[0]: (reader[1], frozenset({"pull"}))})
    with serving(issuer):
        port = procs.free_port()
        config = {
            "version": 0.1,
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
            "auth": {"token": {"realm": issuer.realm, "service": SERVICE, "issuer": ISSUER,
                               "rootcertbundle": str(issuer.cert_path)}},
        }
        (root / "config.yml").write_text(json.dumps(config))
        log_path = root / "access.log"
        proc = procs.start([binary, "serve", str(root / "config.yml")], log_path=root / "registry.log",
                           stdout_path=log_path)
        try:
            procs.wait_until(functools.partial(procs.port_open, port), what="docker-registry (token auth)",
                             timeout=30, proc=proc, log_path=root / "registry.log")
            yield TokenRegistry(host=f"127.0.0.1:{port}", issuer=issuer, log_path=log_path, writer=writer,
                                reader=reader)
        finally:
            procs.stop(proc)
