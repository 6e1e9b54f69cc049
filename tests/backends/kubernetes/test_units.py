"""The pure parts: reading a pod's state, Role rules, log stamps, and resuming a log without loss or repeat."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from anybuild.backends.kubernetes.client import ClusterError, Gone, watch_events
from anybuild.backends.kubernetes.logs import LogFollower, parse_stamp
from anybuild.backends.kubernetes.model import EventRecord, ExecOutcome, PodState
from anybuild.backends.kubernetes.preflight import BUILD_RULES, role_rules
from anybuild.backends.kubernetes.watch import Stage, Trouble, assess


def _pod(init: dict[str, Any] | None = None, executor: dict[str, Any] | None = None, **status: Any) -> PodState:
    body: dict[str, Any] = {"phase": "Pending", **status}
    if init is not None:
        body["initContainerStatuses"] = [{"name": "context", "state": init}]
    if executor is not None:
        body["containerStatuses"] = [{"name": "kaniko", "state": executor}]
    return PodState.from_json({"metadata": {"name": "p", "resourceVersion": "7"}, "status": body})


@pytest.mark.parametrize(("pod", "stage", "trouble"), [
    (_pod(), Stage.PENDING, None),
    (_pod(init={"running": {}}), Stage.RECEIVING, None),
    (_pod(init={"terminated": {"exitCode": 0}}, executor={"running": {}}), Stage.BUILDING, None),
    (_pod(executor={"terminated": {"exitCode": 0, "message": "sha256:" + "a" * 64}}), Stage.SUCCEEDED, None),
    (_pod(executor={"terminated": {"exitCode": 1, "reason": "Error"}}, phase="Failed"), Stage.FAILED,
     Trouble.EXECUTOR),
    (_pod(executor={"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, phase="Failed"), Stage.FAILED,
     Trouble.OOM),
    (_pod(init={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}), Stage.FAILED,
     Trouble.IMAGE_PULL),
    (_pod(executor={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "x" not found'}}),
     Stage.FAILED, Trouble.CONTAINER_CONFIG),
    (_pod(phase="Failed", reason="DeadlineExceeded", message="too long"), Stage.FAILED, Trouble.DEADLINE),
    (_pod(init={"terminated": {"exitCode": 2, "reason": "Error"}}), Stage.FAILED, Trouble.INIT),
], ids=["pending", "receiving", "building", "succeeded", "kaniko-failed", "oom", "pull", "config", "deadline",
        "init"])
def test_assess_reads_the_pod(pod: PodState, stage: Stage, trouble: Trouble | None) -> None:
    found = assess(pod, [], pending_for=0.0, grace=30.0)
    assert (found.stage, found.trouble) == (stage, trouble)


def test_unschedulable_waits_out_its_grace_then_fails_quoting_the_scheduler() -> None:
    message = "0/3 nodes are available: 3 Insufficient memory."
    pod = _pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message}])
    assert assess(pod, [], pending_for=5.0, grace=30.0).stage is Stage.PENDING
    late = assess(pod, [], pending_for=31.0, grace=30.0)
    assert late.trouble is Trouble.UNSCHEDULABLE and message in late.reason


def test_image_pull_quotes_the_warning_events() -> None:
    events = [EventRecord(type="Normal", reason="Scheduled", message="assigned"),
              EventRecord(type="Warning", reason="Failed", message='Failed to pull image "x": not found')]
    found = assess(_pod(init={"waiting": {"reason": "ErrImagePull"}}), events, pending_for=1.0, grace=30.0)
    assert 'Failed to pull image "x": not found' in found.reason and "assigned" not in found.reason


def test_role_rules_group_verbs_by_resource() -> None:
    text = role_rules(BUILD_RULES)
    assert '- apiGroups: ["batch"]\n  resources: ["jobs"]\n  verbs: ["create", "delete", "list"]' in text
    assert 'resources: ["pods/log"]\n  verbs: ["get"]' in text


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-07T15:40:01.123456789Z", (1796658001, 123456789)),
    ("2026-12-07T15:40:01.5Z", (1796658001, 500000000)),
    ("2026-12-07T15:40:01Z", (1796658001, 0)),
    ("INFO[0000]", None),
])
def test_parse_stamp(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_stamp(text) == expected


def test_watch_error_410_is_gone() -> None:
    lines = [b'{"type":"ADDED","object":{"metadata":{"resourceVersion":"5"}}}',
             b'{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}']
    events = watch_events(lines)
    assert next(events).resource_version == "5"
    with pytest.raises(Gone):
        next(events)


class _DroppingLogs:
    """A Cluster whose log streams serve *lines* and cut after *cut* lines, honouring sinceTime (seconds)."""

    namespace = "builds"
    description = "scripted"

    def __init__(self, lines: list[tuple[str, str]], cuts: list[int]) -> None:
        self.lines, self.cuts, self.asked = lines, cuts, []

    def stream_lines(self, path: str, *, query: Sequence[tuple[str, str]] = (),
                     timeout: float | None = None) -> Iterator[bytes]:
        since = dict(query).get("sinceTime")
        self.asked.append(since)
        served = [(s, t) for s, t in self.lines if since is None or s[:19] >= since[:19]]
        cut = self.cuts.pop(0) if self.cuts else None
        for index, (stamp, text) in enumerate(served):
            if cut is not None and index == cut:
                raise ClusterError("cut", reason="StreamDropped")
            yield f"{stamp} {text}".encode()

    def request(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (),
                body: Mapping[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        raise AssertionError("not used")

    def exec(self, pod: str, container: str, command: Sequence[str], stdin: Iterable[bytes], *,
             timeout: float = 300.0) -> ExecOutcome:
        raise AssertionError("not used")

    def close(self) -> None:
        pass


def test_log_resumed_after_drops_loses_and_repeats_nothing_even_within_one_second() -> None:
    # Many lines in the same second and some with the very same stamp: the resume asks from the second.
    lines = [(f"2026-12-07T15:40:0{n // 4}.{(n // 2) * 10:09d}Z", f"line {n}") for n in range(12)]
    cluster = _DroppingLogs(lines, cuts=[3, 2, 5])
    seen: list[str] = []
    follower = LogFollower(cluster, "p", "kaniko", seen.append, stop=threading.Event(), sleep=lambda _s: None)
    follower.follow()
    assert seen == [text for _, text in lines]
    assert follower.resumed == 3 and cluster.asked[0] is None and all(cluster.asked[1:])


def test_log_waits_while_the_container_is_initializing() -> None:
    class _Initializing(_DroppingLogs):
        def stream_lines(self, path: str, *, query: Sequence[tuple[str, str]] = (),
                         timeout: float | None = None) -> Iterator[bytes]:
            if len(self.asked) < 2:
                self.asked.append("waiting")
                raise ClusterError('container "kaniko" in pod "p" is waiting to start: PodInitializing', status=400)
            return super().stream_lines(path, query=query, timeout=timeout)

    cluster = _Initializing([("2026-12-07T15:40:01.000000001Z", "hello")], cuts=[])
    seen: list[str] = []
    LogFollower(cluster, "p", "kaniko", seen.append, stop=threading.Event(), sleep=lambda _s: None).follow()
    assert seen == ["hello"]
