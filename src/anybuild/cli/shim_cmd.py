"""`anybuild docker-shim install|uninstall`: a `docker` wrapper that builds with anybuild when the daemon cannot.

The wrapper is a POSIX shell script placed in a directory that comes first on
PATH. It execs the real docker (the next one on PATH) for everything, except
``docker build`` / ``docker buildx build`` when ``anybuild docker-shim check``
says the daemon cannot build here (no answer within 1 s, or storage on
overlayfs): those go to ``anybuild docker-shim build``, which plans and builds
with the backends that work. A working daemon sees no difference.
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import click

from anybuild.backends.base import Backend, BuildRequest
from anybuild.backends.catalog import availability_checks, create_backend
from anybuild.backends.docker import docker_verdict
from anybuild.backends.docker_args import parse_docker_build_args
from anybuild.backends.fallback import Diagnose, DiagnosisLike, build_with_fallback
from anybuild.cli.doctor_cmd import optional_config, probe_here
from anybuild.cli.session import Session, pass_session
from anybuild.config import DEFAULT_BACKENDS, BackendName, Config
from anybuild.environment.context import ProbeContext
from anybuild.environment.daemon import probe_docker
from anybuild.environment.export import diagnosis_facts
from anybuild.environment.facts import Fact, FactKey, Facts, Topic
from anybuild.errors import ExitCode, UsageError
from anybuild.planner import plan_build
from anybuild.process import SubprocessRunner

__all__ = ["MARKER", "docker_shim", "shim_script"]

MARKER = "anybuild-docker-shim"


def shim_script(python: str) -> str:
    """The wrapper's text; *python* is the interpreter that has anybuild installed."""
    return f"""#!/bin/sh
# {MARKER}: written by `anybuild docker-shim install`; remove with `anybuild docker-shim uninstall`.
# Passes everything to the real docker, except `build` / `buildx build` when the daemon cannot build here.
ANYBUILD_PYTHON={shlex.quote(python)}
self_dir=$(cd -P -- "$(dirname -- "$0")" && pwd)
real=
saved_ifs=$IFS
IFS=:
for dir in $PATH; do
  [ -n "$dir" ] || dir=.
  [ -x "$dir/docker" ] || continue
  resolved=$(cd -P -- "$dir" 2>/dev/null && pwd) || continue
  [ "$resolved" = "$self_dir" ] && continue
  head -c 300 "$dir/docker" 2>/dev/null | grep -q {MARKER} && continue
  real="$dir/docker"
  break
done
IFS=$saved_ifs
sub=
case "$1" in
  build) sub=1 ;;
  buildx) [ "$2" = build ] && sub=2 ;;
esac
[ -x "$ANYBUILD_PYTHON" ] || sub=  # anybuild gone: behave as the plain docker
if [ -n "$sub" ] && ! "$ANYBUILD_PYTHON" -m anybuild docker-shim check >/dev/null 2>&1; then
  shift "$sub"
  exec "$ANYBUILD_PYTHON" -m anybuild docker-shim build -- "$@"
fi
if [ -z "$real" ]; then
  echo "docker (anybuild shim): no other docker on PATH" >&2
  exit 127
fi
exec "$real" "$@"
"""


@click.group("docker-shim")
def docker_shim() -> None:
    """Install a `docker` wrapper that hands `docker build` to anybuild when the daemon cannot build."""


def _default_dir(session: Session) -> Path:
    return Path(session.env.get("HOME") or Path.home()) / ".local" / "bin"


