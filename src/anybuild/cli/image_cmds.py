"""`anybuild pull | push | copy | inspect`: images between registries, OCI layouts and archives.

Locations are written as in skopeo: ``oci:DIR[:NAME]``, ``docker-archive:FILE``,
or an image reference (``ghcr.io/acme/api:1``, ``busybox``).

Registry settings (``mirrors``, ``insecure``) come from ``[registries."HOST"]`` in
``~/.config/anybuild/anybuild.toml`` and in the project's ``anybuild.toml`` (which
wins), plus ``--registry-mirror`` (docker.io images) and ``--insecure-registry``.
Credentials: see :mod:`anybuild.registry.credentials`.
"""

from __future__ import annotations

import contextlib
import platform as host_platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from anybuild.cli.session import Session, output_options, pass_session
from anybuild.config import RegistrySettings, find_config, load_config
from anybuild.errors import UsageError
from anybuild.oci import (
    Descriptor,
    Digest,
    ImageConfig,
    Index,
    LayoutStore,
    Manifest,
    Platform,
    parse_document,
    read_docker_archive,
)
from anybuild.oci.output import Output
from anybuild.registry import CredentialResolver, Reference, RegistryClient, RegistryTimeouts

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["copy", "inspect", "pull", "push"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where an image is: ``kind`` is ``oci``, ``docker-archive`` or ``registry``."""

    kind: str
    path: Path | None = None
    name: str | None = None
    reference: Reference | None = None

    @classmethod
    def parse(cls, text: str, cwd: Path) -> Location:
        if text.startswith("oci:"):
            rest = text[4:]
            directory, _, name = rest.partition(":")
            if not directory:
                raise UsageError(f"no directory in {text!r}", hint="write oci:DIR or oci:DIR:NAME")
            return cls(kind="oci", path=cwd / directory, name=name or None)
        if text.startswith("docker-archive:"):
            if not text[15:]:
                raise UsageError(f"no file in {text!r}", hint="write docker-archive:FILE")
            return cls(kind="docker-archive", path=cwd / text[15:])
        return cls(kind="registry", reference=Reference.parse(text.removeprefix("docker://")))


class _Bars:
    """Transfer progress as rich bars on stderr (thread-safe: rich Progress locks itself)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), console=console, transient=True)
        self._tasks: dict[Digest, Any] = {}

    def __enter__(self) -> _Bars:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, digest: Digest, total: int, action: str) -> None:
        self._tasks[digest] = self._progress.add_task(f"{action} {digest.short}", total=total)

    def advance(self, digest: Digest, amount: int) -> None:
        if digest in self._tasks:
            self._progress.advance(self._tasks[digest], amount)

    def finish(self, digest: Digest, outcome: str) -> None:
        task = self._tasks.pop(digest, None)
        if task is not None:
            self._progress.remove_task(task)


def registry_options(f: F) -> F:
    f = click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST",
                     help="Allow plain HTTP / unverified TLS for HOST (loopback is always allowed).")(f)
    f = click.option("--registry-mirror", "mirrors", multiple=True, metavar="HOST",
                     help="Try this mirror first for docker.io images (repeatable, in order).")(f)
    return click.option("--ca-cert", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                        help="Trust this CA certificate (PEM) for registry TLS.")(f)


@contextlib.contextmanager
def _client(session: Session, insecure: tuple[str, ...], ca_cert: Path | None) -> Iterator[RegistryClient]:
    resolver = CredentialResolver(env=session.env, home=Path.home())
    show = not session.json and not session.quiet and sys.stderr.isatty()
    with contextlib.ExitStack() as stack:
        bars = stack.enter_context(_Bars(session.err)) if show else None
        client = stack.enter_context(RegistryClient(
            credentials=resolver.resolve, insecure=frozenset(insecure) | _config_insecure(session),
            ca_bundle=ca_cert, redactor=session.redactor, progress=bars,
            notify=None if session.json else session.info, timeouts=RegistryTimeouts.from_env(session.env),
            cancel=session.cancel))
        yield client


