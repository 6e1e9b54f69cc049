"""The registry fixtures are real Distribution registries: blobs go in and come back out."""

from __future__ import annotations

import hashlib
import ssl
from urllib.parse import urljoin

import httpx
import pytest

from tests.harness.registry import Registry


def _push_blob(client: httpx.Client, base: str, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = client.post(f"{base}/v2/{repository}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = urljoin(base, started.headers["Location"])
    # The upload URL carries its own query (_state=...): add the digest to it.
    put = client.put(
        httpx.URL(location).copy_merge_params({"digest": digest}),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 201, put.text
    return digest


def test_registry_blob_push_then_pull_returns_same_bytes(registry: Registry) -> None:
    data = b"anybuild harness blob\n"
    with httpx.Client(timeout=10) as client:
        digest = _push_blob(client, registry.url, "harness/plain", data)
        pulled = client.get(f"{registry.url}/v2/harness/plain/blobs/{digest}")
    assert pulled.status_code == 200
    assert pulled.content == data
    assert ("GET", f"/v2/harness/plain/blobs/{digest}", 200) in [tuple(r) for r in registry.requests()]


def test_auth_registry_without_credentials_is_401(auth_registry: Registry) -> None:
    with httpx.Client(timeout=10) as client:
        reply = client.post(f"{auth_registry.url}/v2/harness/auth/blobs/uploads/")
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith("Basic ")


def test_auth_registry_with_credentials_push_then_pull(auth_registry: Registry) -> None:
    assert auth_registry.auth is not None
    data = b"secret layer\n"
    with httpx.Client(timeout=10, auth=auth_registry.auth) as client:
        digest = _push_blob(client, auth_registry.url, "harness/auth", data)
        pulled = client.get(f"{auth_registry.url}/v2/harness/auth/blobs/{digest}")
    assert pulled.status_code == 200
    assert pulled.content == data
    statuses = [r.status for r in auth_registry.requests()]
    assert 401 in statuses
    assert 201 in statuses


def test_tls_registry_with_test_ca_push_then_pull(tls_registry: Registry) -> None:
    assert tls_registry.ca_cert is not None
    assert tls_registry.url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(tls_registry.ca_cert))
    data = b"over tls\n"
    with httpx.Client(timeout=10, verify=context) as client:
        digest = _push_blob(client, tls_registry.url, "harness/tls", data)
        pulled = client.get(f"{tls_registry.url}/v2/harness/tls/blobs/{digest}")
    assert pulled.content == data


def test_tls_registry_without_test_ca_fails_verification(tls_registry: Registry) -> None:
    with httpx.Client(timeout=10) as client, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get(f"{tls_registry.url}/v2/")
