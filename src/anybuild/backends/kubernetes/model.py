"""What anybuild reads of the cluster, as its own values (never the client library's models).

Each is made from the API server's JSON by a ``from_json`` classmethod that
tolerates missing fields: a real server omits what is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["ContainerState", "EventRecord", "ExecOutcome", "JobRecord", "PodState", "WatchEvent", "parse_time"]


def parse_time(text: object) -> float | None:
    """An RFC 3339 timestamp (as the API server writes them) as a POSIX time."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerState:
    """One container's status: waiting (with a reason), running, or terminated (exit code, message)."""

    name: str
    state: str  # "waiting" | "running" | "terminated" | "unknown"
    reason: str = ""
    message: str = ""
    exit_code: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerState:
        state = _dict(data.get("state"))
        for kind in ("terminated", "running", "waiting"):
            if kind in state:
                detail = _dict(state[kind])
                code = detail.get("exitCode")
                return cls(name=str(data.get("name", "")), state=kind, reason=str(detail.get("reason") or ""),
                           message=str(detail.get("message") or ""),
                           exit_code=int(code) if isinstance(code, int) else None)
        return cls(name=str(data.get("name", "")), state="unknown")


@dataclass(frozen=True, slots=True, kw_only=True)
class PodState:
    """The parts of a pod's status a build follows."""

    name: str
    uid: str = ""
    phase: str = "Pending"
    reason: str = ""  # e.g. DeadlineExceeded, Evicted
    message: str = ""
    resource_version: str = ""
    node: str = ""
    scheduled: bool | None = None  # the PodScheduled condition
    unschedulable_message: str = ""
    init: tuple[ContainerState, ...] = ()
    containers: tuple[ContainerState, ...] = ()
    created: float | None = None
    labels: Mapping[str, str] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PodState:
        metadata, status = _dict(data.get("metadata")), _dict(data.get("status"))
        scheduled: bool | None = None
        message = ""
        for condition in status.get("conditions") or ():
            condition = _dict(condition)
            if condition.get("type") == "PodScheduled":
                scheduled = condition.get("status") == "True"
                if not scheduled and condition.get("reason") == "Unschedulable":
                    message = str(condition.get("message") or "")
        return cls(
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            phase=str(status.get("phase") or "Pending"),
            reason=str(status.get("reason") or ""),
            message=str(status.get("message") or ""),
            resource_version=str(metadata.get("resourceVersion", "")),
            node=str(_dict(data.get("spec")).get("nodeName") or ""),
            scheduled=scheduled,
            unschedulable_message=message,
            init=tuple(ContainerState.from_json(_dict(c)) for c in status.get("initContainerStatuses") or ()),
            containers=tuple(ContainerState.from_json(_dict(c)) for c in status.get("containerStatuses") or ()),
            created=parse_time(metadata.get("creationTimestamp")),
            labels={str(k): str(v) for k, v in _dict(metadata.get("labels")).items()},
        )

    def container(self, name: str) -> ContainerState | None:
        return next((c for c in (*self.init, *self.containers) if c.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchEvent:
    """One line of a watch: ADDED / MODIFIED / DELETED / BOOKMARK / ERROR, and its object."""

    type: str
    object: Mapping[str, Any]

    @property
    def resource_version(self) -> str:
        return str(_dict(self.object.get("metadata")).get("resourceVersion", ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    """A Kubernetes Event about one object (what ``kubectl describe`` shows at its end)."""

    type: str  # Normal | Warning
    reason: str
    message: str
    count: int = 1
    time: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EventRecord:
        when = data.get("lastTimestamp") or data.get("eventTime") or _dict(data.get("metadata")).get(
            "creationTimestamp")
        count = data.get("count")
        return cls(type=str(data.get("type") or "Normal"), reason=str(data.get("reason") or ""),
                   message=str(data.get("message") or ""), count=int(count) if isinstance(count, int) else 1,
                   time=parse_time(when))

    def __str__(self) -> str:
        return f"{self.type} {self.reason}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """A Job anybuild made (for clean-up and gc)."""

    name: str
    run_id: str
    created: float | None
    finished: bool
    labels: Mapping[str, str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any], run_label: str) -> JobRecord:
        metadata, status = _dict(data.get("metadata")), _dict(data.get("status"))
        labels = {str(k): str(v) for k, v in _dict(metadata.get("labels")).items()}
        finished = any(_dict(c).get("type") in ("Complete", "Failed") and _dict(c).get("status") == "True"
                       for c in status.get("conditions") or ())
        return cls(name=str(metadata.get("name", "")), run_id=labels.get(run_label, ""),
                   created=parse_time(metadata.get("creationTimestamp")), finished=finished, labels=labels)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecOutcome:
    """How a command run over ``pods/exec`` ended."""

    returncode: int | None  # None: the stream ended without a status
    stdout: str
    stderr: str
    protocol: str  # the negotiated subprotocol, e.g. "v5.channel.k8s.io"
    message: str = ""  # the status channel's message
