"""Image-level transfers: pull (with mirrors and platform selection), push, and copy.

Blobs move in parallel (a thread pool over one thread-safe client); manifests
go last, so a registry never names an image whose blobs it lacks, and a layout
never indexes an image whose blobs are not all there and verified.

A push can be told where blobs are already known to live (``sources``: digest →
the repository a base layer was pulled from, BuildKit's "distribution source"):
on the same registry host such a blob is mounted (``POST …/blobs/uploads/?mount=
&from=``) before anything else is tried, and never uploaded again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar

from anybuild.errors import IntegrityError, RegistryError
from anybuild.oci import (
    Descriptor,
    Digest,
    ImageConfig,
    Index,
    LayoutStore,
    Manifest,
    Platform,
    parse_document,
)
from anybuild.registry.client import FetchedManifest, RegistryClient
from anybuild.registry.reference import Reference

__all__ = ["PullResult", "PushResult", "copy_image", "pull_image", "push_image"]

T = TypeVar("T")
_MIRROR_ATTEMPTS = 2  # a mirror that does not answer is skipped quickly, as Docker does


@dataclass(frozen=True, slots=True, kw_only=True)
class PullResult:
    reference: Reference
    descriptor: Descriptor
    served_by: str
    failed_sources: tuple[str, ...] = ()
    # what the reference resolved to where it was served (the index's digest for a multi-platform image):
    # the digest a HEAD of the reference announces while it is unchanged
    announced: Digest | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushResult:
    reference: Reference
    descriptor: Descriptor
    blobs: dict[str, int] = field(default_factory=dict)



def _parallel(fn: Callable[[T], object], items: Iterable[T], workers: int,
              cancel: threading.Event | None = None) -> None:
    """Run *fn* over *items* on a pool; the first failure (or Ctrl-C) stops the rest and is raised."""
    todo = list(items)
    if workers <= 1 or len(todo) <= 1:
        for item in todo:
            fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="anybuild-blob")
    failed = True
    try:
        futures = [pool.submit(fn, item) for item in todo]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and not future.cancelled() and (error := future.exception()) is not None:
                raise error
        failed = False
    finally:
        # on a failure or Ctrl-C: start nothing new, and stop transfers in flight at their next
        # chunk (a blob store never keeps a partial blob); then the client is usable again
        if failed and cancel is not None:
            cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        if cancel is not None:
            cancel.clear()


def _unique(descriptors: Iterable[Descriptor]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for descriptor in descriptors:
        seen.setdefault(str(descriptor.digest), descriptor)
    return list(seen.values())


def _image_manifest(fetched: FetchedManifest, what: str) -> Manifest:
    manifest = Manifest.from_json(fetched.data, media_type=fetched.media_type or None, what=what)
    manifest.require_image(what)
    return manifest


def _no_platform(ref: Reference, platform: Platform, index: Index) -> RegistryError:
    available = ", ".join(str(p) for p in index.platforms()) or "none"
    return RegistryError(f"{ref} has no image for {platform} (available: {available})",
                         hint="pass --platform with one of the available platforms")


# -- pull ----------------------------------------------------------------------


@dataclass(slots=True)
class PullShare:
    """What the pulls of one build share when they run at once (the platforms of a multi-platform build):
    the manifest or index a reference names, fetched once, and each blob, fetched by one pull while
    another that wants it waits and finds it stored."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fetched: dict[str, FetchedManifest] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)

    def lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def manifest(self, ref: Reference, fetch: Callable[[], FetchedManifest]) -> FetchedManifest:
        """The document *ref* names, from *fetch* the first time."""
        key = str(ref)
        with self.lock(f"manifest {key}"):
            if key not in self._fetched:
                self._fetched[key] = fetch()
            return self._fetched[key]


