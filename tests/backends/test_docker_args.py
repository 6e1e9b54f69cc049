"""`docker build` arguments → BuildRequest (what the shim hands to anybuild)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.backends.base import SecretSpec
from anybuild.backends.docker_args import parse_docker_build_args
from anybuild.errors import UsageError

CWD = Path("/work/repo")


def test_docker_args_full_command_line_parsed() -> None:
    request = parse_docker_build_args(
        [
            "-t",
            "ghcr.io/acme/api:dev",
            "--tag=ghcr.io/acme/api:latest",
            "-f",
            "api/Dockerfile.prod",
            "--build-arg",
            "NODE_ENV=production",
            "--build-arg",
            "FROM_ENV",
            "--target",
            "runtime",
            "--platform=linux/amd64",
            "--secret",
            "id=npmrc,src=/home/u/.npmrc",
            "--no-cache",
            "--push",
            "--progress",
            "plain",
            "api",
        ],
        cwd=CWD,
        env={"FROM_ENV": "yes"},
    )
    assert request.context == CWD / "api"
    assert request.dockerfile == CWD / "api/Dockerfile.prod"
    assert request.tags == ("ghcr.io/acme/api:dev", "ghcr.io/acme/api:latest")
    assert request.build_args == {"NODE_ENV": "production", "FROM_ENV": "yes"}
    assert (request.target, request.platform, request.no_cache, request.push) == ("runtime", "linux/amd64", True, True)
    assert request.secrets == (SecretSpec(id="npmrc", src=Path("/home/u/.npmrc")),)


def test_docker_args_default_dockerfile_in_context() -> None:
    request = parse_docker_build_args(["."], cwd=CWD, env={})
    assert request.dockerfile == CWD / "Dockerfile"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one context"),
        (["-", "-t", "x"], "exactly one context"),
        (["--squash", "."], "does not understand --squash"),
        (["-t"], "needs a value"),
        (["--output", "type=registry", "."], "not supported"),
    ],
    ids=["no-context", "stdin", "unknown-flag", "missing-value", "output-type"],
)
def test_docker_args_bad_input_usage_error(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_docker_build_args(args, cwd=CWD, env={})


def test_docker_args_output_oci_mapped() -> None:
    assert parse_docker_build_args(["-o", "type=oci,dest=/out", "."], cwd=CWD, env={}).output == "oci:/out"