def _config_registries(session: Session) -> dict[str, RegistrySettings]:
    """``[registries]`` of the user's config (``~/.config/anybuild/anybuild.toml``), then the project's."""
    config_home = Path(session.env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    merged: dict[str, RegistrySettings] = {}
    for path in (config_home / "anybuild" / "anybuild.toml", find_config(session.cwd)):
        if path is not None and path.is_file():
            merged.update(load_config(path).registries)
    return merged


def _config_insecure(session: Session) -> frozenset[str]:
    return frozenset(host for host, reg in _config_registries(session).items() if reg.insecure)


def _mirrors(session: Session, ref: Reference, flags: tuple[str, ...]) -> tuple[str, ...]:
    configured = _config_registries(session).get(ref.domain)
    hosts = list(flags) if ref.domain == "docker.io" else []
    hosts += list(configured.mirrors) if configured is not None else []
    return tuple(h.split("://", 1)[-1].rstrip("/") for h in hosts)


def _platform(text: str | None) -> Platform:
    if text:
        return Platform.parse(text)
    return Platform.for_machine(host_platform.system(), host_platform.machine())


@click.command(epilog="""\b
Examples:
  anybuild pull busybox:1.36 --output oci:./busybox
  anybuild pull ghcr.io/acme/api:1 --output docker-archive:api.tar --platform linux/arm64
  anybuild pull debian:bookworm --registry-mirror 127.0.0.1:5000 --output oci:deb
""")
@click.argument("ref")
@click.option("-o", "--output", required=True, metavar="oci:DIR|docker-archive:FILE", help="Where to write it.")
@click.option("--platform", "platform_text", metavar="OS/ARCH[/VARIANT]", help="Default: this machine's.")
@registry_options
@output_options
@pass_session
def pull(session: Session, *, ref: str, output: str, platform_text: str | None, insecure: tuple[str, ...],
         mirrors: tuple[str, ...], ca_cert: Path | None) -> None:
    """Pull an image from a registry into an OCI layout or a docker archive."""
    reference = Reference.parse(ref).defaulted()
    if not output.startswith(("oci:", "docker-archive:")):
        raise UsageError(f"--output {output!r} is not a local destination",
                         hint="write --output oci:DIR or --output docker-archive:FILE")
    target = Output.parse(output, session.cwd, names=True)
    target.check()  # before the pull: a mistake in the destination is said at once
    platform = _platform(platform_text)
    # pulled beside nothing the user sees: the destination gets the image whole, once it is all here
    with tempfile.TemporaryDirectory(prefix="anybuild-pull-") as scratch, \
            _client(session, insecure, ca_cert) as client:
        store = LayoutStore.create(Path(scratch))
        result = client.pull_image(reference, store, platform=platform, tag=target.name or reference.tag,
                                   mirrors=_mirrors(session, reference, mirrors))
        session.cancel.check("before writing the image (nothing was written)")
        target.write(store, result.descriptor, [target.name or reference.tag or ""] if target.kind == "oci"
                     else [reference.familiar], check=session.cancel.check)
        stats = client.stats.to_dict()
    data = {"reference": str(reference), "digest": str(result.descriptor.digest), "platform": str(platform),
            "served_by": result.served_by, "failed_sources": list(result.failed_sources),
            "output": output, "transfer": stats}
    source = result.served_by if result.served_by == reference.domain else f"mirror {result.served_by}"
    for failure in result.failed_sources:
        session.info(f"mirror failed, tried the next source: {failure}")
    session.emit(data, lambda console: console.print(
        f"pulled {reference.familiar} ({platform}) from {source}: {result.descriptor.digest} → {output}",
        markup=False))


@click.command(epilog="""\b
Examples:
  anybuild push oci:./out ghcr.io/acme/api:1.2
  anybuild push docker-archive:api.tar 127.0.0.1:5000/acme/api:dev
""")
@click.argument("source")
@click.argument("ref")
@registry_options
@output_options
@pass_session
def push(session: Session, *, source: str, ref: str, insecure: tuple[str, ...], mirrors: tuple[str, ...],
         ca_cert: Path | None) -> None:
    """Push an image from an OCI layout or a docker archive to a registry."""
    reference = Reference.parse(ref).defaulted()
    origin = Location.parse(source, session.cwd)
    with contextlib.ExitStack() as stack, _client(session, insecure, ca_cert) as client:
        store, descriptor = _open_local(origin, source, stack)
        result = client.push_image(store, descriptor, reference)
        stats = client.stats.to_dict()
    session.emit({"reference": str(reference), "digest": str(result.descriptor.digest), "transfer": stats},
                 lambda console: console.print(
                     f"pushed {reference.familiar}@{result.descriptor.digest} "
                     f"({_blob_summary(stats)})", markup=False))


def _open_local(origin: Location, text: str, stack: contextlib.ExitStack) -> tuple[LayoutStore, Descriptor]:
    if origin.kind == "oci" and origin.path is not None:
        store = LayoutStore.open(origin.path)
        return store, store.resolve(origin.name)
    if origin.kind == "docker-archive" and origin.path is not None:
        store = LayoutStore.create(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="anybuild-"))))
        images = read_docker_archive(origin.path, store)
        return store, images[0].descriptor
    raise UsageError(f"{text!r} is not a local image", hint="write oci:DIR[:NAME] or docker-archive:FILE")


def _blob_summary(stats: dict[str, Any]) -> str:
    blobs = ", ".join(f"{n} {k}" for k, n in sorted(stats["blobs"].items())) or "no blobs"
    return f"{blobs}; {stats['bytes_uploaded']} bytes uploaded"


