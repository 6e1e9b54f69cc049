"""`docker build` command-line arguments → a BuildRequest (pure), for the docker shim."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from anybuild.backends.base import BuildRequest, SecretSpec
from anybuild.errors import UsageError

__all__ = ["parse_docker_build_args"]

_VALUE_FLAGS = {
    "-t": "tag",
    "--tag": "tag",
    "-f": "file",
    "--file": "file",
    "--build-arg": "build-arg",
    "--target": "target",
    "--platform": "platform",
    "--secret": "secret",
    "--progress": "ignored",
    "--iidfile": "ignored",
    "--network": "ignored",
    "--label": "ignored",
    "--cache-from": "ignored",
    "--metadata-file": "ignored",
    "-o": "output",
    "--output": "output",
}
_BOOL_FLAGS = {
    "--push": "push",
    "--load": "load",
    "--no-cache": "no-cache",
    "-q": "ignored",
    "--quiet": "ignored",
    "--pull": "ignored",
    "--rm": "ignored",
    "--force-rm": "ignored",
}


def _secret(value: str) -> SecretSpec:
    fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    if "id" not in fields:
        raise UsageError(f"--secret {value!r} has no id=", hint="write --secret id=NAME,src=FILE")
    src = fields.get("src") or fields.get("source")
    return SecretSpec(id=fields["id"], src=Path(src) if src else None, env=fields.get("env"))


def _output(value: str) -> str:
    fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    match fields.get("type"):
        case "oci" if "dest" in fields:
            return f"oci:{fields['dest']}"
        case "docker" | "tar" if "dest" in fields:
            return f"docker-archive:{fields['dest']}"
        case _:
            raise UsageError(
                f"--output {value!r} is not supported by anybuild",
                hint="use type=oci,dest=DIR or type=docker,dest=FILE",
            )


def _last(values: Mapping[str, list[str]], key: str) -> str | None:
    found = values.get(key)
    return found[-1] if found else None


def parse_docker_build_args(args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> BuildRequest:
    """The BuildRequest meant by ``docker build ARGS`` run in *cwd*."""
    values: dict[str, list[str]] = {}
    flags: set[str] = set()
    positional: list[str] = []
    items = list(args)
    index = 0
    while index < len(items):
        arg = items[index]
        name, eq, inline = arg.partition("=")
        if arg == "--":
            positional += items[index + 1 :]
            break
        if name in _VALUE_FLAGS:
            if eq:
                value = inline
            elif index + 1 < len(items):
                index += 1
                value = items[index]
            else:
                raise UsageError(f"docker build: {arg} needs a value")
            values.setdefault(_VALUE_FLAGS[name], []).append(value)
        elif arg in _BOOL_FLAGS:
            flags.add(_BOOL_FLAGS[arg])
        elif arg.startswith("-") and arg != "-":
            raise UsageError(
                f"docker build: anybuild does not understand {arg}",
                hint="drop the option, or run the real docker with the daemon that can build",
            )
        else:
            positional.append(arg)
        index += 1
    if len(positional) != 1 or positional[0] == "-":
        raise UsageError("docker build needs exactly one context directory", hint="write: docker build -t NAME:TAG DIR")
    context = (cwd / positional[0]).resolve()
    dockerfile = Path(values["file"][-1]) if "file" in values else context / "Dockerfile"
    if not dockerfile.is_absolute():
        dockerfile = (cwd / dockerfile).resolve()
    build_args: dict[str, str] = {}
    for item in values.get("build-arg", []):
        key, eq, value = item.partition("=")
        if eq:
            build_args[key] = value
        elif key in env:
            build_args[key] = env[key]
    outputs = [_output(v) for v in values.get("output", [])]
    return BuildRequest(
        context=context,
        dockerfile=dockerfile,
        tags=tuple(values.get("tag", [])),
        build_args=build_args,
        target=_last(values, "target"),
        platform=_last(values, "platform"),
        push="push" in flags,
        load="load" in flags,
        output=outputs[-1] if outputs else None,
        secrets=tuple(_secret(v) for v in values.get("secret", [])),
        no_cache="no-cache" in flags,
    )
