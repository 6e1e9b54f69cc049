"""`anybuild plan`: which backend would build each image here, in which order, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from anybuild.backends.catalog import availability_checks
from anybuild.cli.doctor_cmd import optional_config, probe_here
from anybuild.cli.options import config_option, resolve_config
from anybuild.cli.session import Session, output_options, pass_session
from anybuild.config import DEFAULT_BACKENDS, BackendName, Config
from anybuild.errors import UsageError
from anybuild.planner import Plan, plan_build

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["plan"]


@click.command(
    epilog="""\b
Examples:
  anybuild plan
  anybuild plan api web --json
  anybuild plan --backend buildah
  anybuild plan --backend kubernetes --show-manifests > jobs.json
""",
)
@click.argument("images", nargs=-1)
@click.option(
    "--backend",
    type=click.Choice([str(b) for b in BackendName]),
    default=None,
    help="Consider only this backend.",
)
@click.option("--show-manifests", is_flag=True,
              help="With --backend kubernetes: print the Jobs and Secret a build would create (nothing is created).")
@config_option
@output_options
@pass_session
def plan(session: Session, images: tuple[str, ...], backend: str | None, config_path: Path | None,
         show_manifests: bool = False) -> None:
    """Show the backends that would build here, in order, with the reason for each choice and exclusion."""
    config = resolve_config(config_path, session.cwd) if images else optional_config(config_path, session.cwd)
    names = [config.image(name).name for name in images] if config and images else []
    if config and not names:
        names = [spec.name for spec in config.images]
    facts = probe_here(session, config)
    order = config.build.backends if config else DEFAULT_BACKENDS
    override = BackendName(backend) if backend else None
    result = plan_build(facts, order=order, checks=availability_checks(), override=override)
    data: dict[str, Any] = {"images": names, **result.to_dict()}
    if show_manifests:
        data["kubernetes"] = _manifests(session, config, names, override)
        session.emit(data, lambda console: _render_manifests(console, data["kubernetes"]))
        return
    session.emit(data, lambda console: _render(console, names, result))


def _manifests(session: Session, config: Config | None, names: list[str], override: BackendName | None) -> Any:
    if override is not BackendName.KUBERNETES:
        raise UsageError("--show-manifests shows the kubernetes backend's Jobs", hint="add --backend kubernetes")
    if config is None or not names:
        raise UsageError("--show-manifests needs the images of an anybuild.toml",
                         hint="run from a repository with anybuild.toml, or pass --config FILE")
    from anybuild.backends.kubernetes.render import planned_manifests
    from anybuild.backends.kubernetes.settings import KubernetesSettings
    from anybuild.gitstate import read_git_state
    from anybuild.process import SubprocessRunner

    settings = KubernetesSettings.from_config(config.backend.kubernetes)
    git = read_git_state(config.root, SubprocessRunner(), session.env)
    return planned_manifests(config, [config.image(n) for n in names], settings, env=session.env, git=git)


def _render_manifests(console: Console, found: dict[str, Any]) -> None:
    console.print(f"# {len(found['manifests'])} object(s) for namespace {found['namespace']} ({found['where']}), "
                  f"run {found['run']}; nothing was created", markup=False)
    for manifest in found["manifests"]:
        console.print("---", markup=False)
        console.print(json.dumps(manifest, indent=2), markup=False, soft_wrap=True)


def _render(console: Console, names: list[str], result: Plan) -> None:
    first = result.first
    for name in names:
        console.print(f"{name}: {first.backend if first else 'no backend can build here'}", markup=False)
    console.print(f"order: {', '.join(str(b) for b in result.order)}", markup=False)
    for index, candidate in enumerate(result.candidates, 1):
        console.print(f"  {index}. {candidate.backend}: {candidate.reason}", markup=False)
    for exclusion in result.exclusions:
        console.print(f"  - {exclusion.backend} excluded: {exclusion.reason}", markup=False)
        if exclusion.fix:
            console.print(f"      fix: {exclusion.fix}", markup=False)
