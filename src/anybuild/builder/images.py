"""Where base images come from: a registry (mirrors honoured), an OCI layout, or nothing (scratch).

An :class:`ImageSource` turns a FROM name into a :class:`BaseImage` whose blobs
are in the build's :class:`~anybuild.oci.layout.LayoutStore`. Names can be
redirected (``named``) to ``oci-layout://DIR[:TAG]``, the ``docker buildx
--build-context NAME=oci-layout://…`` form, which is how offline bases are used.
:func:`unpack_image` applies the layers to a rootfs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.builder.inroot import RootDir
from anybuild.builder.rootfs import RecordedMeta, UnpackOptions, unpack_layer
from anybuild.errors import IntegrityError
from anybuild.oci.config import ContainerConfig, ImageConfig
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.layout import LayoutStore
from anybuild.oci.manifest import Index, Manifest, parse_document
from anybuild.oci.platform import Platform
from anybuild.registry.client import RegistryClient
from anybuild.registry.reference import Reference
from anybuild.registry.transfer import PullShare, pull_image

__all__ = ["OCI_LAYOUT_SCHEME", "BaseImage", "ImageSource", "unpack_image"]

OCI_LAYOUT_SCHEME = "oci-layout://"


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseImage:
    name: str  # as written in FROM (after expansion)
    config: ImageConfig
    layers: tuple[Descriptor, ...]  # blobs are in the build store
    digest: str | None = None  # manifest digest, when from a registry or layout

    @classmethod
    def scratch(cls, platform: Platform) -> BaseImage:
        # BuildKit's empty image: WorkingDir "/" (PATH is added for every stage)
        config = ImageConfig(platform=platform, config=ContainerConfig(working_dir="/"))
        return cls(name="scratch", config=config, layers=())


def _copy_blob(src: LayoutStore, dst: LayoutStore, descriptor: Descriptor) -> None:
    if dst.has_blob(descriptor.digest):
        return
    with src.open_blob(descriptor.digest) as stream:
        dst.write_blob(stream, expected=descriptor)


@dataclass(slots=True, kw_only=True)
class ImageSource:
    """Resolve FROM names into images whose blobs sit in *store*."""

    store: LayoutStore
    platform: Platform
    client_factory: Callable[[], RegistryClient]
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    named: Mapping[str, str] = field(default_factory=dict)  # FROM name -> "oci-layout://DIR[:TAG]"
    # layer digest -> the repository it was pulled from (BuildKit's "distribution source"): a push
    # to the same registry mounts these layers from there instead of uploading them
    sources: dict[str, Reference] = field(default_factory=dict)
    # FROM reference -> (the repository that served it, the digest it served): a rebuild asks again
    resolved: dict[str, tuple[str, str]] = field(default_factory=dict)
    _cache: dict[str, BaseImage] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _share: PullShare = field(default_factory=PullShare)  # an index fetched once, a blob pulled once

    def get(self, name: str, platform: Platform | None = None) -> BaseImage:
        """The image *name* for *platform* (default: the source's), pulled once per build and platform.

        Platforms build in parallel: a name and platform is pulled by one of them while another that
        wants it waits; different platforms' pulls run at once, sharing the index and common blobs."""
        wanted = platform or self.platform
        key = f"{name}\0{wanted}"
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        with self._share.lock(f"image {key}"):
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            if name == "scratch":
                image = BaseImage.scratch(wanted)
            else:
                target = self.named.get(name, name)
                if target.startswith(OCI_LAYOUT_SCHEME):
                    image = self._from_layout(name, target.removeprefix(OCI_LAYOUT_SCHEME), wanted)
                else:
                    image = self._from_registry(name, target, wanted)
            with self._lock:
                self._cache[key] = image
            return image

    def _manifest(self, store: LayoutStore, descriptor: Descriptor, what: str,
                  platform: Platform) -> tuple[Manifest, Descriptor]:
        document = parse_document(store.read_blob(descriptor), media_type=descriptor.media_type, what=what)
        if isinstance(document, Index):
            choice = document.select(platform)
            if choice is None:
                raise IntegrityError(f"{what} has no image for {platform}",
                                     hint=f"it offers: {', '.join(str(p) for p in document.platforms())}")
            return self._manifest(store, choice, what, platform)
        document.require_image(what)
        return document, descriptor

    def _finish(self, name: str, store: LayoutStore, descriptor: Descriptor, what: str,
                platform: Platform) -> BaseImage:
        manifest, chosen = self._manifest(store, descriptor, what, platform)
        if store is not self.store:
            for blob in (manifest.config, *manifest.layers):
                _copy_blob(store, self.store, blob)
        config = ImageConfig.from_json(self.store.read_blob(manifest.config), what=f"config of {what}")
        return BaseImage(name=name, config=config, layers=manifest.layers, digest=str(chosen.digest))

    def _from_layout(self, name: str, spec: str, platform: Platform) -> BaseImage:
        path, _, tag = spec.partition(":")
        layout = LayoutStore.open(Path(path))
        return self._finish(name, layout, layout.resolve(tag or None), f"{name} ({path})", platform)

    def _from_registry(self, name: str, target: str, platform: Platform) -> BaseImage:
        ref = Reference.parse(target).defaulted()
        with self.client_factory() as client:
            result = pull_image(client, ref, self.store, platform=platform,
                                mirrors=self.mirrors.get(ref.domain, ()), share=self._share)
        image = self._finish(name, self.store, result.descriptor, str(ref), platform)
        origin = ref.in_domain(result.served_by)
        with self._lock:
            # what a HEAD of the reference announces (an index's digest, not this platform's manifest's)
            self.resolved[str(ref)] = (str(origin), str(result.announced or result.descriptor.digest))
            for layer in image.layers:
                self.sources.setdefault(str(layer.digest), origin)
        return image


def unpack_image(image: BaseImage, store: LayoutStore, rootfs: Path, options: UnpackOptions) -> dict[str, RecordedMeta]:
    """Apply every layer of *image* to *rootfs*; return the metadata that could not be applied."""
    recorded: dict[str, RecordedMeta] = {}
    with RootDir.open(rootfs) as root:
        for layer in image.layers:
            with store.open_blob(layer.digest) as stream:
                report = unpack_layer(stream, root, options)
            recorded.update(report.recorded)
    return recorded
