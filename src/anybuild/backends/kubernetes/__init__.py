"""The kubernetes backend: every image built as a Kaniko Job in the user's cluster.

- :mod:`.settings`: ``[backend.kubernetes]`` and the pinned executor image;
- :mod:`.spec`: the Jobs and the Secret, as data (pure);
- :mod:`.client`: anybuild's :class:`~.client.Cluster` interface over the official client;
- :mod:`.preflight`: the server's version and SelfSubjectAccessReviews, before anything is created;
- :mod:`.upload`: the context's tar, streamed over exec or pushed as an OCI artifact;
- :mod:`.watch`: the pod's progress and the real reason it cannot run;
- :mod:`.logs`: the executor's log, followed and resumed without loss or repeat;
- :mod:`.secret`: the run's registry Secret, shared by its Jobs;
- :mod:`.failures`: what stops a build in the cluster, as the error a user reads;
- :mod:`.backend`: one Job per image and platform, cleaned up whatever happens;
- :mod:`.gc`: what a killed client left behind;
- :mod:`.render`: the manifests ``plan --show-manifests`` prints.

This package imports neither the client library nor the builders until a build
(or ``doctor --online``) needs them, so planning stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KubernetesBackend", "kubernetes_verdict"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from anybuild.backends.kubernetes import backend

        return getattr(backend, name)
    raise AttributeError(name)