def pull_image(
    client: RegistryClient, ref: Reference, store: LayoutStore, *, platform: Platform,
    tag: str | None = None, mirrors: Sequence[str] = (), workers: int = 4, share: PullShare | None = None,
) -> PullResult:
    """Pull *ref* for *platform* into *store*, trying *mirrors* in order and then the origin (with a *share*,
    what another pull of the same build fetched, or is fetching, is not fetched again)."""
    ref = ref.defaulted()
    sources = [ref.in_domain(mirror) for mirror in mirrors] + [ref]
    failed: list[str] = []
    for source in sources:
        try:
            descriptor, announced = _pull_from(client, source, store, platform, workers,
                                               attempts=None if source is ref else _MIRROR_ATTEMPTS, share=share)
        except (RegistryError, IntegrityError) as exc:
            if source is ref:
                if failed:
                    exc.message += f" (mirrors failed too: {'; '.join(failed)})"
                    exc.args = (exc.message,)
                raise
            failed.append(f"{source.domain}: {exc.message}")
            continue
        entry = store.put_manifest(descriptor, tag)
        return PullResult(reference=ref, descriptor=entry, served_by=source.domain, failed_sources=tuple(failed),
                          announced=announced)
    raise AssertionError("unreachable: the origin is always the last source")


def _pull_from(client: RegistryClient, ref: Reference, store: LayoutStore, platform: Platform,
               workers: int, *, attempts: int | None, share: PullShare | None = None) -> tuple[Descriptor, Digest]:
    if share is None:
        fetched = client.get_manifest(ref, attempts=attempts)
    else:
        fetched = share.manifest(ref, lambda: client.get_manifest(ref, attempts=attempts))
    announced = fetched.descriptor.digest
    document = parse_document(fetched.data, media_type=fetched.media_type or None, what=f"manifest of {ref}")
    if isinstance(document, Index):
        choice = document.select(platform)
        if choice is None:
            raise _no_platform(ref, platform, document)
        fetched = client.get_manifest(ref.at(choice.digest))
        if fetched.descriptor.size != choice.size:
            raise IntegrityError(f"manifest {choice.digest} of {ref}: size {fetched.descriptor.size} "
                                 f"!= {choice.size} in the index", hint="the registry serves corrupt data")
    manifest = _image_manifest(fetched, f"manifest of {ref}")

    def fetch(blob: Descriptor) -> None:
        with share.lock(f"blob {blob.digest}") if share is not None else contextlib.nullcontext():
            if not store.has_blob(blob.digest):
                client.fetch_blob(ref, blob, store)
            else:
                client.stats.count("present")

    _parallel(fetch, _unique([manifest.config, *manifest.layers]), workers, client.cancelled)
    config = ImageConfig.from_json(store.read_blob(manifest.config), what=f"config of {ref}")
    if len(config.diff_ids) != len(manifest.layers):
        raise IntegrityError(f"{ref}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids",
                             hint="the image is corrupt; re-push it")
    stored = store.write_blob([fetched.data], expected=fetched.descriptor)
    return Descriptor(media_type=manifest.media_type, digest=stored.digest,
                      size=stored.size, platform=config.platform), announced


# -- push and copy -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sender:
    """Sends manifests and their blobs to a repository: existing → skip, same registry → mount."""

    client: RegistryClient
    store: LayoutStore
    mount_from: Sequence[Reference] = ()
    source: Reference | None = None  # where to download blobs missing from the store
    workers: int = 4
    sources: Mapping[str, Reference] = field(default_factory=dict)  # digest -> a repository holding it

    def _mount(self, repo: Reference, blob: Descriptor, other: Reference) -> str | None:
        """Mount *blob* from *other* when on the same host: "" if mounted, else an upload location."""
        if other.api_host != repo.api_host or other.path == repo.path:
            return None
        location = self.client.mount_blob(repo, blob.digest, other.path)
        if location is None:
            self.client.stats.count("mounted")
            return ""
        return location

    def blob(self, repo: Reference, blob: Descriptor) -> None:
        client = self.client
        location: str | None = None
        if (known := self.sources.get(str(blob.digest))) is not None:
            try:
                location = self._mount(repo, blob, known)
            except RegistryError:
                location = None  # a hint only: a registry refusing it still gets the blob checked/uploaded
            if location == "":
                return
        if client.blob_exists(repo, blob.digest):
            client.stats.count("existing")
            return
        for other in self.mount_from:
            attempt = self._mount(repo, blob, other)
            if attempt == "":
                return
            location = attempt or location
        if not self.store.has_blob(blob.digest) and self.source is not None:
            client.fetch_blob(self.source, blob, self.store)
        client.upload_blob(repo, blob, lambda: self.store.open_blob(blob.digest), location)

    def manifest(self, ref: Reference, data: bytes, media_type: str) -> None:
        manifest = Manifest.from_json(data, media_type=media_type or None, what=f"manifest for {ref}")
        manifest.require_image(f"manifest for {ref}")
        blobs = _unique([manifest.config, *manifest.layers])
        _parallel(lambda blob: self.blob(ref, blob), blobs, self.workers, self.client.cancelled)
        self.client.put_manifest(ref, data, media_type or manifest.media_type)


