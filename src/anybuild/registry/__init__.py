"""The Distribution API client: references, credentials, auth, pull, push and copy.

::

    client = RegistryClient(credentials=CredentialResolver(env=env, home=home).resolve)
    result = client.pull_image(Reference.parse("busybox:1.36"), LayoutStore.create(path),
                               platform=Platform.parse("linux/amd64"), mirrors=("127.0.0.1:5000",))
    client.push_image(store, store.resolve("latest"), Reference.parse("ghcr.io/acme/api:1"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anybuild.lazy import loader

if TYPE_CHECKING:
    from anybuild.registry.auth import Challenge, RegistryAuth, Scope, parse_challenges
    from anybuild.registry.client import FetchedManifest, NoProgress, Progress, RegistryClient, TransferStats
    from anybuild.registry.credentials import CredentialResolver, Credentials
    from anybuild.registry.http import RegistryTimeouts, RetryPolicy, is_loopback
    from anybuild.registry.reference import DOCKER_HUB, Reference
    from anybuild.registry.transfer import PullResult, PushResult, copy_image, pull_image, push_image


__all__ = [
    "DOCKER_HUB",
    "Challenge",
    "CredentialResolver",
    "Credentials",
    "FetchedManifest",
    "NoProgress",
    "Progress",
    "PullResult",
    "PushResult",
    "Reference",
    "RegistryAuth",
    "RegistryClient",
    "RegistryTimeouts",
    "RetryPolicy",
    "Scope",
    "TransferStats",
    "copy_image",
    "is_loopback",
    "parse_challenges",
    "pull_image",
    "push_image",
]

# name -> the submodule defining it, loaded on first use (a HEAD of a manifest
# does not load the transfer code)
_WHERE: dict[str, str] = {
    "Challenge": "auth",
    "RegistryAuth": "auth",
    "Scope": "auth",
    "parse_challenges": "auth",
    "FetchedManifest": "client",
    "NoProgress": "client",
    "Progress": "client",
    "RegistryClient": "client",
    "TransferStats": "client",
    "CredentialResolver": "credentials",
    "Credentials": "credentials",
    "RegistryTimeouts": "http",
    "RetryPolicy": "http",
    "is_loopback": "http",
    "DOCKER_HUB": "reference",
    "Reference": "reference",
    "PullResult": "transfer",
    "PushResult": "transfer",
    "copy_image": "transfer",
    "pull_image": "transfer",
    "push_image": "transfer",
}


__getattr__ = loader(__name__, _WHERE, globals())
