"""`anybuild doctor`: what this machine is, which backends can build here, and how to fix the others."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from anybuild.backends.catalog import availability_checks
from anybuild.cli.options import config_option
from anybuild.cli.session import Session, output_options, pass_session
from anybuild.config import DEFAULT_BACKENDS, Config, find_config, load_config
from anybuild.environment.cache import TTL, ProbeCache
from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Facts, FactValue
from anybuild.environment.probe import collect_facts
from anybuild.errors import ExitCode
from anybuild.planner import Plan, plan_build, push_registries

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["doctor", "optional_config", "probe_here", "recommendation"]


def optional_config(config_path: Path | None, cwd: Path) -> Config | None:
    """The configuration when one is named or found; doctor works without one."""
    if config_path is not None:
        return load_config(config_path if config_path.is_absolute() else cwd / config_path)
    found = find_config(cwd)
    return load_config(found) if found else None


def probe_here(session: Session, config: Config | None, *, online: bool = False, fresh: bool = False) -> Facts:
    """The facts of this machine; the costly probes' answers of the last minutes are reused while
    nothing they depend on changed (anybuild.environment.cache), unless *fresh*."""
    ctx = ProbeContext(env=session.env, cwd=session.cwd, online=online, registries=push_registries(config),
                       github=config.backend.github if config else None)
    return collect_facts(ctx, cache=ProbeCache.for_context(ctx, fresh=fresh))


def recommendation(plan: Plan) -> str:
    first = plan.first
    if first is not None:
        return f"build with {first.backend}: {first.reason}"
    fixes = [f"{e.backend}: {e.fix}" for e in plan.exclusions if e.fix]
    return "nothing can build here; " + ("; ".join(fixes) if fixes else "run with --json for the facts")


@click.command(
    epilog="""\b
Examples:
  anybuild doctor
  anybuild doctor --json | jq '.backends'
  DOCKER_HOST=unix:///run/other.sock anybuild doctor
""",
)
@click.option("--online", is_flag=True, help="Also check remote access (Kubernetes API, GitHub) over the network.")
@click.option("--fresh", is_flag=True,
              help=f"Try everything again, not reusing what was found in the last {TTL:.0f} s "
                   "(reused only while nothing it depends on changed; also ANYBUILD_PROBE_CACHE=0).")
@config_option
@output_options
@pass_session
def doctor(session: Session, config_path: Path | None, online: bool, fresh: bool) -> None:
    """Show what this machine is, which backends can build here, and the fix for each one that cannot.

    Exits 0 when some local backend can build here, 3 when none can.
    """
    config = optional_config(config_path, session.cwd)
    facts = probe_here(session, config, online=online, fresh=fresh)
    order = config.build.backends if config else DEFAULT_BACKENDS
    plan = plan_build(facts, order=order, checks=availability_checks())
    data: dict[str, Any] = {
        "facts": facts.to_dict(),
        "plan": plan.to_dict(),
        "can_build": plan.can_build_locally,
        "recommendation": recommendation(plan),
    }
    if online:
        data["cluster"] = cluster_access(session, config)
    session.emit(data, lambda console: _render(console, facts, plan, data.get("cluster")))
    if not plan.can_build_locally:
        sys.exit(int(ExitCode.ENVIRONMENT))


def _show(value: FactValue) -> str:
    match value:
        case None:
            return "-"
        case bool():
            return "yes" if value else "no"
        case tuple():
            return ", ".join(value) or "-"
        case _:
            return str(value)


def cluster_access(session: Session, config: Config | None) -> dict[str, Any]:
    """The kubernetes backend's preflight, for real: context, namespace, server version, permissions."""
    from anybuild.backends.kubernetes.backend import KubernetesBackend
    from anybuild.backends.kubernetes.preflight import EXEC_RULE, role_rules
    from anybuild.backends.kubernetes.settings import KubernetesSettings
    from anybuild.errors import AnybuildError

    settings = KubernetesSettings.from_config(config.backend.kubernetes if config else {})
    try:
        with KubernetesBackend(settings, env=session.env) as backend:
            checked = backend.check()
            needed = backend.rules()
    except AnybuildError as exc:
        return {"ok": False, "error": exc.message, "hint": exc.hint}
    missing = [r for r in needed if r in checked.denied]
    return {**checked.to_dict(), "ok": not missing, "exec": checked.exec_allowed,
            "fix": role_rules(missing) if missing else "",
            "note": "" if checked.exec_allowed else f"no {EXEC_RULE}: the context will go through the registry"}


def _render_cluster(console: Console, cluster: dict[str, Any]) -> None:
    console.print("cluster (kubernetes backend, checked online)", markup=False)
    if "error" in cluster:
        console.print(f"  ✗ {cluster['error']}", markup=False)
        if cluster.get("hint"):
            console.print(f"      fix: {cluster['hint']}", markup=False)
        return
    mark = "✓" if cluster["ok"] else "✗"
    console.print(f"  {mark} {cluster['where']}, namespace {cluster['namespace']}, server {cluster['server_version']}",
                  markup=False)
    console.print(f"      may: {', '.join(cluster['allowed']) or 'nothing'}", markup=False)
    if cluster["denied"]:
        console.print(f"      may not: {', '.join(cluster['denied'])}", markup=False)
    if cluster["note"]:
        console.print(f"      note: {cluster['note']}", markup=False)
    for line in cluster["fix"].splitlines():
        console.print(f"      fix: {line}", markup=False)
    console.print()


def _render(console: Console, facts: Facts, plan: Plan, cluster: dict[str, Any] | None = None) -> None:
    from rich.table import Table

    for topic, group in facts.by_topic().items():
        table = Table(title=str(topic), title_justify="left", show_edge=False, pad_edge=False)
        for column in ("fact", "value", "evidence"):
            table.add_column(column, overflow="fold")
        for fact in group:
            table.add_row(str(fact.key), _show(fact.value), fact.evidence)
        console.print(table)
        console.print()
    if cluster is not None:
        _render_cluster(console, cluster)
    console.print("backends", markup=False)
    chosen = {c.backend: c for c in plan.candidates}
    excluded = {e.backend: e for e in plan.exclusions}
    for name in dict.fromkeys([*plan.order, *excluded]):
        if name in chosen:
            console.print(f"  ✓ {name}: can build here — {chosen[name].reason}", markup=False)
            continue
        exclusion = excluded[name]
        console.print(f"  ✗ {name}: {exclusion.reason}", markup=False)
        for evidence in exclusion.evidence:
            if evidence:
                console.print(f"      evidence: {evidence}", markup=False)
        if exclusion.fix:
            console.print(f"      fix: {exclusion.fix}", markup=False)
    console.print()
    console.print(f"recommendation: {recommendation(plan)}", markup=False)
