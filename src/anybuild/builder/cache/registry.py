"""Sharing the step cache through a registry repository (``--cache-to`` / ``--cache-from``).

One OCI image manifest per step, tagged with the hex of the step's key::

    config  application/vnd.anybuild.cache.step.v1+json   the cache entry (history, config, layer)
    layers  [the step's layer]                             none for a step that changed no file

Plain Distribution registries (docker-registry 2.8 included) accept these: the
config media type is free, the layer is an ordinary gzip layer, so blobs are
shared with the images pushed from the same builds and only missing ones are
uploaded.
"""

from __future__ import annotations

from collections.abc import Iterable

from anybuild.builder.cache.store import CacheEntry, StepStore, key_hex
from anybuild.errors import IntegrityError, RegistryError
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.layout import LayoutStore
from anybuild.oci.manifest import Manifest
from anybuild.oci.mediatype import MediaType
from anybuild.registry.client import RegistryClient
from anybuild.registry.reference import Reference

__all__ = ["CACHE_CONFIG_TYPE", "export_entries", "import_entry"]

CACHE_CONFIG_TYPE = "application/vnd.anybuild.cache.step.v1+json"


def _tagged(repo: Reference, key: str) -> Reference:
    return Reference.with_tag(repo.repository, key_hex(key))


def _send(client: RegistryClient, repo: Reference, blob: Descriptor, layers: LayoutStore) -> None:
    if client.blob_exists(repo, blob.digest):
        client.stats.count("existing")
        return
    client.upload_blob(repo, blob, lambda: layers.open_blob(blob.digest))


def export_entries(client: RegistryClient, repo: Reference, store: StepStore, keys: Iterable[str],
                   layers: LayoutStore) -> int:
    """Push the entries of *keys* (those in *store*) to *repo*; return how many were pushed."""
    pushed = 0
    for key in dict.fromkeys(keys):
        if not store.has(key):
            continue
        entry = store.get(key, layers)  # links the layer blob into *layers*
        if entry is None:
            continue
        config = layers.write_bytes(entry.to_json(), CACHE_CONFIG_TYPE)
        blobs = [config] if entry.layer is None else [config, entry.layer]
        for blob in blobs:
            _send(client, repo, blob, layers)
        manifest = Manifest(config=config, layers=() if entry.layer is None else (entry.layer,),
                            media_type=MediaType.OCI_MANIFEST)
        client.put_manifest(_tagged(repo, key), manifest.to_json(), MediaType.OCI_MANIFEST)
        pushed += 1
    return pushed


def import_entry(client: RegistryClient, repo: Reference, key: str, store: StepStore,
                 layers: LayoutStore) -> CacheEntry | None:
    """Fetch the entry of *key* from *repo* into *store* (its blob into *layers*); None when absent."""
    ref = _tagged(repo, key)
    try:
        fetched = client.get_manifest(ref, attempts=1)
    except RegistryError as exc:
        if exc.status in (404, 400):
            return None
        raise
    manifest = Manifest.from_json(fetched.data, media_type=fetched.media_type or None, what=f"cache {ref}")
    if manifest.config.media_type != CACHE_CONFIG_TYPE or len(manifest.layers) > 1:
        return None
    if not layers.has_blob(manifest.config.digest):
        client.fetch_blob(repo, manifest.config, layers)
    entry = CacheEntry.from_json(layers.read_blob(manifest.config), f"cache entry {ref}")
    if entry.key != key or (entry.layer is None) != (not manifest.layers):
        raise IntegrityError(f"cache entry {ref} does not belong to step {key}",
                             hint="the cache repository was written by something else; use another one")
    if entry.layer is not None:
        if entry.layer.digest != manifest.layers[0].digest:
            raise IntegrityError(f"cache entry {ref}: layer does not match its manifest",
                                 hint="push the cache again with --cache-to")
        if not layers.has_blob(entry.layer.digest):
            client.fetch_blob(repo, entry.layer, layers)
    store.put(entry, layers)
    return entry
