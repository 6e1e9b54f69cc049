"""The built-in builder, tried where it would run: its user namespace, sandboxes and snapshotter.

The namespace is chosen by real attempts (:func:`anybuild.builder.host.choose_namespace`)
on every probe that allows trials; ``doctor`` (a thorough probe) also runs
``python -m anybuild.builder.trial`` in that namespace, which runs a trial RUN in
every sandbox of the ladder and the snapshotter's trial mount, exactly as a build
would. Nothing is inferred from the presence of a binary.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, FactKey, FactValue, Topic
from anybuild.errors import AnybuildError

__all__ = ["probe_builder"]


def _fact(key: FactKey, value: FactValue, evidence: str) -> Fact:
    return Fact(key=key, value=value, evidence=evidence, topic=Topic.BUILDER)


def probe_builder(ctx: ProbeContext) -> list[Fact]:
    if not ctx.trials:
        return [_fact(FactKey.BUILDER_NAMESPACE, None, "not tried (trials disabled)")]
    from anybuild.builder.host import choose_namespace  # only a probe that tries things needs it

    try:
        namespace = choose_namespace(runner=ctx.runner, env=ctx.env, proc=ctx.path("/proc/self"),
                                     etc=ctx.path("/etc"))
    except AnybuildError as exc:
        return [_fact(FactKey.BUILDER_NAMESPACE, None, exc.message)]
    facts = [_fact(FactKey.BUILDER_NAMESPACE, namespace.mapping or "none",
                   f"{namespace.reason}: " + "; ".join(namespace.evidence))]
    if ctx.thorough:
        facts += _trial(ctx, namespace.mapping)
        facts.append(_platforms(ctx, namespace.mapping))
    return facts


@contextlib.contextmanager
def _scratch(ctx: ProbeContext) -> Iterator[Path]:
    """A private directory in the data directory's tmp/ for a trial subprocess, named after this process:
    removed when the trial ends, however it ends (a build interrupted while its probe runs leaves none);
    one that a killed anybuild left is removed by the next probe (anybuild.leftovers)."""
    from anybuild.leftovers import owner_tag, sweep_stale

    tmp = ctx.anybuild_data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    sweep_stale(tmp, "probe-")
    scratch = Path(tempfile.mkdtemp(prefix=f"probe-{owner_tag()}.", dir=tmp))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _platforms(ctx: ProbeContext, mapping: str | None) -> Fact:
    """Which platforms' RUN steps can run here, and how: each route tried with a tiny program of that
    architecture (:func:`anybuild.builder.emulation.trial_platforms`), in the namespace a build would use
    (root without one of its own enters an identity-mapped one for a binfmt_misc of the build's own)."""
    with _scratch(ctx) as scratch:
        return _platforms_in(ctx, mapping, [sys.executable, "-m", "anybuild.builder.emulation", str(scratch)])


def _platforms_in(ctx: ProbeContext, mapping: str | None, command: list[str]) -> Fact:
    import os

    from anybuild.builder.sandbox.model import USERNS_ENV
    from anybuild.builder.userns import launcher_argv

    attempts: list[tuple[str | None, list[str]]] = []
    if mapping is not None:
        attempts.append((mapping, launcher_argv(sys.executable, mapping, command)))
    elif os.geteuid() == 0 and (ctx.env.get("ANYBUILD_USERNS") or "").strip().lower() != "none":
        attempts.append(("identity", launcher_argv(sys.executable, "identity", command)))
    attempts.append((None, command))
    failures: list[str] = []
    for where, argv in attempts:
        env = dict(ctx.env)
        if where is not None:
            env[USERNS_ENV] = where
        try:
            done = ctx.runner.run(argv, env=env, timeout=max(ctx.timeout, 60.0))
            report = json.loads(done.stdout.strip().splitlines()[-1]) if done.ok and done.stdout.strip() else None
        except (AnybuildError, ValueError) as exc:
            failures.append(str(exc))
            continue
        if report is None:
            failures.append((done.output.strip().splitlines()[-1:] or [f"exit {done.returncode}"])[0])
            continue
        value = tuple(f"{p['platform']}: {p['route']}" if p["route"] else f"{p['platform']}: cannot"
                      for p in report["platforms"])
        where_text = f"in a {where}-mapped user namespace" if where else "as this process is"
        evidence = "; ".join(f"{p['platform']}: " + ", ".join(p["tried"]) for p in report["platforms"] if p["tried"])
        return _fact(FactKey.BUILDER_PLATFORMS, value,
                     f"a program of each architecture run through each route, {where_text}"
                     + (f" ({evidence})" if evidence else ""))
    return _fact(FactKey.BUILDER_PLATFORMS, None, "the platforms' trial failed: " + "; ".join(failures))


def _trial(ctx: ProbeContext, mapping: str | None) -> list[Fact]:
    with _scratch(ctx) as scratch:
        return _trial_in(ctx, mapping, [sys.executable, "-m", "anybuild.builder.trial", str(scratch)])


def _trial_in(ctx: ProbeContext, mapping: str | None, command: list[str]) -> list[Fact]:
    from anybuild.builder.sandbox.model import USERNS_ENV
    from anybuild.builder.userns import launcher_argv

    env = dict(ctx.env)
    if mapping is not None:
        command = launcher_argv(sys.executable, mapping, command)
        env[USERNS_ENV] = mapping
    where = f"in a {mapping}-mapped user namespace" if mapping else "as this process is"
    try:
        done = ctx.runner.run(command, env=env, timeout=max(ctx.timeout, 60.0))
        report = json.loads(done.stdout.strip().splitlines()[-1]) if done.ok and done.stdout.strip() else None
    except (AnybuildError, ValueError) as exc:
        return [_fact(FactKey.BUILDER_SANDBOX, None, f"the builder's trial {where} failed: {exc}")]
    if report is None:
        tail = done.output.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return [_fact(FactKey.BUILDER_SANDBOX, None, f"the builder's trial {where} failed: {tail[0]}")]
    tried = tuple(f"{s['kind']}: ok" if s["ok"] else f"{s['kind']}: cannot start: {s['why']}"
                  for s in report["sandboxes"])
    working = [s for s in report["sandboxes"] if s["ok"]]
    first = working[0] if working else None
    why_none = report.get("not_tried") or report.get("ladder_error") or "; ".join(tried) or "nothing to try"
    facts = [
        _fact(FactKey.BUILDER_SANDBOXES, tried, f"a trial RUN as uid 1000 in each sandbox, {where}"),
        _fact(FactKey.BUILDER_SANDBOX, first["kind"] if first else None,
              (f"{first['kind']}: {first['reason']}" + "".join(f"; {n}" for n in first.get("notes", ())))
              if first else why_none),
        _fact(FactKey.BUILDER_SNAPSHOTTER, report.get("snapshotter"), f"the snapshotter's trial mount, {where}"),
        _fact(FactKey.BUILDER_OWNERS, report["owners"], "; ".join(report.get("evidence", ()))),
    ]
    if first is not None:
        facts.append(_fact(FactKey.BUILDER_PERMISSION_CHECKS, bool(first["permission_checks"]),
                           "the trial RUN as uid 1000 " + ("was refused a write to / (root's, 0755)"
                                                            if first["permission_checks"] else
                                                            "could write to / (root's, 0755): it ran as root here")))
    return facts
