"""RegistryClient over an injected httpx transport: retries, errors, verification, mirrors.

The transport answers from a table of canned responses; the behaviour against a real
registry is covered by the *_real.py tests.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from anybuild.errors import IntegrityError, RegistryAuthError, RegistryError
from anybuild.oci import Descriptor, Digest, Index, LayoutStore, Manifest, MediaType, Platform
from anybuild.registry import Reference, RegistryClient, RetryPolicy, is_loopback
from anybuild.registry.credentials import Credentials

from ..oci.images import make_image

Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Script:
    """Answers requests from a list of (method, path-substring, response-or-factory), in order of use."""

    def __init__(self, routes: list[tuple[str, str, Callable[[], httpx.Response] | httpx.Response]]) -> None:
        self.routes = routes
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url}")
        for i, (method, path, answer) in enumerate(self.routes):
            if method == request.method and path in str(request.url):
                if not callable(answer):
                    del self.routes[i]
                    return answer
                return answer()
        return httpx.Response(404, json={"errors": [{"code": "NOT_FOUND", "message": "no route"}]})


def _client(handler: Handler, sleeps: Sleeps | None = None, **options: object) -> RegistryClient:
    return RegistryClient(transport=httpx.MockTransport(handler), sleep=sleeps if sleeps is not None else Sleeps(),
                          wall_clock=lambda: 1_000_000.0, **options)  # type: ignore[arg-type]


REF = Reference.parse("registry.test/acme/api:1")
MANIFEST = Manifest(
    config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=Digest.of_bytes(b"c"), size=1), layers=()
).to_json()


def OK() -> httpx.Response:
    return httpx.Response(200, content=MANIFEST, headers={"Content-Type": MediaType.OCI_MANIFEST})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("127.1.2.3", True), ("localhost:5000", True), ("[::1]:5000", True),
     ("::1", True), ("ghcr.io", False), ("10.0.0.1:5000", False), ("localhost.example.com", False)],
    ids=["v4-port", "v4-net", "localhost", "v6-port", "v6", "name", "private", "lookalike"],
)
def test_is_loopback_table(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_retry_policy_backoff_and_retry_after_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=10)
    assert [policy.delay(i, None) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.delay(0, 2.0) == 2.0
    assert policy.delay(0, 3600.0) == 10


def test_client_429_retry_after_seconds_honoured() -> None:
    script = Script([("GET", "/manifests/1", httpx.Response(429, headers={"Retry-After": "2"})),
                     ("GET", "/manifests/1", OK)])
    sleeps = Sleeps()
    with _client(script, sleeps) as client:
        assert client.get_manifest(REF).data == MANIFEST
    assert sleeps == [2.0]


def test_client_429_retry_after_http_date_honoured() -> None:
    when = email.utils.formatdate(1_000_007.0, usegmt=True)
    script = Script([("GET", "/manifests/1", httpx.Response(429, headers={"Retry-After": when})),
                     ("GET", "/manifests/1", OK)])
    sleeps = Sleeps()
    with _client(script, sleeps) as client:
        client.get_manifest(REF)
    assert sleeps == [7.0]


def test_client_two_503_then_success_backs_off() -> None:
    script = Script([("GET", "/manifests/1", httpx.Response(503)), ("GET", "/manifests/1", httpx.Response(503)),
                     ("GET", "/manifests/1", OK)])
    sleeps = Sleeps()
    with _client(script, sleeps) as client:
        client.get_manifest(REF)
    assert sleeps == [0.5, 1.0]


def test_client_connection_errors_exhaust_retries_with_message() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sleeps = Sleeps()
    with _client(refuse, sleeps, retry=RetryPolicy(attempts=3)) as client, pytest.raises(RegistryError) as info:
        client.get_manifest(REF)
    assert "gave up after 3 attempts" in info.value.message
    assert info.value.retryable
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(sleeps) == 2


def test_client_404_not_retried_and_codes_kept() -> None:
    body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
    script = Script([("GET", "/manifests/1", httpx.Response(404, json=body))])
    sleeps = Sleeps()
    with _client(script, sleeps) as client, pytest.raises(RegistryError) as info:
        client.get_manifest(REF)
    assert sleeps == []
    assert info.value.status == 404
    assert info.value.codes == ("MANIFEST_UNKNOWN",)
    assert "manifest unknown" in info.value.message


def test_client_error_urls_redacted() -> None:
    secret_ref = Reference.parse("registry.test/acme/api:1")
    script = Script([("HEAD", "/blobs/", httpx.Response(400, json={"errors": [
        {"code": "DENIED", "message": "bad token=abcdef123456 in request"}]}))])
    with _client(script) as client, pytest.raises(RegistryError) as info:
        client.blob_exists(secret_ref, Digest.of_bytes(b"x"))
    assert "abcdef123456" not in json.dumps(info.value.to_dict())


def test_client_401_without_credentials_is_auth_error_with_hint() -> None:
    script = Script([("GET", "/manifests/1", httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'}))])
    with _client(script) as client, pytest.raises(RegistryAuthError) as info:
        client.get_manifest(REF)
    assert info.value.status == 401
    assert "docker login" in info.value.hint


def test_client_manifest_digest_mismatch_raises_integrity_error() -> None:
    wrong = REF.at(Digest.of_bytes(b"something else"))
    script = Script([("GET", "/manifests/sha256:", OK)])
    with _client(script) as client, pytest.raises(IntegrityError, match="digest mismatch"):
        client.get_manifest(wrong)


def test_client_announced_digest_mismatch_raises() -> None:
    announced = str(Digest.of_bytes(b"other"))
    script = Script([("GET", "/manifests/1", httpx.Response(200, content=MANIFEST, headers={
        "Content-Type": MediaType.OCI_MANIFEST, "Docker-Content-Digest": announced}))])
    with _client(script) as client, pytest.raises(IntegrityError, match="digest mismatch"):
        client.get_manifest(REF)


def test_client_truncated_blob_leaves_nothing_in_layout(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    blob = Descriptor(media_type=MediaType.OCI_LAYER, digest=Digest.of_bytes(b"0123456789"), size=10)
    script = Script([("GET", "/blobs/sha256:", lambda: httpx.Response(200, content=b"01234"))])
    with _client(script) as client, pytest.raises(IntegrityError, match="size mismatch"):
        client.fetch_blob(REF, blob, store)
    assert list((tmp_path / "blobs/sha256").iterdir()) == []


def test_client_pull_unknown_media_type_raises(tmp_path: Path) -> None:
    doc = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json",
                      "config": {}, "layers": []}).encode()
    script = Script([("GET", "/manifests/1", httpx.Response(200, content=doc))])
    with _client(script) as client, pytest.raises(IntegrityError, match="unknown media type"):
        client.pull_image(REF, LayoutStore.create(tmp_path), platform=Platform.parse("linux/amd64"))


def _serving(store: LayoutStore, index_bytes: bytes | None = None) -> Handler:
    """Serve the blobs of *store* (and an index) like a registry would."""
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "/blobs/" in path or "/manifests/sha256:" in path:
            digest = Digest.parse(path.rsplit("/", 1)[1])
            if not store.has_blob(digest):
                return httpx.Response(404)
            data = store.blob_path(digest).read_bytes()
            media = json.loads(data).get("mediaType", "") if "/manifests/" in path else ""
            return httpx.Response(200, content=data, headers={"Content-Type": media})
        if "/manifests/" in path and index_bytes is not None:
            return httpx.Response(200, content=index_bytes, headers={"Content-Type": MediaType.OCI_INDEX})
        return httpx.Response(404)
    return handler


def test_client_pull_selects_platform_from_index(tmp_path: Path) -> None:
    src = LayoutStore.create(tmp_path / "src")
    amd = make_image(src, [{"a": b"amd"}], tag=None)
    arm = make_image(src, [{"a": b"arm"}], tag=None)
    index = Index(manifests=(
        Descriptor(media_type=amd.media_type, digest=amd.digest, size=amd.size, platform=Platform.parse("linux/amd64")),
        Descriptor(media_type=arm.media_type, digest=arm.digest, size=arm.size, platform=Platform.parse("linux/arm64")),
    )).to_json()
    out = LayoutStore.create(tmp_path / "out")
    with _client(_serving(src, index)) as client:
        result = client.pull_image(REF, out, platform=Platform.parse("linux/aarch64"))
        assert result.descriptor.digest == arm.digest
        with pytest.raises(RegistryError, match=r"no image for linux/s390x.*linux/amd64, linux/arm64"):
            client.pull_image(REF, out, platform=Platform.parse("linux/s390x"))


def test_client_pull_mirrors_in_order_then_origin(tmp_path: Path) -> None:
    src = LayoutStore.create(tmp_path / "src")
    image = make_image(src, [{"a": b"x"}], tag=None)
    serve = _serving(src)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "mirror-a.test":
            return httpx.Response(500)
        if request.url.host == "mirror-b.test":
            return httpx.Response(404)
        if request.url.path.endswith("/manifests/1"):
            data = src.blob_path(image.digest).read_bytes()
            return httpx.Response(200, content=data, headers={"Content-Type": MediaType.OCI_MANIFEST})
        return serve(request)

    with _client(handler) as client:
        result = client.pull_image(Reference.parse("acme/api:1"), LayoutStore.create(tmp_path / "o"),
                                   platform=Platform.parse("linux/amd64"), mirrors=("mirror-a.test", "mirror-b.test"))
    assert result.served_by == "docker.io"
    assert [s.split(":")[0] for s in result.failed_sources] == ["mirror-a.test", "mirror-b.test"]
    assert list(dict.fromkeys(seen)) == ["mirror-a.test", "mirror-b.test", "registry-1.docker.io"]
    assert seen.count("mirror-a.test") == 2  # a 5xx mirror gets one retry, not the full policy


def test_client_insecure_host_falls_back_to_http() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("wrong version number", request=request)
        return OK()

    with _client(handler, insecure=frozenset({"registry.test"})) as client:
        assert client.http.base_url("registry.test") == "http://registry.test"
        client.get_manifest(REF)


def test_clients_sharing_schemes_try_https_on_an_insecure_host_once() -> None:
    tried: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.scheme)
        if request.url.scheme == "https":
            raise httpx.ConnectError("wrong version number", request=request)
        return OK()

    shared: dict[str, str] = {}
    for _ in range(2):  # as a build's pull, cache and push clients do
        with _client(handler, insecure=frozenset({"registry.test"}), schemes=shared) as client:
            client.get_manifest(REF)
    assert tried == ["https", "http", "http"]
    assert shared == {"registry.test": "http"}


def test_client_secure_host_never_uses_http() -> None:
    schemes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        schemes.append(request.url.scheme)
        raise httpx.ConnectError("tls failure", request=request)

    with _client(handler, retry=RetryPolicy(attempts=1)) as client, pytest.raises(RegistryError):
        client.get_manifest(REF)
    assert set(schemes) == {"https"}


def test_client_bearer_scope_upgrade_on_push(tmp_path: Path) -> None:
    """Push after pull on one client: the second token asks for pull,push."""
    token_scopes: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            token_scopes.append(sorted(request.url.params.get_list("scope")))
            return httpx.Response(200, json={"token": f"t{len(token_scopes)}"})
        if "Authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.test/token",'
                                                'service="registry.test"'})
        if request.method == "GET":
            return OK()
        return httpx.Response(201, headers={"Docker-Content-Digest": str(Digest.of_bytes(MANIFEST))})

    creds = Credentials(username="u", password="p4ssword")
    with _client(handler, credentials=lambda host: creds) as client:
        client.get_manifest(REF)
        client.put_manifest(REF, MANIFEST, MediaType.OCI_MANIFEST)
    assert token_scopes == [["repository:acme/api:pull"], ["repository:acme/api:pull,push"]]


def test_client_failed_blob_stops_sibling_transfers(tmp_path: Path) -> None:
    big = Descriptor(media_type=MediaType.OCI_LAYER_GZIP, digest=Digest.of_bytes(b"x" * (1 << 20) * 50),
                     size=50 << 20)
    config = Descriptor(media_type=MediaType.OCI_CONFIG, digest=Digest.of_bytes(b"{}"), size=2)
    manifest = Manifest(config=config, layers=(big,)).to_json()
    served: list[int] = []

    def slow_chunks() -> Iterator[bytes]:
        for _ in range(50):
            served.append(1)
            time.sleep(0.01)
            yield b"x" * (1 << 20)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/manifests/1"):
            return httpx.Response(200, content=manifest, headers={"Content-Type": MediaType.OCI_MANIFEST})
        if str(big.digest) in request.url.path:
            return httpx.Response(200, content=slow_chunks())
        return httpx.Response(404)

    with _client(handler) as client, pytest.raises(RegistryError, match="404"):
        client.pull_image(REF, LayoutStore.create(tmp_path), platform=Platform.parse("linux/amd64"))
    assert len(served) < 50
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
    assert not client.cancelled.is_set()


def test_client_upload_401_on_stream_retried_with_fresh_token(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    descriptor = make_image(store, [{"a": b"1"}], tag=None)
    state = {"upload_401": 1, "tokens": 0}
    notes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        challenge = {"WWW-Authenticate": 'Bearer realm="https://auth.test/token",service="r"'}
        if request.url.host == "auth.test":
            state["tokens"] += 1
            return httpx.Response(200, json={"token": f"t{state['tokens']}"})
        if "Authorization" not in request.headers:
            return httpx.Response(401, headers=challenge)
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/acme/api/blobs/uploads/u1?_state=s"})
        if request.method == "PUT" and "/blobs/uploads/" in request.url.path:
            for _ in request.stream:  # type: ignore[union-attr]  # consumed like a socket would
                pass
            if state["upload_401"]:
                state["upload_401"] -= 1
                return httpx.Response(401, headers=challenge)
            return httpx.Response(201)
        return httpx.Response(201)

    class SocketLike(httpx.BaseTransport):
        """Unlike MockTransport, leaves a streamed request body one-shot."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return handler(request)

    with RegistryClient(transport=SocketLike(), sleep=Sleeps(), notify=notes.append) as client:
        client.push_image(store, descriptor, REF, workers=1)
    assert state["upload_401"] == 0
    assert state["tokens"] == 2  # pull,push (asked before the manifest HEAD), and the fresh one after the 401
    assert any("→ 401" in note and "retrying" in note for note in notes), notes
