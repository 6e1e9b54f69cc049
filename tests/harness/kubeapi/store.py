"""The fake API server's object store: resourceVersions, a change history for watches (compactable, so a
watch can be answered 410 Gone), label and field selectors, and Events."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Change", "Store", "match_fields", "match_labels", "now_rfc3339"]

Key = tuple[str, str, str]  # kind (plural), namespace, name


def now_rfc3339(stamp: float | None = None, *, nanos: bool = False) -> str:
    moment = datetime.fromtimestamp(time.time() if stamp is None else stamp, tz=UTC)
    if nanos:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def match_labels(selector: str, labels: Mapping[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: Mapping[str, Any], dotted: str) -> str:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def match_fields(selector: str, obj: Mapping[str, Any]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if _field(obj, key) == value:
                return False
        else:
            key, value = term.replace("==", "=").split("=", 1)
            if _field(obj, key) != value:
                return False
    return True


@dataclass(frozen=True, slots=True)
class Change:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    kind: str
    namespace: str
    object: dict[str, Any]


class Store:
    """Objects by (kind, namespace, name); every change gets the next resourceVersion and is remembered."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[Key, dict[str, Any]] = {}
        self.history: list[Change] = []
        self.rv = 100
        self.compacted = 0  # watches from a resourceVersion below this get 410 Gone

    def _record(self, kind: str, namespace: str, change: str, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append(Change(self.rv, change, kind, namespace, copy.deepcopy(obj)))
        self.changed.notify_all()

    def create(self, kind: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            meta = obj.setdefault("metadata", {})
            name = meta.get("name") or (meta.get("generateName", "x-") + uuid.uuid4().hex[:5])
            meta["name"] = name
            key = (kind, namespace, name)
            if key in self.objects:
                raise KeyError(name)
            meta.setdefault("namespace", namespace)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            self.objects[key] = obj
            self._record(kind, namespace, "ADDED", obj)
            return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.objects.get((kind, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def update(self, kind: str, namespace: str, name: str, change: Callable[[dict[str, Any]], None]) -> bool:
        with self.lock:
            obj = self.objects.get((kind, namespace, name))
            if obj is None:
                return False
            change(obj)
            self._record(kind, namespace, "MODIFIED", obj)
            return True

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.pop((kind, namespace, name), None)
            if obj is not None:
                self._record(kind, namespace, "DELETED", obj)
            return obj

    def list(self, kind: str, namespace: str | None, *, labels: str = "", fields: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items())
                    if k == kind and (namespace is None or ns == namespace)
                    and match_labels(labels, o["metadata"].get("labels") or {}) and match_fields(fields, o)]

    def names(self, kind: str) -> list[str]:
        with self.lock:
            return sorted(name for (k, _, name) in self.objects if k == kind)

    def compact(self) -> None:
        """Forget the history so far: a watch from an older resourceVersion is answered 410."""
        with self.lock:
            self.compacted = self.rv + 1
            self.history.clear()

    def event(self, namespace: str, involved: Mapping[str, Any], kind: str, reason: str, message: str,
              type_: str = "Normal") -> None:
        meta = involved.get("metadata") or {}
        stamp = now_rfc3339()
        self.create("events", namespace, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {"kind": kind, "name": meta.get("name"), "namespace": namespace,
                               "uid": meta.get("uid"), "apiVersion": "v1" if kind == "Pod" else "batch/v1"},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": "fake-kubernetes"},
        })
