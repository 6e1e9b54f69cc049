"""The run's registry Secret: one ``kubernetes.io/dockerconfigjson`` Secret shared by the run's Jobs.

It is made when the first build needs it (from the user's Docker credential
store: every anybuild push's lookup), replaced with more registries when a
later build pushes elsewhere, and deleted when the last build using it ends.
Every password it learns goes to the run's redactor. With ``registry_secret``
set, that existing Secret is used as it is and nothing is made.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from anybuild.backends.kubernetes.client import Cluster, ClusterError, api_path
from anybuild.backends.kubernetes.spec import docker_config_json, secret_manifest
from anybuild.redaction import Redactor
from anybuild.registry.credentials import CredentialResolver

__all__ = ["RunSecret", "delete_object"]


def delete_object(cluster: Cluster, kind: str, name: str) -> None:
    """Delete, background propagation (a Job's pods go too); already gone is fine."""
    try:
        cluster.request("DELETE", api_path(kind, cluster.namespace, name),
                        body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"})
    except ClusterError as exc:
        if exc.status != 404:
            raise


@dataclass(slots=True)
class _Shared:
    name: str
    hosts: frozenset[str]
    users: int


class RunSecret:
    """Acquire the Secret for a build's registries; release it when the build ends."""

    def __init__(self, *, run_id: str, env: Mapping[str, str], home: Path, redactor: Redactor,
                 existing: str | None = None) -> None:
        self.run_id, self.env, self.home, self.redactor, self.existing = run_id, env, home, redactor, existing
        self._lock = threading.Lock()
        self._shared: _Shared | None = None

    def _credentials(self, hosts: frozenset[str]) -> dict[str, tuple[str, str]]:
        resolver = CredentialResolver(env=self.env, home=self.home)
        found: dict[str, tuple[str, str]] = {}
        for host in sorted(hosts):
            credentials = resolver.resolve(host)
            if credentials is None or not (credentials.password or credentials.identity_token):
                continue
            self.redactor.learn_credentials(credentials.username or "<token>", *credentials.secrets)
            found[host] = (credentials.username or "<token>", credentials.password or credentials.identity_token)
        return found

    def acquire(self, cluster: Cluster, hosts: frozenset[str]) -> str | None:
        """The Secret's name (None: no credentials for these registries, and no Secret is needed)."""
        if self.existing:
            return self.existing
        with self._lock:
            current = self._shared
            if current is not None and hosts <= current.hosts:
                current.users += 1
                return current.name
            wanted = hosts | (current.hosts if current else frozenset())
            auths = self._credentials(wanted)
            if not auths and current is None:
                return None
            name = f"anybuild-registry-{self.run_id}"
            manifest = secret_manifest(name, cluster.namespace, self.run_id, docker_config_json(auths))
            if current is None:
                cluster.request("POST", api_path("secrets", cluster.namespace), body=manifest)
                self._shared = _Shared(name=name, hosts=wanted, users=1)
            else:
                cluster.request("PUT", api_path("secrets", cluster.namespace, name), body=manifest)
                current.hosts, current.users = wanted, current.users + 1
            return name

    def release(self, cluster: Cluster, name: str | None) -> None:
        if name is None or name == self.existing:
            return
        with self._lock:
            current = self._shared
            if current is None or current.name != name:
                return
            current.users -= 1
            if current.users > 0:
                return
            self._shared = None
        delete_object(cluster, "secrets", name)
