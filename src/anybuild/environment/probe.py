"""Run every probe concurrently, each bounded in time, and gather their facts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from anybuild.environment.access import probe_access
from anybuild.environment.builder import probe_builder
from anybuild.environment.cache import CACHED, ProbeCache
from anybuild.environment.context import ProbeContext
from anybuild.environment.daemon import probe_docker
from anybuild.environment.facts import Fact, Facts, Topic
from anybuild.environment.place import probe_place
from anybuild.environment.privileges import probe_privileges, read_uid
from anybuild.environment.storage import probe_storage
from anybuild.environment.tools import probe_tools

__all__ = ["PROBES", "collect_facts"]

Probe = Callable[[ProbeContext], list[Fact]]

PROBES: tuple[tuple[str, Topic, Probe], ...] = (
    ("place", Topic.PLACE, probe_place),
    ("privileges", Topic.PRIVILEGES, probe_privileges),
    ("builder", Topic.BUILDER, probe_builder),
    ("storage", Topic.STORAGE, lambda ctx: probe_storage(ctx, read_uid(ctx))),
    ("docker", Topic.DOCKER, probe_docker),
    ("tools", Topic.TOOLS, probe_tools),
    ("access", Topic.ACCESS, probe_access),
)


# The builder's probe runs a real trial RUN in each sandbox (a thorough probe: doctor), in its own
# user namespace: seconds in a slow pod, and bounded by its own timeouts.
_LONGER = {"builder": 60.0}


def collect_facts(ctx: ProbeContext, *, budget: float | None = None, cache: ProbeCache | None = None) -> Facts:
    """All facts about this machine, within *budget* seconds (1.5 s; 6 s with ``ctx.online``).

    Each probe runs in its own daemon thread; a probe still running when the
    budget is spent becomes a ``probe.<name>`` fact saying so, instead of a hang.
    The builder's trials have a budget of their own (see ``_LONGER``). With a
    *cache*, the costly probes' recent facts are reused while nothing they depend on
    changed, and what those probes find is kept for the next run.
    """
    budget = budget if budget is not None else (6.0 if ctx.online else 1.5)
    results: dict[str, list[Fact]] = {}
    errors: dict[str, str] = {}
    if cache is not None:
        for name in CACHED:
            if (cached := cache.get(name)) is not None:
                results[name] = cached
    reused = set(results)

    def run(name: str, probe: Probe) -> None:
        try:
            results[name] = probe(ctx)
        except Exception as exc:  # a probe bug must not take doctor down; keep it as evidence
            errors[name] = f"{type(exc).__name__}: {exc}"

    threads = [(name, threading.Thread(target=run, args=(name, probe), name=f"probe-{name}", daemon=True))
               for name, _, probe in PROBES if name not in reused]
    started = time.monotonic()
    for _, thread in threads:
        thread.start()
    for name, thread in threads:
        limit = max(budget, _LONGER.get(name, 0.0)) if ctx.trials else budget
        thread.join(max(0.0, started + limit - time.monotonic()))
    if cache is not None:
        cache.put({name: results[name] for name in CACHED if name in results and name not in reused})
    facts: list[Fact] = []
    for name, topic, _ in PROBES:
        if name in results:
            facts += results[name]
        elif name in errors:
            facts.append(Fact(key=f"probe.{name}", value=None, evidence=f"probe failed: {errors[name]}", topic=topic))
        else:
            limit = max(budget, _LONGER.get(name, 0.0)) if ctx.trials else budget
            facts.append(
                Fact(key=f"probe.{name}", value=None, evidence=f"probe did not finish within {limit:g} s", topic=topic)
            )
    return Facts.of(facts)
