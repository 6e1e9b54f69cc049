"""The Distribution API, one endpoint per method: manifests, blobs, uploads, mounts.

:class:`RegistryClient` does no image-level logic (see :mod:`.transfer`); it
declares the auth scopes each call needs, verifies every manifest and blob it
reads against its digest and size, and resumes uploads where the registry
allows it: after a failure it asks the upload's status (``Range``) and carries
on from there, or starts a new upload if the registry forgot the old one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import urlencode, urljoin

import httpx

from anybuild.cancellation import Cancellation
from anybuild.errors import IntegrityError, RegistryError
from anybuild.oci import CHUNK_SIZE, MANIFEST_ACCEPT, BlobStore, Descriptor, Digest, Hasher
from anybuild.redaction import Redactor
from anybuild.registry.auth import RegistryAuth, Scope
from anybuild.registry.credentials import Credentials
from anybuild.registry.http import RegistryHttp, RegistryTimeouts, Retryable, RetryPolicy, raise_for
from anybuild.registry.reference import Reference

if TYPE_CHECKING:
    from anybuild.oci import LayoutStore, Platform
    from anybuild.registry.transfer import PullResult, PushResult

__all__ = ["FetchedManifest", "NoProgress", "Progress", "RegistryClient", "TransferStats"]

MAX_MANIFEST_SIZE = 4 * 1024 * 1024


class TransferCancelled(Exception):
    """Internal: a transfer stopped because a sibling failed or the user pressed Ctrl-C."""


class Progress(Protocol):
    """Receives transfer progress; the CLI draws bars from it."""

    def start(self, digest: Digest, total: int, action: str) -> None: ...

    def advance(self, digest: Digest, amount: int) -> None: ...

    def finish(self, digest: Digest, outcome: str) -> None: ...


class NoProgress:
    def start(self, digest: Digest, total: int, action: str) -> None:
        pass

    def advance(self, digest: Digest, amount: int) -> None:
        pass

    def finish(self, digest: Digest, outcome: str) -> None:
        pass


@dataclass(slots=True)
class TransferStats:
    """What a transfer did, counted as it happened (thread-safe)."""

    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    blobs: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, outcome: str, uploaded: int = 0, downloaded: int = 0) -> None:
        with self._lock:
            if outcome:
                self.blobs[outcome] = self.blobs.get(outcome, 0) + 1
            self.bytes_uploaded += uploaded
            self.bytes_downloaded += downloaded

    def to_dict(self) -> dict[str, object]:
        return {"bytes_uploaded": self.bytes_uploaded, "bytes_downloaded": self.bytes_downloaded,
                "blobs": dict(self.blobs)}


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedManifest:
    """A manifest or index exactly as the registry served it."""

    data: bytes
    media_type: str
    digest: Digest

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.data))


class RegistryClient:
    """A Distribution API client for any number of registries; safe to share between threads."""

    def __init__(
        self,
        *,
        credentials: Callable[[str], Credentials | None] = lambda host: None,
        insecure: frozenset[str] = frozenset(),
        ca_bundle: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen value)
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        redactor: Redactor | None = None,
        chunk_size: int = 0,
        progress: Progress | None = None,
        timeouts: RegistryTimeouts = RegistryTimeouts(),  # noqa: B008 (frozen value)
        notify: Callable[[str], None] | None = None,
        schemes: dict[str, str] | None = None,
        cancel: Cancellation | None = None,
    ) -> None:
        """*schemes* (host -> "https" or "http", as found) may be shared by the clients of one build.

        *cancel* (the process's cancellation) stops transfers at their next chunk, cuts retry waits
        short, shuts down sockets blocked on a silent registry, and refuses to tag a manifest after it
        is set; what stops raises :class:`~anybuild.errors.Interrupted`.
        """
        self.redactor = redactor or Redactor()
        self.cancel = cancel or Cancellation()
        self.auth = RegistryAuth(credentials, clock=clock, redactor=self.redactor)
        self.http = RegistryHttp(auth=self.auth, redactor=self.redactor, insecure=insecure, ca_bundle=ca_bundle,
                                 transport=transport, retry=retry, sleep=sleep, wall_clock=wall_clock,
                                 timeouts=timeouts, notify=notify, schemes=schemes, cancel=self.cancel)
        self.chunk_size = chunk_size
        self.progress: Progress = progress or NoProgress()
        self.stats = TransferStats()
        self.cancelled = threading.Event()  # set: in-flight transfers stop at their next chunk (a sibling failed)

    def _check_cancelled(self) -> None:
        self.cancel.check()
        if self.cancelled.is_set():
            raise TransferCancelled("transfer cancelled")

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- image level (see transfer.py) ------------------------------------------

    def pull_image(self, ref: Reference, store: LayoutStore, *, platform: Platform, tag: str | None = None,
                   mirrors: tuple[str, ...] = (), workers: int = 4) -> PullResult:
        from anybuild.registry.transfer import pull_image

        return pull_image(self, ref, store, platform=platform, tag=tag, mirrors=mirrors, workers=workers)

    def push_image(self, store: LayoutStore, descriptor: Descriptor, ref: Reference, *,
                   mount_from: tuple[Reference, ...] = (), workers: int = 4,
                   sources: Mapping[str, Reference] | None = None) -> PushResult:
        from anybuild.registry.transfer import push_image

        return push_image(self, store, descriptor, ref, mount_from=mount_from, workers=workers, sources=sources)

    def copy_image(self, src: Reference, dst: Reference, scratch: LayoutStore, *,
                   platform: Platform | None = None, workers: int = 4) -> PushResult:
        from anybuild.registry.transfer import copy_image

        return copy_image(self, src, dst, scratch, platform=platform, workers=workers)

    # -- helpers ---------------------------------------------------------------

    def _url(self, repo: Reference, suffix: str) -> str:
        return f"{self.http.base_url(repo.api_host)}/v2/{repo.path}/{suffix}"

    def _client(self, repo: Reference) -> httpx.Client:
        return self.http.client(repo.api_host)

    def _scope(self, repo: Reference, *actions: str) -> None:
        self.auth.require(repo.api_host, Scope.repository(repo.path, *actions))

    # -- endpoints -------------------------------------------------------------

    def ping(self, host: str) -> None:
        """``GET /v2/``: the registry is there and speaks the API (401 counts: it wants auth)."""
        url = f"{self.http.base_url(host)}/v2/"

        def op() -> None:
            raise_for(self.http, self.http.client(host).get(url), f"ping {host}", 200, 401)

        self.http.attempt(op, what=f"ping {host}", url=url)

    def get_manifest(self, ref: Reference, *, attempts: int | None = None) -> FetchedManifest:
        """The manifest or index of *ref*, verified against the digest asked for or announced.

        *attempts* overrides the retry policy (a pull gives a mirror one retry, then moves on).
        """
        self._scope(ref, "pull")
        url = self._url(ref, f"manifests/{ref.identifier}")
        what = f"get manifest {ref}"
        headers = {"Accept": ", ".join(MANIFEST_ACCEPT)}

        def op() -> FetchedManifest:
            response = raise_for(self.http, self._client(ref).get(url, headers=headers), what, 200)
            data = response.content
            if len(data) > MAX_MANIFEST_SIZE:
                raise IntegrityError(f"{what}: manifest of {len(data)} bytes exceeds 4 MiB",
                                     hint="this is not an image manifest")
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            expected = ref.digest
            announced = response.headers.get("Docker-Content-Digest")
            if expected is None and announced:
                expected = Digest.parse(announced)
            digest = Digest.of_bytes(data, expected.algorithm) if expected else Digest.of_bytes(data)
            if expected is not None and digest != expected:
                raise IntegrityError(f"{what}: digest mismatch: expected {expected}, got {digest}",
                                     hint="the registry or a proxy altered the manifest; retry, or re-push it")
            return FetchedManifest(data=data, media_type=media_type, digest=digest)

        return self.http.attempt(op, what=what, url=url, attempts=attempts)

    def head_manifest(self, ref: Reference) -> Digest | None:
        """The digest the registry announces for *ref* (``HEAD``, Docker-Content-Digest); None if it has none."""
        self._scope(ref, "pull")
        url = self._url(ref, f"manifests/{ref.identifier}")
        what = f"head manifest {ref}"
        headers = {"Accept": ", ".join(MANIFEST_ACCEPT)}

        def op() -> Digest | None:
            response = raise_for(self.http, self._client(ref).head(url, headers=headers), what, 200, 404)
            announced = response.headers.get("Docker-Content-Digest")
            return Digest.parse(announced) if response.status_code == 200 and announced else None

        return self.http.attempt(op, what=what, url=url)

    def put_manifest(self, ref: Reference, data: bytes, media_type: str) -> Digest:
        self._scope(ref, "pull", "push")
        url = self._url(ref, f"manifests/{ref.identifier}")
        what = f"put manifest {ref}"
        digest = Digest.of_bytes(data)

        def op() -> Digest:
            self.cancel.check(f"before {ref} was pushed (nothing points at the image)")
            response = self._client(ref).put(url, content=data, headers={"Content-Type": media_type})
            raise_for(self.http, response, what, 201, 200)
            announced = response.headers.get("Docker-Content-Digest")
            if announced and Digest.parse(announced) != digest:
                raise IntegrityError(f"{what}: registry stored {announced}, we sent {digest}",
                                     hint="the registry rewrote the manifest; report it to its operator")
            return digest

        return self.http.attempt(op, what=what, url=url)

    def blob_exists(self, repo: Reference, digest: Digest) -> bool:
        self._scope(repo, "pull")
        url = self._url(repo, f"blobs/{digest}")

        def op() -> bool:
            response = self._client(repo).head(url)
            return raise_for(self.http, response, f"check blob {digest}", 200, 404).status_code == 200

        return self.http.attempt(op, what=f"check blob {digest} in {repo.repository}", url=url)

    def fetch_blob(self, repo: Reference, descriptor: Descriptor, store: BlobStore) -> Descriptor:
        """Stream a blob into *store*; the store rejects it unless size and digest match."""
        self._scope(repo, "pull")
        url = self._url(repo, f"blobs/{descriptor.digest}")
        what = f"download blob {descriptor.digest} from {repo.repository}"
        self.progress.start(descriptor.digest, descriptor.size, "download")

        def op() -> Descriptor:
            with self._client(repo).stream("GET", url) as response:
                raise_for(self.http, response, what, 200)

                def chunks() -> Iterator[bytes]:
                    for chunk in response.iter_bytes(CHUNK_SIZE):
                        self._check_cancelled()
                        self.progress.advance(descriptor.digest, len(chunk))
                        self.stats.count("", downloaded=len(chunk))
                        yield chunk

                return store.write_blob(chunks(), expected=descriptor)

        stored = self.http.attempt(op, what=what, url=url)
        self.stats.count("downloaded")
        self.progress.finish(descriptor.digest, "downloaded")
        return stored

    def mount_blob(self, repo: Reference, digest: Digest, source: str) -> str | None:
        """Mount *digest* from repository path *source*; None if mounted, else an upload location."""
        self._scope(repo, "pull", "push")
        self.auth.require(repo.api_host, Scope.repository(source, "pull"))
        query = urlencode({"mount": str(digest), "from": source})
        url = self._url(repo, f"blobs/uploads/?{query}")

        def op() -> str | None:
            response = raise_for(self.http, self._client(repo).post(url), f"mount blob {digest}", 201, 202)
            return None if response.status_code == 201 else self._location(response, url)

        return self.http.attempt(op, what=f"mount blob {digest} from {source}", url=url)

    def start_upload(self, repo: Reference) -> str:
        self._scope(repo, "pull", "push")
        url = self._url(repo, "blobs/uploads/")

        def op() -> str:
            response = raise_for(self.http, self._client(repo).post(url), "start upload", 202)
            return self._location(response, url)

        return self.http.attempt(op, what=f"start upload to {repo.repository}", url=url)

    def _location(self, response: httpx.Response, base: str) -> str:
        location = str(response.headers.get("Location", ""))
        if not location:
            raise Retryable(RegistryError(
                f"registry answered {response.status_code} without a Location header",
                url=self.http.redact(base), hint="the registry is not Distribution-compatible"))
        return urljoin(base, location)

    def upload_blob(
        self, repo: Reference, descriptor: Descriptor, opener: Callable[[], BinaryIO],
        location: str | None = None,
    ) -> None:
        """Upload a blob (monolithic, or in ``chunk_size`` pieces), resuming after failures."""
        upload = _Upload(self, repo, descriptor, opener, location)
        self.progress.start(descriptor.digest, descriptor.size, "upload")
        self.http.attempt(upload.run, what=f"upload blob {descriptor.digest} to {repo.repository}",
                          url=self._url(repo, "blobs/uploads/"), on_retry=upload.recover)
        self.stats.count("uploaded")
        self.progress.finish(descriptor.digest, "uploaded")


class _Upload:
    """The state of one blob upload: where it is (location) and how far (offset)."""

    def __init__(self, client: RegistryClient, repo: Reference, descriptor: Descriptor,
                 opener: Callable[[], BinaryIO], location: str | None) -> None:
        self.client, self.repo, self.descriptor, self.opener = client, repo, descriptor, opener
        self.location, self.offset = location, 0
        self.what = f"upload blob {descriptor.digest}"
        self.http = client.http

    def _body(self, start: int, end: int) -> Iterator[bytes]:
        hasher = Hasher(self.descriptor.digest.algorithm) if start == 0 and end == self.descriptor.size else None
        with self.opener() as stream:
            stream.seek(start)
            remaining = end - start
            while remaining > 0:
                self.client._check_cancelled()
                chunk = stream.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    raise IntegrityError(f"{self.what}: local blob is shorter than {self.descriptor.size} bytes",
                                         hint="the local image is corrupt; rebuild or pull it again")
                remaining -= len(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                self.client.stats.count("", uploaded=len(chunk))
                self.client.progress.advance(self.descriptor.digest, len(chunk))
                yield chunk
        if hasher is not None:
            hasher.verify(digest=self.descriptor.digest, size=self.descriptor.size, what=f"local {self.what}")

    def _with_digest(self, location: str) -> str:
        return location + ("&" if "?" in location else "?") + urlencode({"digest": str(self.descriptor.digest)})

    def run(self) -> None:
        http_client = self.client._client(self.repo)
        if self.location is None:
            self.location, self.offset = self.client.start_upload(self.repo), 0
        size = self.descriptor.size
        headers = {"Content-Type": "application/octet-stream"}
        finishing = self.client.http.timeouts.finishing()  # the registry verifies the blob before it answers
        if self.client.chunk_size <= 0 and self.offset == 0:
            response = http_client.put(self._with_digest(self.location), content=self._body(0, size),
                                       headers={**headers, "Content-Length": str(size)}, timeout=finishing)
            raise_for(self.http, response, self.what, 201)
            return
        step = self.client.chunk_size if self.client.chunk_size > 0 else size
        while self.offset < size:
            end = min(size, self.offset + step)
            response = http_client.patch(
                self.location, content=self._body(self.offset, end),
                headers={**headers, "Content-Length": str(end - self.offset),
                         "Content-Range": f"{self.offset}-{end - 1}"},
            )
            if response.status_code == 416:
                self.location = None  # the registry disagrees about the offset: start over
                raise self.http.response_error(response, self.what)
            raise_for(self.http, response, self.what, 202)
            self.location = self.client._location(response, self.location)
            self.offset = end
        response = http_client.put(self._with_digest(self.location), content=b"", headers=headers, timeout=finishing)
        raise_for(self.http, response, self.what, 201)

    def recover(self) -> None:
        """After a failure: ask the registry how much of the upload it holds."""
        if self.location is None:
            return
        try:
            response = self.client._client(self.repo).get(self.location)
        except httpx.HTTPError:
            return
        if response.status_code != 204:
            self.location, self.offset = None, 0
            return
        self.location = urljoin(self.location, response.headers.get("Location", self.location))
        last = response.headers.get("Range", "0-0").rpartition("-")[2]
        self.offset = int(last) + 1 if last.isdigit() and int(last) > 0 else 0

