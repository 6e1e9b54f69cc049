"""Metadata instructions as pure config transforms (no filesystem, no layer).

ENV, LABEL, EXPOSE, USER, CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK,
VOLUME, ONBUILD and MAINTAINER each map the current
:class:`~anybuild.oci.config.ContainerConfig` to a new one; the history text
follows BuildKit's wording. WORKDIR's config half lives here too.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from collections.abc import Mapping
from typing import Any

from anybuild.builder.step import DEFAULT_SHELL, StepResult
from anybuild.dockerfile.instructions import (
    Cmd,
    CommandLine,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from anybuild.oci.config import ContainerConfig

__all__ = ["apply_metadata", "env_map", "shell_of", "with_env", "workdir_path"]


def env_map(env: tuple[str, ...]) -> dict[str, str]:
    """``KEY=value`` entries as a mapping (later entries win)."""
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def with_env(env: tuple[str, ...], updates: Mapping[str, str]) -> tuple[str, ...]:
    """Env list with *updates* applied in place (kept order, new keys appended), as Docker does."""
    out = list(env)
    for key, value in updates.items():
        entry = f"{key}={value}"
        for i, item in enumerate(out):
            if item.split("=", 1)[0] == key:
                out[i] = entry
                break
        else:
            out.append(entry)
    return tuple(out)


def shell_of(config: ContainerConfig) -> tuple[str, ...]:
    shell = config.extra.get("Shell")
    return tuple(shell) if shell else DEFAULT_SHELL


def _command(line: CommandLine, config: ContainerConfig) -> tuple[str, ...]:
    if line.exec_form:
        return line.args
    return (*shell_of(config), line.shell_text)


def _go_list(items: tuple[str, ...]) -> str:
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


def _ports(ports: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for port in ports:
        number, _, proto = port.partition("/")
        proto = (proto or "tcp").lower()
        low, _, high = number.partition("-")
        if high and low.isdigit() and high.isdigit():
            out += [f"{p}/{proto}" for p in range(int(low), int(high) + 1)]
        else:
            out.append(f"{number}/{proto}")
    return out


def workdir_path(current: str, path: str) -> str:
    """*path* (a COPY destination) made absolute against WORKDIR *current*, and cleaned."""
    joined = path if path.startswith("/") else posixpath.join(current or "/", path)
    return _clean(joined)


def workdir_value(current: str, path: str) -> str:
    """WORKDIR's value in the config, as BuildKit's system.NormalizeWorkdir gives it: an absolute
    path as written (``WORKDIR /tmp/`` keeps its slash), a relative one joined to *current*, cleaned."""
    return path if path.startswith("/") else _clean(posixpath.join(current or "/", path))


def _clean(path: str) -> str:
    """Go's path.Clean of an absolute path (``//a`` is ``/a``, unlike posixpath.normpath)."""
    cleaned = posixpath.normpath(path) if path not in ("", "/") else "/"
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def apply_metadata(instr: Instruction, config: ContainerConfig) -> StepResult:
    """The config after a metadata instruction (already expanded)."""
    replace = dataclasses.replace
    match instr:
        case Env(pairs=pairs):
            new = replace(config, env=with_env(config.env, {p.key: p.value for p in pairs}))
            text = "ENV " + " ".join(f"{p.key}={p.value}" for p in pairs)
        case Label(pairs=pairs):
            new = replace(config, labels={**config.labels, **{p.key: p.value for p in pairs}})
            text = "LABEL " + " ".join(f"{p.key}={p.value}" for p in pairs)
        case Expose(ports=ports):
            added = _ports(ports)
            new = replace(config, exposed_ports=tuple(sorted({*config.exposed_ports, *added})))
            text = "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in sorted(set(added))) + "]"
        case User(user=user):
            new = replace(config, user=user)
            text = f"USER {user}"
        case Workdir(path=path):
            new = replace(config, working_dir=workdir_value(config.working_dir, path))
            text = f"WORKDIR {new.working_dir}"
        case Cmd(command=command):
            cmd = _command(command, config)
            # BuildKit marks every CMD "ArgsEscaped" (a Docker image spec field; Windows reads it)
            escaped = replace(config, cmd=cmd, extra={**config.extra, "ArgsEscaped": True})
            return StepResult(config=escaped, created_by=f"CMD {_go_list(cmd)}", cmd_set=True)
        case Entrypoint(command=command):
            entry = _command(command, config)
            new = replace(config, entrypoint=entry)
            text = f"ENTRYPOINT {_go_list(entry)}"
        case Shell(shell=shell):
            new = replace(config, extra={**config.extra, "Shell": list(shell)})
            text = f"SHELL {_go_list(shell)}"
        case Stopsignal(signal=sig):
            new = replace(config, stop_signal=sig)
            text = f"STOPSIGNAL {sig}"
        case Healthcheck():
            check: dict[str, Any] = {"Test": list(instr.test)}
            for key, value in (("Interval", instr.interval), ("Timeout", instr.timeout),
                               ("StartPeriod", instr.start_period), ("StartInterval", instr.start_interval),
                               ("Retries", instr.retries)):
                if value is not None:
                    check[key] = value
            new = replace(config, extra={**config.extra, "Healthcheck": check})
            text = f"HEALTHCHECK &{{{_go_list(instr.test)} ...}}"
        case Volume(paths=paths):
            new = replace(config, volumes=tuple(sorted({*config.volumes, *paths})))
            text = f"VOLUME {_go_list(paths)}"
        case Onbuild(expression=expression):
            triggers = [*(config.extra.get("OnBuild") or []), expression]  # a base may have "OnBuild": null
            new = replace(config, extra={**config.extra, "OnBuild": triggers})
            text = f"ONBUILD {expression}"
        case Maintainer(name=name):
            return StepResult(config=config, created_by=f"MAINTAINER {name}", author=name)
        case _:
            raise TypeError(f"{type(instr).__name__} is not a metadata instruction")
    return StepResult(config=new, created_by=text)
