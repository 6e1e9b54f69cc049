"""The costly probes' facts are reused for a short time while nothing they depend on changed (issue 23)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from anybuild.environment.cache import CACHED, TTL, ProbeCache, environment_key
from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, Topic
from anybuild.environment.probe import collect_facts
from anybuild.process import Completed, LineCallback, SubprocessRunner


@dataclass(slots=True)
class CountingRunner:
    """The real runner, counting the commands run (the probes' subprocesses)."""

    commands: list[str] = field(default_factory=list)
    inner: SubprocessRunner = field(default_factory=SubprocessRunner)

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
            timeout: float | None = None, stdin: str | None = None, on_line: LineCallback | None = None) -> Completed:
        self.commands.append(" ".join(str(a) for a in argv))
        return self.inner.run(argv, env=env, cwd=cwd, timeout=timeout, stdin=stdin, on_line=on_line)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _ctx(tmp_path: Path, **env: str) -> ProbeContext:
    return ProbeContext(env={"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"),
                             "ANYBUILD_DATA_DIR": str(tmp_path / "data"), **env},
                        cwd=tmp_path, thorough=False)


def _fact(value: object = "runc") -> Fact:
    return Fact(key="builder.sandbox", value=value, evidence="a trial RUN", topic=Topic.BUILDER)  # type: ignore[arg-type]


def test_put_then_get_within_ttl_with_age_in_evidence_then_expired(tmp_path: Path) -> None:
    clock = Clock()
    cache = ProbeCache(path=tmp_path / "c.json", key="k1", clock=clock)
    cache.put({"builder": [_fact(), _fact(("a", "b"))]})
    clock.now += 30
    again = ProbeCache(path=tmp_path / "c.json", key="k1", clock=clock)
    again._load()
    facts = again.get("builder")
    assert facts is not None
    assert [f.value for f in facts] == ["runc", ("a", "b")]  # a tuple stays a tuple
    assert facts[0].topic is Topic.BUILDER
    assert facts[0].evidence == "a trial RUN (found 30 s ago; unchanged since)"
    assert again.get("storage") is None
    clock.now += TTL
    assert again.get("builder") is None


def test_another_key_or_a_broken_file_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    ProbeCache(path=path, key="k1").put({"builder": [_fact()]})
    other = ProbeCache(path=path, key="k2")
    other._load()
    assert other.get("builder") is None
    path.write_text("{not json")
    broken = ProbeCache(path=path, key="k1")
    broken._load()
    assert broken.get("builder") is None
    path.write_text(json.dumps({"format": 1, "probes": {"builder": {"key": "k1", "time": "soon", "facts": []}}}))
    odd = ProbeCache(path=path, key="k1")
    odd._load()
    assert odd.get("builder") is None


def test_unwritable_place_is_silent(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    ProbeCache(path=blocker / "c.json", key="k").put({"builder": [_fact()]})  # no exception
    assert not (blocker / "c.json").exists()


def test_key_notices_a_changed_environment_and_ignores_secrets(tmp_path: Path) -> None:
    base = _ctx(tmp_path)
    key = environment_key(base)
    assert environment_key(base) == key  # stable
    assert environment_key(replace(base, env={**base.env, "DOCKER_HOST": "unix:///other.sock"})) != key
    assert environment_key(replace(base, env={**base.env, "ANYBUILD_DATA_DIR": str(tmp_path / "d2")})) != key
    assert environment_key(replace(base, thorough=True)) != key
    # A new executable on PATH (a runc installed), then a changed one (upgraded).
    tools = tmp_path / "bin"
    tools.mkdir()
    with_dir = replace(base, env={**base.env, "PATH": f"{tools}:{base.env['PATH']}"})
    before = environment_key(with_dir)
    runc = tools / "runc"
    runc.write_text("#!/bin/sh\necho runc version 9.9\n")
    runc.chmod(runc.stat().st_mode | stat.S_IXUSR)
    installed = environment_key(with_dir)
    assert installed != before
    runc.write_text("#!/bin/sh\necho runc version 10.0 upgraded\n")
    assert environment_key(with_dir) != installed
    # Secrets: not part of the key (its digest is written to disk).
    assert environment_key(replace(base, env={**base.env, "ANYBUILD_REGISTRY_PASSWORD": "hunter2"})) == key
    assert environment_key(replace(base, env={**base.env, "GITHUB_TOKEN": "ghp_x"})) == key


def test_for_context_off_for_prepared_trees_without_trials_fresh_or_env(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    cache = ProbeCache.for_context(ctx)
    assert cache is not None and cache.path == tmp_path / "data" / "probe-cache.json"
    assert ProbeCache.for_context(ctx, fresh=True) is None
    assert ProbeCache.for_context(replace(ctx, trials=False)) is None
    assert ProbeCache.for_context(replace(ctx, root=tmp_path)) is None
    assert ProbeCache.for_context(replace(ctx, env={**ctx.env, "ANYBUILD_PROBE_CACHE": "0"})) is None


@pytest.mark.skipif(not any(Path(d, "docker").exists() for d in os.environ.get("PATH", "").split(":")),
                    reason="no docker client on PATH: the tools probe runs no command to count")
def test_collect_facts_second_run_reuses_the_cached_probes(tmp_path: Path) -> None:
    first_runner, second_runner = CountingRunner(), CountingRunner()
    ctx = replace(_ctx(tmp_path), runner=first_runner)
    first = collect_facts(ctx, cache=ProbeCache.for_context(ctx))
    assert any("docker" in c for c in first_runner.commands)  # `docker --version`, `docker buildx version`
    again_ctx = replace(ctx, runner=second_runner)
    second = collect_facts(again_ctx, cache=ProbeCache.for_context(again_ctx))
    assert not any(c.endswith("--version") or "buildx" in c for c in second_runner.commands)
    assert {f.key: f.value for f in second} == {f.key: f.value for f in first}
    reused = {f.key for f in second if f.evidence.endswith("s ago; unchanged since)")}
    by_topic = {topic: {f.key for f in second if f.topic is topic} for topic in Topic}
    assert by_topic[Topic.TOOLS] <= reused and by_topic[Topic.BUILDER] <= reused
    assert by_topic[Topic.STORAGE] & reused
    live = by_topic[Topic.PLACE] | by_topic[Topic.PRIVILEGES] | by_topic[Topic.ACCESS]
    assert live and not live & reused  # cheap or live probes always run
    assert {"builder", "storage", "tools"} == CACHED
    # Turned off: everything runs again.
    third_runner = CountingRunner()
    third_ctx = replace(ctx, runner=third_runner)
    collect_facts(third_ctx, cache=ProbeCache.for_context(third_ctx, fresh=True))
    assert any("docker" in c for c in third_runner.commands)
