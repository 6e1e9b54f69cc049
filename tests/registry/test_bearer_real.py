"""Bearer tokens against a real registry with ``auth: token`` and a JWT-signing issuer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anybuild.errors import RegistryAuthError, RegistryError
from anybuild.oci import LayoutStore, Platform
from anybuild.redaction import Redactor
from anybuild.registry import Credentials, Reference, RegistryClient

from ..oci.images import make_image
from .conftest import TokenRegistry


def _client(user: tuple[str, str], redactor: Redactor | None = None) -> RegistryClient:
    creds = Credentials(username=user[0], password=user[1])
    return RegistryClient(credentials=lambda host: creds, redactor=redactor)


def test_bearer_push_pull_copy_with_scope_upgrade_and_mount(token_registry: TokenRegistry, tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path / "src")
    descriptor = make_image(store, [{"a": os.urandom(10_000)}, {"b": os.urandom(10_000)}])
    src = Reference.parse(f"{token_registry.host}/team/app:1")
    issuer = token_registry.issuer
    redactor = Redactor()
    with _client(token_registry.writer, redactor) as client:
        # the same client first reads (a pull token; the image is not there yet), then pushes
        with pytest.raises(RegistryError) as missing:
            client.get_manifest(src)
        assert missing.value.status == 404
        first = len(issuer.requests)
        client.push_image(store, descriptor, src)
        assert issuer.requests[first - 1]["scopes"] == ["repository:team/app:pull"]
        assert "repository:team/app:pull,push" in issuer.requests[first]["scopes"]  # type: ignore[operator]

        before, asked = len(token_registry.requests()), len(issuer.requests)
        result = client.copy_image(src, Reference.parse(f"{token_registry.host}/other/app:1"),
                                   LayoutStore.create(tmp_path / "scratch"))
    assert result.blobs.get("mounted") == 3
    mounts = [r for r in token_registry.requests()[before:] if r.method == "POST" and "mount=" in r.path]
    assert [r.status for r in mounts] == [201, 201, 201]
    # A cross-repository mount needs one token with push on the target and pull on the source. The
    # copy's requests run in parallel, so which token request comes last depends on the threads.
    scopes = [r["scopes"] for r in issuer.requests[asked:]]
    assert any("repository:other/app:pull,push" in s  # type: ignore[operator]
               and any(x.startswith("repository:team/app:pull") for x in s)  # type: ignore[attr-defined]
               for s in scopes), scopes
    assert all(redactor(f"x {token}") == "x ***" for token in issuer.tokens)

    out = LayoutStore.create(tmp_path / "out")
    with _client(token_registry.reader) as reader:
        pulled = reader.pull_image(Reference.parse(f"{token_registry.host}/other/app:1"), out,
                                   platform=Platform.parse("linux/amd64"))
    assert pulled.descriptor.digest == descriptor.digest


def test_bearer_reader_cannot_push(token_registry: TokenRegistry, tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path / "src")
    descriptor = make_image(store, [{"a": b"reader"}])
    with _client(token_registry.reader) as client, pytest.raises(RegistryAuthError) as info:
        client.push_image(store, descriptor, Reference.parse(f"{token_registry.host}/team/denied:1"))
    assert info.value.status == 401
    assert token_registry.reader[1] not in str(info.value.to_dict())


def test_bearer_wrong_password_refused_by_issuer(token_registry: TokenRegistry) -> None:
    with _client(("writer", "not-the-password")) as client, pytest.raises(RegistryAuthError) as info:
        client.get_manifest(Reference.parse(f"{token_registry.host}/team/app:1"))
    assert "refused the credentials" in info.value.message
    assert "not-the-password" not in str(info.value.to_dict())
