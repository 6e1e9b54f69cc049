"""Watch one Job's pod, not poll: its progress, and the real reason when it cannot run.

:func:`assess` is pure: from the pod's state, its events and how long it has
been waiting, it says whether the build goes on, has finished, or must be
stopped now, and why, quoting the events (ImagePullBackOff / ErrImagePull,
CreateContainerConfigError, Unschedulable past a grace period, OOMKilled,
deadline exceeded). :func:`job_refusal` reads a Job's events when it has no pod
(the controller could not create one: PodSecurity admission, quota).
:class:`PodWatch` finds the pod (by the Job's label), then watches it alone
(by field selector), listing again after ``410 Gone``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from anybuild.backends.kubernetes.client import Cluster, ClusterError, Gone, api_path, watch_events
from anybuild.backends.kubernetes.model import EventRecord, PodState
from anybuild.backends.kubernetes.spec import EXECUTOR, INIT

__all__ = ["Assessment", "PodWatch", "Stage", "Trouble", "assess", "job_refusal", "read_events"]

_PULL = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
_CONFIG = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")


class Stage(StrEnum):
    PENDING = "pending"
    RECEIVING = "receiving"  # the init container runs: the context is awaited
    BUILDING = "building"  # the executor runs
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Trouble(StrEnum):
    """Why a build stops before Kaniko could say anything, or how it was stopped."""

    IMAGE_PULL = "image-pull"
    CONTAINER_CONFIG = "container-config"
    UNSCHEDULABLE = "unschedulable"
    ADMISSION = "admission"  # PodSecurity
    QUOTA = "quota"
    OOM = "oom"
    DEADLINE = "deadline"
    EXECUTOR = "executor"  # Kaniko exited non-zero
    INIT = "init"  # the context never arrived
    EVICTED = "evicted"


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    stage: Stage
    trouble: Trouble | None = None
    reason: str = ""  # one sentence, with the quoted evidence
    exit_code: int | None = None
    message: str = ""  # the executor's termination message (the digest, on success)


def _quoted(events: Sequence[EventRecord], *, warnings_only: bool = True) -> str:
    chosen = [e for e in events if e.type == "Warning" or not warnings_only][-3:]
    return "; ".join(f'"{e.reason}: {e.message}"' for e in chosen)


def assess(pod: PodState, events: Sequence[EventRecord], *, pending_for: float, grace: float) -> Assessment:
    """What the pod's state means for the build (pure)."""
    executor = pod.container(EXECUTOR)
    init = pod.container(INIT)
    for container in (init, executor):
        if container is None or container.state != "waiting":
            continue
        if container.reason in _PULL:
            evidence = _quoted(events) or f'"{container.reason}: {container.message}"'
            return Assessment(stage=Stage.FAILED, trouble=Trouble.IMAGE_PULL, reason=(
                f"the {container.name} container's image cannot be pulled ({container.reason}); events: {evidence}"))
        if container.reason in _CONFIG:
            evidence = _quoted(events) or f'"{container.message}"'
            return Assessment(stage=Stage.FAILED, trouble=Trouble.CONTAINER_CONFIG, reason=(
                f"the {container.name} container cannot be created ({container.reason}: {container.message}); "
                f"events: {evidence}"))
    if pod.phase == "Failed" and pod.reason == "DeadlineExceeded":
        return Assessment(stage=Stage.FAILED, trouble=Trouble.DEADLINE, reason=(
            f"the build ran past its deadline (activeDeadlineSeconds): {pod.message or pod.reason}"))
    if pod.phase == "Failed" and pod.reason == "Evicted":
        return Assessment(stage=Stage.FAILED, trouble=Trouble.EVICTED, reason=f"the pod was evicted: {pod.message}")
    if executor is not None and executor.state == "terminated":
        if executor.reason == "OOMKilled":
            return Assessment(stage=Stage.FAILED, trouble=Trouble.OOM, exit_code=executor.exit_code, reason=(
                f"Kaniko was killed for using more memory than its limit (OOMKilled, exit {executor.exit_code})"))
        if executor.exit_code == 0:
            return Assessment(stage=Stage.SUCCEEDED, exit_code=0, message=executor.message.strip())
        return Assessment(stage=Stage.FAILED, trouble=Trouble.EXECUTOR, exit_code=executor.exit_code,
                          message=executor.message.strip(),
                          reason=f"Kaniko exited with status {executor.exit_code}")
    if init is not None and init.state == "terminated" and init.exit_code not in (0, None):
        return Assessment(stage=Stage.FAILED, trouble=Trouble.INIT, exit_code=init.exit_code, reason=(
            f"the context container failed with status {init.exit_code}: {init.message or init.reason}"))
    if pod.phase == "Failed":
        return Assessment(stage=Stage.FAILED, trouble=Trouble.EXECUTOR, reason=(
            f"the pod failed: {pod.reason or 'no reason given'} {pod.message}".strip()))
    if pod.scheduled is False and pod.unschedulable_message:
        if pending_for >= grace:
            return Assessment(stage=Stage.FAILED, trouble=Trouble.UNSCHEDULABLE, reason=(
                f"no node can run the build after {pending_for:.0f}s: {pod.unschedulable_message}"))
        return Assessment(stage=Stage.PENDING, reason=f"unschedulable so far: {pod.unschedulable_message}")
    if executor is not None and executor.state == "running":
        return Assessment(stage=Stage.BUILDING)
    if init is not None and init.state == "running":
        return Assessment(stage=Stage.RECEIVING)
    return Assessment(stage=Stage.PENDING)


