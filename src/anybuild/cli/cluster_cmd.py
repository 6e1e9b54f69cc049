"""`anybuild cluster gc`: delete the Jobs and Secrets a killed anybuild left in the cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from anybuild.cli.doctor_cmd import optional_config
from anybuild.cli.options import config_option
from anybuild.cli.session import Session, output_options, pass_session
from anybuild.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["cluster", "parse_duration"]

_DURATION = re.compile(r"^(\d+)([smhd]?)$")


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1d`` (a bare number: seconds)."""
    found = _DURATION.match(text.strip())
    if found is None:
        raise UsageError(f"--older-than {text!r} is not a duration", hint="write 30m, 2h or 1d")
    return float(int(found.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)])


@click.group()
def cluster() -> None:
    """The cluster the kubernetes backend builds in."""


@cluster.command(epilog="""\b
Examples:
  anybuild cluster gc                      what is older than an hour, in the configured namespace
  anybuild cluster gc --older-than 10m --namespace builds
  anybuild cluster gc --dry-run --json
""")
@click.option("--older-than", default="1h", show_default=True, help="Only what was made longer ago than this.")
@click.option("--dry-run", is_flag=True, help="List, delete nothing.")
@click.option("--kube-context", default=None, help="The kubeconfig context (default: the current one).")
@click.option("-n", "--namespace", default=None, help="The namespace (default: [backend.kubernetes], the context's).")
@config_option
@output_options
@pass_session
def gc(session: Session, *, older_than: str, dry_run: bool, kube_context: str | None, namespace: str | None,
       config_path: Path | None) -> None:
    """Delete anybuild's Jobs (and their pods) and Secrets left behind by a killed client."""
    from anybuild.backends.kubernetes.backend import KubernetesBackend
    from anybuild.backends.kubernetes.gc import collect_garbage
    from anybuild.backends.kubernetes.settings import KubernetesSettings

    threshold = parse_duration(older_than)
    config = optional_config(config_path, session.cwd)
    settings = KubernetesSettings.from_config(config.backend.kubernetes if config else {})
    settings = settings.with_overrides(context=kube_context, namespace=namespace)
    with KubernetesBackend(settings, env=session.env) as backend:
        cluster = backend.cluster()
        found = collect_garbage(cluster, older_than=threshold, dry_run=dry_run)
        where = cluster.description
        space = cluster.namespace
    data = {"where": where, "namespace": space, "dry_run": dry_run, "older_than_seconds": threshold,
            "objects": [f.to_dict() for f in found]}

    def human(console: Console) -> None:
        verb = "would delete" if dry_run else "deleted"
        for leftover in found:
            console.print(f"{verb} {leftover.kind[:-1]} {leftover.name} (run {leftover.run_id or '?'}, "
                          f"{leftover.age / 60:.0f} min old)", markup=False)
        console.print(f"{len(found)} object(s) {verb} in {space} ({where})" if found
                      else f"nothing of anybuild's older than {older_than} in {space} ({where})", markup=False)

    session.emit(data, human)