def _already_there(client: RegistryClient, ref: Reference, descriptor: Descriptor) -> bool:
    """Whether *ref* already resolves to *descriptor* (a registry that cannot say: no)."""
    if ref.digest is not None and ref.digest != descriptor.digest:
        return False
    try:
        return client.head_manifest(ref) == descriptor.digest
    except RegistryError:
        return False  # the push itself says what is wrong, if anything is


def push_image(
    client: RegistryClient, store: LayoutStore, descriptor: Descriptor, ref: Reference, *,
    mount_from: Sequence[Reference] = (), workers: int = 4, sources: Mapping[str, Reference] | None = None,
) -> PushResult:
    """Push the image (or index) of *descriptor* from *store* to *ref*; its manifest goes last.

    *sources* maps blob digests to a repository known to hold them (where a base layer was
    pulled from); on *ref*'s host those blobs are mounted from there rather than uploaded.

    When *ref* already names this very manifest (a rebuild with nothing changed), one ``HEAD``
    is the whole push: a registry stores a manifest only once every blob it references is there.
    """
    ref = ref.defaulted()
    client._scope(ref, "pull", "push")  # one token for the HEAD and, if it differs, the push
    if _already_there(client, ref, descriptor):
        return PushResult(reference=ref, descriptor=descriptor, blobs=dict(client.stats.blobs))
    sender = _Sender(client=client, store=store, mount_from=mount_from, workers=workers,
                     sources=dict(sources or {}))
    data = store.read_blob(descriptor)
    document = parse_document(data, media_type=descriptor.media_type, what=f"manifest {descriptor.digest}")
    if isinstance(document, Index):
        for child in document.manifests:
            sender.manifest(ref.at(child.digest), store.read_blob(child), child.media_type)
        client.put_manifest(ref, data, descriptor.media_type)
    else:
        sender.manifest(ref, data, descriptor.media_type)
    return PushResult(reference=ref, descriptor=descriptor, blobs=dict(client.stats.blobs))


def copy_image(
    client: RegistryClient, src: Reference, dst: Reference, scratch: LayoutStore, *,
    platform: Platform | None = None, workers: int = 4,
) -> PushResult:
    """Copy *src* to *dst*; within one registry blobs are mounted, not downloaded and uploaded."""
    src = src.defaulted()
    if dst.tag is None and dst.digest is None:
        dst = Reference.with_tag(dst.repository, src.tag) if src.tag else dst.defaulted()
    sender = _Sender(client=client, store=scratch, mount_from=[src], source=src, workers=workers)
    fetched = client.get_manifest(src)
    document = parse_document(fetched.data, media_type=fetched.media_type or None, what=f"manifest of {src}")
    if isinstance(document, Index) and platform is None:
        for child in document.manifests:
            child_fetched = client.get_manifest(src.at(child.digest))
            sender.manifest(dst.at(child.digest), child_fetched.data, child_fetched.media_type)
        client.put_manifest(dst, fetched.data, fetched.media_type)
        return PushResult(reference=dst, descriptor=fetched.descriptor, blobs=dict(client.stats.blobs))
    if isinstance(document, Index):
        choice = document.select(platform) if platform is not None else None
        if choice is None or platform is None:
            raise _no_platform(src, platform or Platform.parse("linux/amd64"), document)
        fetched = client.get_manifest(src.at(choice.digest))
    sender.manifest(dst, fetched.data, fetched.media_type)
    return PushResult(reference=dst, descriptor=fetched.descriptor, blobs=dict(client.stats.blobs))
