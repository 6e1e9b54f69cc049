"""Follow a container's log from the moment it starts, and resume a dropped stream without loss or repeat.

Lines are asked for with ``timestamps=true``. After a drop, the stream is asked
again from the last line's second (``sinceTime``) and the lines already passed
on are skipped by their stamp: every earlier stamp, and as many lines with the
last stamp as were seen. ``400 ... PodInitializing`` (the container has not
started) is retried until it starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from anybuild.backends.kubernetes.client import Cluster, ClusterError, api_path

__all__ = ["LogFollower", "parse_stamp"]


def parse_stamp(text: str) -> tuple[int, int] | None:
    """``2026-12-07T15:40:01.123456789Z`` → (POSIX seconds, nanoseconds); None when it is no stamp."""
    if len(text) < 20 or text[10] != "T" or not text.endswith("Z"):
        return None
    whole, _, fraction = text[:-1].partition(".")
    try:
        seconds = int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return None
    return seconds, int((fraction + "000000000")[:9]) if fraction.isdigit() else 0


class LogFollower:
    """Pass each log line of one container to *emit*, exactly once, until the container ends."""

    def __init__(self, cluster: Cluster, pod: str, container: str, emit: Callable[[str], None], *,
                 stop: threading.Event, sleep: Callable[[float], None] = time.sleep, retries: int = 20) -> None:
        self.cluster, self.pod, self.container, self.emit = cluster, pod, container, emit
        self.stop = stop
        self.sleep = sleep
        self.retries = retries
        self.last: tuple[int, int] | None = None
        self.at_last = 0  # lines passed on with the stamp self.last
        self.resumed = 0
        self.lines = 0

    def _query(self) -> list[tuple[str, str]]:
        query = [("container", self.container), ("follow", "true"), ("timestamps", "true")]
        if self.last is not None:
            since = datetime.fromtimestamp(self.last[0], tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            query.append(("sinceTime", since))
        return query

    def _take(self, raw: bytes) -> None:
        text = raw.decode(errors="replace").rstrip("\r")
        head, _, rest = text.partition(" ")
        stamp = parse_stamp(head)
        if stamp is None:
            stamp, rest = (self.last or (0, 0)), text
        if self.last is not None:
            if stamp < self.last:
                return
            if stamp == self.last:
                self._skip -= 1
                if self._skip >= 0:
                    return
                self.at_last += 1
            else:
                self.last, self.at_last = stamp, 1
        else:
            self.last, self.at_last = stamp, 1
        self.lines += 1
        self.emit(rest)

    def follow(self) -> None:
        """Until the stream ends by itself (the container ended), or *stop* is set."""
        failures = 0
        while not self.stop.is_set():
            self._skip = self.at_last
            try:
                for raw in self.cluster.stream_lines(api_path("pods", self.cluster.namespace, self.pod, "log"),
                                                     query=self._query(), timeout=None):
                    self._take(raw)
                    if self.stop.is_set():
                        return
                return
            except ClusterError as exc:
                waiting = exc.status == 400 and ("PodInitializing" in exc.message or "waiting to start" in exc.message
                                                 or "ContainerCreating" in exc.message)
                if exc.status in (401, 403, 404):
                    raise
                failures += 1
                if failures > self.retries and not waiting:
                    raise
                if not waiting:
                    self.resumed += 1
                self.sleep(0.3 if waiting else min(2.0, 0.2 * failures))