def read_events(cluster: Cluster, kind: str, name: str) -> list[EventRecord]:
    data = cluster.request("GET", api_path("events", cluster.namespace), query=[
        ("fieldSelector", f"involvedObject.kind={kind},involvedObject.name={name}")])
    events = [EventRecord.from_json(item) for item in data.get("items") or ()]
    return sorted(events, key=lambda e: e.time or 0.0)


def job_refusal(events: Sequence[EventRecord], namespace: str) -> Assessment | None:
    """The Job controller's FailedCreate, translated: PodSecurity admission or quota."""
    for event in reversed(events):
        if event.reason != "FailedCreate":
            continue
        if "PodSecurity" in event.message:
            level = event.message.split('PodSecurity "', 1)[-1].split(":", 1)[0] if 'PodSecurity "' in \
                event.message else "restricted"
            return Assessment(stage=Stage.FAILED, trouble=Trouble.ADMISSION, reason=(
                f'the namespace {namespace} enforces the PodSecurity level "{level}", which refuses the build pod: '
                f"Kaniko runs as root and needs to change file ownership; event: \"{event.message}\""))
        if "exceeded quota" in event.message:
            return Assessment(stage=Stage.FAILED, trouble=Trouble.QUOTA, reason=(
                f'the namespace {namespace} has no quota left for the build pod; event: "{event.message}"'))
        return Assessment(stage=Stage.FAILED, trouble=Trouble.ADMISSION, reason=(
            f'the Job could not create its pod; event: "{event.message}"'))
    return None


class PodWatch:
    """The pod of one Job, as it changes: one watch by field selector, a new list after 410."""

    def __init__(self, cluster: Cluster, job: str, *, stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic, poll: float = 5.0) -> None:
        self.cluster, self.job, self.stop = cluster, job, stop
        self.clock = clock
        self.poll = poll  # seconds a watch call lasts before it is renewed (and Job events re-read)
        self.relists = 0

    def _list(self, selector: tuple[str, str]) -> tuple[list[PodState], str]:
        data = self.cluster.request("GET", api_path("pods", self.cluster.namespace), query=[selector])
        version = str((data.get("metadata") or {}).get("resourceVersion", ""))
        return [PodState.from_json(item) for item in data.get("items") or ()], version

    def find_pod(self, refused: Callable[[], Assessment | None]) -> PodState | Assessment:
        """The Job's pod once it exists, or the controller's refusal to make one."""
        selector = ("labelSelector", f"job-name={self.job}")
        while not self.stop.is_set():
            pods, version = self._list(selector)
            if pods:
                return pods[0]
            found = refused()
            if found is not None:
                return found
            try:
                for event in watch_events(self.cluster.stream_lines(
                        api_path("pods", self.cluster.namespace),
                        query=[selector, ("watch", "true"), ("resourceVersion", version),
                               ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(int(self.poll)))],
                        timeout=self.poll + 10)):
                    if event.type in ("ADDED", "MODIFIED"):
                        return PodState.from_json(event.object)
                    if self.stop.is_set():
                        break
            except Gone:
                self.relists += 1
        raise _Stopped

    def changes(self, pod: PodState) -> Iterator[PodState]:
        """*pod* now, then every change of it, until it is deleted or *stop* is set."""
        selector = ("fieldSelector", f"metadata.name={pod.name}")
        current, version = pod, pod.resource_version
        yield current
        while not self.stop.is_set():
            try:
                for event in watch_events(self.cluster.stream_lines(
                        api_path("pods", self.cluster.namespace),
                        query=[selector, ("watch", "true"), ("resourceVersion", version),
                               ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(int(self.poll)))],
                        timeout=self.poll + 10)):
                    version = event.resource_version or version
                    if event.type == "DELETED":
                        return
                    if event.type in ("ADDED", "MODIFIED"):
                        current = PodState.from_json(event.object)
                        yield current
                    elif event.type == "BOOKMARK":
                        yield current  # lets the caller re-assess the grace periods
                    if self.stop.is_set():
                        return
                yield current
            except Gone:
                self.relists += 1
                pods, version = self._list(selector)
                if not pods:
                    return
                current = pods[0]
                yield current
            except ClusterError as exc:
                if exc.reason != "StreamDropped":
                    raise
                self.relists += 1


class _Stopped(Exception):
    """Internal: the watch was stopped (Ctrl-C, or the build ended elsewhere)."""
