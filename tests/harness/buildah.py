"""buildah with private storage (--root/--runroot), a docker.io mirror and an open policy."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness import procs

__all__ = ["Buildah", "registries_conf", "running_buildah"]

# Subcommands that resolve images and so accept the (hidden) --signature-policy flag.
_POLICY_COMMANDS = frozenset({"bud", "build", "build-using-dockerfile", "from", "pull", "push"})


def registries_conf(mirror_host: str) -> str:
    """registries.conf (v2) sending docker.io pulls to `mirror_host` over plain HTTP."""
    return (
        'unqualified-search-registries = ["docker.io"]\n'
        'short-name-mode = "permissive"\n\n'
        "[[registry]]\n"
        'prefix = "docker.io"\n'
        'location = "docker.io"\n\n'
        "[[registry.mirror]]\n"
        f'location = "{mirror_host}"\n'
        "insecure = true\n\n"
        "[[registry]]\n"
        f'location = "{mirror_host}"\n'
        "insecure = true\n"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Buildah:
    binary: str
    root: Path
    runroot: Path
    registries_conf: Path
    policy: Path
    storage_driver: str
    env: Mapping[str, str]

    def argv(self, *args: str) -> list[str]:
        """The full buildah command line for `args`, with this instance's global options."""
        argv = [
            self.binary,
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            self.storage_driver,
            "--registries-conf",
            str(self.registries_conf),
            "--registries-conf-dir",
            str(self.registries_conf.parent / "registries.conf.d"),
            "--short-name-alias-conf",
            str(self.registries_conf.parent / "short-name-aliases.conf"),
        ]
        if args and args[0] in _POLICY_COMMANDS:
            return [*argv, args[0], "--signature-policy", str(self.policy), *args[1:]]
        return [*argv, *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,  # noqa: A002 (as in subprocess.run)
        timeout: float = 600.0,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return procs.run(self.argv(*args), env=self.env, check=check, input=input, timeout=timeout, cwd=cwd)


@contextmanager
def running_buildah(work: Path, *, mirror_host: str, storage_driver: str = "vfs") -> Iterator[Buildah]:
    """A Buildah whose storage lives under `work`; storage unmounted and removed on exit."""
    procs.require_root("buildah (rootful, chroot isolation)")
    binary = procs.require_binary("buildah", "buildah")
    procs.require_binary("runc", "runc")
    etc = work / "etc"
    (etc / "registries.conf.d").mkdir(parents=True, exist_ok=True)
    conf = etc / "registries.conf"
    conf.write_text(registries_conf(mirror_host))
    policy = etc / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    containers_conf = etc / "containers.conf"
    containers_conf.write_text('[engine]\nruntime = "runc"\n')
    env = {
        **os.environ,
        "BUILDAH_ISOLATION": "chroot",
        "BUILDAH_RUNTIME": "runc",
        "CONTAINERS_REGISTRIES_CONF": str(conf),
        "CONTAINERS_CONF": str(containers_conf),
        "CONTAINERS_STORAGE_CONF": str(etc / "storage.conf"),
        "REGISTRY_AUTH_FILE": str(etc / "auth.json"),
        "TMPDIR": str(work / "tmp"),
    }
    (etc / "storage.conf").write_text(
        f'[storage]\ndriver = "{storage_driver}"\nrunroot = "{work / "run"}"\ngraphroot = "{work / "root"}"\n'
    )
    (etc / "auth.json").write_text(json.dumps({"auths": {}}))
    (work / "tmp").mkdir(exist_ok=True)
    instance = Buildah(
        binary=binary,
        root=work / "root",
        runroot=work / "run",
        registries_conf=conf,
        policy=policy,
        storage_driver=storage_driver,
        env=env,
    )
    try:
        yield instance
    finally:
        procs.run(instance.argv("rm", "--all"), env=env, check=False, timeout=120)
        procs.unmount_under(work)
        procs.remove_tree(work)
