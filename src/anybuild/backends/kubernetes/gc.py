"""``anybuild cluster gc``: remove what a killed client left behind.

Every Job and Secret anybuild makes carries ``app.kubernetes.io/managed-by=
anybuild``; those older than the threshold are deleted (Jobs with background
propagation, so their pods go too). A run that is still going has younger
objects, so the default threshold (one hour) leaves it alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anybuild.backends.kubernetes.client import Cluster, ClusterError, api_path
from anybuild.backends.kubernetes.model import parse_time
from anybuild.backends.kubernetes.spec import LABEL_RUN, run_selector

__all__ = ["Leftover", "collect_garbage"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Leftover:
    kind: str  # "jobs" | "secrets"
    name: str
    run_id: str
    age: float  # seconds
    deleted: bool

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "run": self.run_id, "age_seconds": round(self.age),
                "deleted": self.deleted}


def collect_garbage(cluster: Cluster, *, older_than: float, dry_run: bool = False,
                    clock: Callable[[], float] = time.time) -> list[Leftover]:
    """Delete (unless *dry_run*) anybuild's Jobs and Secrets older than *older_than* seconds."""
    now = clock()
    found: list[Leftover] = []
    for kind in ("jobs", "secrets"):
        data = cluster.request("GET", api_path(kind, cluster.namespace), query=[("labelSelector", run_selector())])
        for item in data.get("items") or ():
            metadata = item.get("metadata") or {}
            created = parse_time(metadata.get("creationTimestamp"))
            age = now - created if created is not None else float("inf")
            if age < older_than:
                continue
            name = str(metadata.get("name", ""))
            if not dry_run:
                try:
                    cluster.request("DELETE", api_path(kind, cluster.namespace, name), body={
                        "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"})
                except ClusterError as exc:
                    if exc.status != 404:
                        raise
            found.append(Leftover(kind=kind, name=name, run_id=str((metadata.get("labels") or {}).get(LABEL_RUN, "")),
                                  age=age, deleted=not dry_run))
    return found
