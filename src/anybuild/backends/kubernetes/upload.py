"""The build context, from the user's directory to the pod's emptyDir.

:func:`pack_context` writes a deterministic tar (sorted entries, owner 0,
PAX) of exactly the files the built-in builder would see (``.dockerignore``
applied), under ``context/``, with the Dockerfile beside it as ``Dockerfile``
(it may live outside the context). :func:`upload_over_exec` streams it into the
init container (the receiving script checks size and sha256 before unpacking,
so v4 servers, where stdin cannot be closed, are safe too) and retries into
the same pod when the stream drops. :func:`push_context_artifact` is the way
in where exec is forbidden: the tar as an OCI artifact in the user's registry,
pulled by digest by the init container.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from anybuild.backends.base import LogSink
from anybuild.backends.kubernetes.client import Cluster, ClusterError
from anybuild.backends.kubernetes.spec import INIT, ContextArtifact, receive_command
from anybuild.dockerfile.dockerignore import DockerIgnore, find_ignore_file, select_context_files
from anybuild.errors import ContextError

__all__ = ["ARTIFACT_TYPE", "ContextArchive", "pack_context", "push_context_artifact", "upload_over_exec"]

ARTIFACT_TYPE = "application/vnd.anybuild.build-context.v1"
LAYER_TYPE = "application/vnd.anybuild.build-context.v1.tar"
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextArchive:
    """The packed context: a temporary file, its size and sha256 (hex)."""

    path: Path
    size: int
    sha256: str
    files: int

    def chunks(self) -> Iterator[bytes]:
        with self.path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk

    def open(self) -> BinaryIO:
        return self.path.open("rb")


def _entry(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_context(context: Path, dockerfile: Path, directory: Path) -> ContextArchive:
    """Write the context's tar into *directory* (which the caller removes)."""
    if not dockerfile.is_file():
        raise ContextError(f"no Dockerfile at {dockerfile}", hint="pass -f PATH/TO/Dockerfile")
    ignore = DockerIgnore.from_file(find_ignore_file(context, dockerfile))
    files = select_context_files(context, ignore)
    target = directory / "context.tar"
    digest = hashlib.sha256()
    with target.open("wb") as raw:
        class _Hashing:
            def write(self, data: bytes) -> int:
                digest.update(data)
                return raw.write(data)

        with tarfile.open(fileobj=_Hashing(), mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for rel in files:
                source = context / rel
                try:
                    info = _entry(tar.gettarinfo(str(source), arcname=f"context/{rel}"))
                except OSError as exc:
                    raise ContextError(f"cannot read {source}: {exc.strerror}",
                                       hint="check the permissions of the build context") from exc
                if info.isreg():
                    with source.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
            info = _entry(tar.gettarinfo(str(dockerfile), arcname="Dockerfile"))
            with dockerfile.open("rb") as handle:
                tar.addfile(info, handle)
    return ContextArchive(path=target, size=target.stat().st_size, sha256=digest.hexdigest(), files=len(files))


def upload_over_exec(cluster: Cluster, pod: str, archive: ContextArchive, sink: LogSink, *, attempts: int = 3,
                     sleep: Callable[[float], None] = time.sleep) -> str:
    """Stream *archive* into the init container; return the exec protocol used. Retries into the same pod."""
    command = receive_command(archive.size, archive.sha256)
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            outcome = cluster.exec(pod, INIT, command, archive.chunks())
        except ClusterError as exc:
            if exc.status in (401, 403, 404):
                raise
            problem = exc.message
        else:
            if outcome.returncode == 0:
                sink.line(f"anybuild: context uploaded over exec ({archive.files} files, {archive.size} bytes, "
                          f"{outcome.protocol or 'unknown protocol'})")
                return outcome.protocol
            detail = (outcome.stderr.strip() or outcome.message or "no status").splitlines()[-1:]
            problem = f"exit {outcome.returncode}: {' '.join(detail)}" if outcome.returncode is not None \
                else f"the stream ended early: {' '.join(detail)}"
            if outcome.returncode not in (None, 3, 4):
                raise ClusterError(f"unpacking the build context in {pod} failed: {problem}",
                                   hint="check the emptyDir's size limit (context_size_limit) and the pod's events")
        if attempt < attempts:
            sink.line(f"anybuild: context upload to {pod} failed ({problem}); retrying ({attempt}/{attempts - 1})")
            sleep(0.5 * attempt)
    raise ClusterError(f"the build context could not be uploaded to {pod} after {attempts} attempts: {problem}",
                       hint="check the network to the API server, or set upload = \"registry\" in "
                            "[backend.kubernetes]")


def push_context_artifact(archive: ContextArchive, repository: str, *, put_blob: Callable[[str, int, Callable[
        [], BinaryIO]], None], put_manifest: Callable[[bytes, str], None], scheme: str) -> ContextArtifact:
    """Push the tar as an OCI artifact (blob + empty config + manifest by digest, no tag)."""
    host, _, path = repository.partition("/")
    digest = f"sha256:{archive.sha256}"
    put_blob(digest, archive.size, archive.open)
    empty = b"{}"
    empty_digest = "sha256:" + hashlib.sha256(empty).hexdigest()
    put_blob(empty_digest, len(empty), lambda: _BytesFile(empty))
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": len(empty)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": digest, "size": archive.size}],
        "annotations": {"org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    put_manifest(json.dumps(manifest, separators=(",", ":")).encode(), "application/vnd.oci.image.manifest.v1+json")
    return ContextArtifact(registry=host, repository=path, digest=digest, size=archive.size, scheme=scheme)


class _BytesFile:
    """A seekable in-memory file for small blobs."""

    def __new__(cls, data: bytes) -> BinaryIO:  # type: ignore[misc]
        import io

        return io.BytesIO(data)


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """Where the context is packed: named after this process, so that the next build removes what a killed
    one left (see anybuild.leftovers)."""
    from anybuild.leftovers import owner_tag, sweep_stale

    parent = Path(os.environ.get("TMPDIR") or tempfile.gettempdir())
    sweep_stale(parent, "anybuild-kube-")
    return tempfile.TemporaryDirectory(prefix=f"anybuild-kube-{owner_tag()}.", dir=parent)