@docker_shim.command(
    epilog="""\b
Examples:
  anybuild docker-shim install
  anybuild docker-shim install --dir /usr/local/sbin
""",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write the wrapper (default ~/.local/bin); it must come first on PATH.",
)
@pass_session
def install(session: Session, directory: Path | None) -> None:
    """Write the `docker` wrapper into DIR."""
    target_dir = directory or _default_dir(session)
    target = target_dir / "docker"
    if target.exists() and MARKER not in target.read_text(errors="replace")[:300]:
        raise UsageError(
            f"{target} exists and is not the anybuild shim",
            hint="choose another directory with --dir, one that comes before the real docker on PATH",
        )
    target_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(shim_script(sys.executable))
    target.chmod(0o755)
    session.info(f"installed {target}")
    entries = [Path(p or ".").resolve() for p in session.env.get("PATH", "").split(os.pathsep)]
    if target_dir.resolve() not in entries:
        session.info(f"warning: {target_dir} is not on PATH; add it first: export PATH={target_dir}:$PATH")
    else:
        position = entries.index(target_dir.resolve())
        earlier = [d for d in entries[:position] if (d / "docker").is_file()]
        if earlier:
            session.info(f"warning: {earlier[0]}/docker comes first on PATH; put {target_dir} before it")


@docker_shim.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the wrapper was written (default ~/.local/bin).",
)
@pass_session
def uninstall(session: Session, directory: Path | None) -> None:
    """Remove the `docker` wrapper from DIR (only if it is anybuild's)."""
    target = (directory or _default_dir(session)) / "docker"
    if not target.exists():
        session.info(f"no shim at {target}")
        return
    if MARKER not in target.read_text(errors="replace")[:300]:
        raise UsageError(f"{target} is not the anybuild shim; left in place", hint="remove it yourself if you mean to")
    target.unlink()
    session.info(f"removed {target}")


@docker_shim.command(hidden=True)
@pass_session
def check(session: Session) -> None:
    """Exit 0 when the docker daemon can build here (answers within 1 s, storage fine), else 3."""
    ctx = ProbeContext(env=session.env, cwd=session.cwd, timeout=1.0)
    facts = Facts.of(probe_docker(ctx)).with_facts(
        Fact(key=FactKey.TOOL_DOCKER, value="present", evidence="the shim found one", topic=Topic.TOOLS)
    )
    verdict = docker_verdict(facts)
    session.echo(verdict.reason, err=True)
    if not verdict.ok:
        sys.exit(int(ExitCode.ENVIRONMENT))


@dataclass(frozen=True, slots=True)
class _EchoSink:
    session: Session

    def line(self, text: str) -> None:
        self.session.echo(text, err=True)


def _with_registries(request: BuildRequest, config: Config | None) -> BuildRequest:
    if config is None:
        return request
    mirrors = {host: r.mirrors for host, r in config.registries.items() if r.mirrors}
    insecure = tuple(host for host, r in config.registries.items() if r.insecure)
    return replace(request, registry_mirrors=mirrors, insecure_registries=insecure)


def _diagnose(facts: Facts) -> Diagnose | None:
    """anybuild.diagnose's diagnose_log bound to these facts, when that module is installed."""
    try:
        module = importlib.import_module("anybuild.diagnose")
    except ImportError:
        return None
    found = getattr(module, "diagnose_log", None)
    if not callable(found):
        return None
    known = diagnosis_facts(facts)
    return lambda lines: cast(Sequence[DiagnosisLike], found(lines, facts=known))


@docker_shim.command(hidden=True, context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_session
def build(session: Session, args: Sequence[str]) -> None:
    """`docker build ARGS` done by anybuild's planner (what the wrapper runs)."""
    config = optional_config(None, session.cwd)
    request = _with_registries(parse_docker_build_args(args, cwd=session.cwd, env=session.env), config)
    facts = probe_here(session, config)
    order = tuple(config.build.backends) if config else DEFAULT_BACKENDS
    plan = plan_build(facts, order=order, checks=availability_checks())
    runner = SubprocessRunner()

    def factory(name: BackendName) -> Backend:
        return create_backend(name, facts, runner=runner, env=session.env)

    outcome = build_with_fallback(plan, request, _EchoSink(session), backends=factory, diagnose=_diagnose(facts))
    digest = outcome.result.digest or "(digest not known)"
    session.info(f"anybuild: built with {outcome.result.backend}: {digest}")
