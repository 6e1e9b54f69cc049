"""Real builds through the buildah backend (vfs and overlay storage), pushed and read back from the registry."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.backends.buildah import BuildahBackend, BuildahSettings, Isolation, StorageDriver, buildah_settings
from anybuild.config import BackendName
from anybuild.environment.context import ProbeContext
from anybuild.environment.probe import collect_facts
from anybuild.errors import BuildFailed
from anybuild.process import SubprocessRunner
from tests.backends.images import hello_project, manifest_digest
from tests.harness import procs
from tests.harness.bases import BaseImages
from tests.harness.buildah import Buildah
from tests.harness.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.root]


def _request(project: Path, registry: Registry, tag: str) -> BuildRequest:
    host = registry.host
    return BuildRequest(
        context=project,
        dockerfile=project / "Dockerfile",
        tags=(f"{host}/test/hello:{tag}",),
        push=True,
        insecure_registries=(host,),
        registry_mirrors={"docker.io": (host,)},
    )


@pytest.fixture
def private_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A buildah root/runroot of its own (a storage driver cannot share another's root)."""
    procs.require_root("buildah with private storage")
    procs.require_binary("buildah", "buildah")
    work = tmp_path_factory.mktemp("buildah-storage")
    yield work
    procs.run(["buildah", "--root", str(work / "root"), "--runroot", str(work / "run"), "rm", "--all"], check=False)
    procs.unmount_under(work)
    procs.remove_tree(work)


def test_buildah_build_vfs_chroot_pushed_digest_matches_registry(
    tmp_path: Path, buildah: Buildah, registry: Registry, base_images: BaseImages
) -> None:
    settings = BuildahSettings(
        driver=StorageDriver.VFS,
        isolation=Isolation.CHROOT,
        root=buildah.root,
        runroot=buildah.runroot,
        signature_policy=buildah.policy,
    )
    backend = BuildahBackend(settings=settings, runner=SubprocessRunner(), env=dict(buildah.env), timeout=300)
    sink = ListSink()
    result = backend.build(_request(hello_project(tmp_path / "p"), registry, "buildah-vfs"), sink)
    assert result.backend is BackendName.BUILDAH
    assert result.sandbox == "chroot+vfs"
    assert result.digest == manifest_digest(registry.url, "test/hello", "buildah-vfs")
    assert any("STEP" in line for line in sink.lines)


def test_buildah_build_settings_from_this_machine_facts_pushed(
    tmp_path: Path, private_storage: Path, registry: Registry, base_images: BaseImages
) -> None:
    """Driver, isolation and runtime as the probes choose them here (overlay + oci + runc on this host)."""
    facts = collect_facts(ProbeContext(), budget=30.0)  # the facts, not their speed, under a loaded CI
    settings = replace(buildah_settings(facts), root=private_storage / "root", runroot=private_storage / "run")
    env = {**os.environ, "TMPDIR": str(private_storage)}
    backend = BuildahBackend(settings=settings, runner=SubprocessRunner(), env=env, timeout=300)
    result = backend.build(_request(hello_project(tmp_path / "p"), registry, "buildah-facts"), ListSink())
    assert result.sandbox == f"{settings.isolation}+{settings.driver}"
    assert result.digest == manifest_digest(registry.url, "test/hello", "buildah-facts")


def test_buildah_build_overlay_chroot_pushed(
    tmp_path: Path, private_storage: Path, registry: Registry, base_images: BaseImages
) -> None:
    settings = BuildahSettings(
        driver=StorageDriver.OVERLAY,
        isolation=Isolation.CHROOT,
        root=private_storage / "root",
        runroot=private_storage / "run",
    )
    backend = BuildahBackend(settings=settings, runner=SubprocessRunner(), env=dict(os.environ), timeout=300)
    result = backend.build(_request(hello_project(tmp_path / "p"), registry, "buildah-overlay"), ListSink())
    assert result.sandbox == "chroot+overlay"
    assert result.digest == manifest_digest(registry.url, "test/hello", "buildah-overlay")


def test_buildah_build_failing_run_build_failed(
    tmp_path: Path, buildah: Buildah, registry: Registry, base_images: BaseImages
) -> None:
    settings = BuildahSettings(
        driver=StorageDriver.VFS,
        isolation=Isolation.CHROOT,
        root=buildah.root,
        runroot=buildah.runroot,
        signature_policy=buildah.policy,
    )
    backend = BuildahBackend(settings=settings, runner=SubprocessRunner(), env=dict(buildah.env), timeout=300)
    project = hello_project(tmp_path / "bad", run="false")
    with pytest.raises(BuildFailed, match="buildah build failed"):
        backend.build(_request(project, registry, "bad"), ListSink())


def test_buildah_build_fuse_overlayfs_on_nested_overlay_pushed(
    tmp_path: Path, nested_overlay: Path, registry: Registry, base_images: BaseImages
) -> None:
    """The devpod case: storage on overlayfs, where only fuse-overlayfs (or vfs) works."""
    procs.require_binary("fuse-overlayfs", "fuse-overlayfs")
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse")
    graph = nested_overlay / "fuse-graph"
    settings = BuildahSettings(
        driver=StorageDriver.FUSE_OVERLAYFS,
        fuse_overlayfs=str(shutil.which("fuse-overlayfs")),
        isolation=Isolation.CHROOT,
        root=graph,
        runroot=tmp_path / "run",
    )
    backend = BuildahBackend(settings=settings, runner=SubprocessRunner(), env=dict(os.environ), timeout=300)
    try:
        result = backend.build(_request(hello_project(tmp_path / "p"), registry, "buildah-fuse"), ListSink())
        assert result.sandbox == "chroot+fuse-overlayfs"
        assert result.digest == manifest_digest(registry.url, "test/hello", "buildah-fuse")
    finally:
        globals_ = ["buildah", "--root", str(graph), "--runroot", str(tmp_path / "run"), "--storage-driver", "overlay"]
        procs.run([*globals_, "rm", "--all"], check=False)
        procs.run([*globals_, "rmi", "--all", "--force"], check=False)
        procs.unmount_under(graph)
        procs.unmount_under(tmp_path)
        procs.remove_tree(graph)