@click.command(epilog="""\b
Examples:
  anybuild copy ghcr.io/acme/api:1.2 ghcr.io/acme/api:stable
  anybuild copy busybox:1.36 127.0.0.1:5000/library/busybox:1.36 --platform linux/amd64
""")
@click.argument("src")
@click.argument("dst")
@click.option("--platform", "platform_text", metavar="OS/ARCH[/VARIANT]", help="Copy one platform (default: all).")
@registry_options
@output_options
@pass_session
def copy(session: Session, *, src: str, dst: str, platform_text: str | None, insecure: tuple[str, ...],
         mirrors: tuple[str, ...], ca_cert: Path | None) -> None:
    """Copy an image between repositories; within one registry, blobs are mounted, not transferred."""
    source, target = Reference.parse(src), Reference.parse(dst)
    platform = Platform.parse(platform_text) if platform_text else None
    with tempfile.TemporaryDirectory(prefix="anybuild-copy-") as scratch, \
            _client(session, insecure, ca_cert) as client:
        result = client.copy_image(source, target, LayoutStore.create(Path(scratch)), platform=platform)
        stats = client.stats.to_dict()
    session.emit({"source": str(source.defaulted()), "reference": str(result.reference),
                  "digest": str(result.descriptor.digest), "transfer": stats},
                 lambda console: console.print(
                     f"copied {source.familiar} → {result.reference.familiar}@{result.descriptor.digest} "
                     f"({_blob_summary(stats)})", markup=False))


@click.command(epilog="""\b
Examples:
  anybuild inspect busybox:1.36
  anybuild inspect ghcr.io/acme/api:1.2 --json | jq .layers
""")
@click.argument("ref")
@click.option("--platform", "platform_text", metavar="OS/ARCH[/VARIANT]", help="Default: this machine's.")
@registry_options
@output_options
@pass_session
def inspect(session: Session, *, ref: str, platform_text: str | None, insecure: tuple[str, ...],
            mirrors: tuple[str, ...], ca_cert: Path | None) -> None:
    """Show an image's manifest, platforms, config and layers with their sizes."""
    reference = Reference.parse(ref).defaulted()
    with _client(session, insecure, ca_cert) as client:
        fetched = client.get_manifest(reference)
        document = parse_document(fetched.data, media_type=fetched.media_type or None)
        data: dict[str, Any] = {"reference": str(reference), "digest": str(fetched.digest),
                                "media_type": fetched.media_type}
        if isinstance(document, Index):
            data["platforms"] = [{"platform": str(m.platform) if m.platform else None, "digest": str(m.digest),
                                  "size": m.size} for m in document.manifests]
            choice = document.select(_platform(platform_text))
            if choice is None:
                session.emit(data, lambda console: _render_index(console, data))
                return
            fetched = client.get_manifest(reference.at(choice.digest))
            data["manifest_digest"] = str(fetched.digest)
        manifest = Manifest.from_json(fetched.data, media_type=fetched.media_type or None)
        scratch = Path(tempfile.mkdtemp(prefix="anybuild-inspect-"))
        try:
            store = LayoutStore.create(scratch)
            client.fetch_blob(reference, manifest.config, store)
            config = ImageConfig.from_json(store.read_blob(manifest.config))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    data.update({
        "platform": str(config.platform), "created": config.created or None,
        "config": config.config.to_dict(),
        "layers": [{"digest": str(layer.digest), "size": layer.size, "media_type": layer.media_type}
                   for layer in manifest.layers],
        "size": sum(layer.size for layer in manifest.layers) + manifest.config.size,
        "history": [h.to_dict() for h in config.history],
    })
    session.emit(data, lambda console: _render_image(console, data))


def _render_index(console: Console, data: dict[str, Any]) -> None:
    console.print(f"{data['reference']}  {data['digest']}  ({data['media_type']})", markup=False)
    for entry in data["platforms"]:
        console.print(f"  {entry['platform'] or '-':20} {entry['digest']}", markup=False)


def _render_image(console: Console, data: dict[str, Any]) -> None:
    if "platforms" in data:
        _render_index(console, data)
    console.print(f"image {data['reference']}  {data.get('manifest_digest', data['digest'])}", markup=False)
    console.print(f"platform {data['platform']}; {len(data['layers'])} layers, {data['size']} bytes",
                  markup=False)
    for key in ("Entrypoint", "Cmd", "WorkingDir", "User"):
        if key in data["config"]:
            console.print(f"  {key}: {data['config'][key]}", markup=False)
    for layer in data["layers"]:
        console.print(f"  {layer['digest']}  {layer['size']:>12}  {layer['media_type']}", markup=False)

