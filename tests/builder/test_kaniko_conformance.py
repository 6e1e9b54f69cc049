"""Kaniko's integration Dockerfiles (tests/data/conformance/kaniko-integration), anybuild vs dockerd.

FROM names are mapped to the offline bases (debian -> debian:bookworm, busybox and
alpine -> busybox:1.36 when the file does not use apk). A case is skipped, with its
reason, when it needs the network (package managers, downloads), a base image that
has no offline stand-in, or kaniko-only behaviour; the list is printed by `pytest -rs`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from anybuild.builder.sandbox import SandboxKind
from anybuild.errors import AnybuildError
from tests.builder.building import Case, anybuild_build, docker_build
from tests.builder.test_conformance import compare
from tests.harness.procs import HarnessError

KANIKO = Path(__file__).resolve().parents[1] / "data" / "conformance" / "kaniko-integration"
# Build args kaniko's own integration test passes (integration/images.go).
ARGS: dict[str, dict[str, str]] = {
    "Dockerfile_test_run": {"file": "/file"},
    "Dockerfile_test_workdir": {"workdir": "/arg/workdir"},
    "Dockerfile_test_add": {"file": "context/foo"},
    "Dockerfile_test_onbuild": {"file": "/tmp/onbuild"},
    "Dockerfile_test_scratch": {"image": "scratch", "hello": "hello-value", "file": "context/foo",
                                "file3": "context/b*"},
    "Dockerfile_test_multistage": {"file": "/foo2"},
    "Dockerfile_test_arg_secret": {"SSH_PRIVATE_KEY": "", "SSH_PUBLIC_KEY": "Pµbl1cK€Y"},
    "Dockerfile_test_run_new": {"file": "/file"},
    "Dockerfile_test_run_redo": {"file": "/file"},
    # image names built from ARGs: pointed at the offline busybox through the same ARGs
    "Dockerfile_test_arg_two_level": {"B": "busybox:1.36"},
    "Dockerfile_test_arg_multi_empty_val": {"VERSION": "6"},
}
NETWORK = re.compile(r"apt-get|apk |yum |dnf |microdnf|curl |wget |git clone|pip install|npm |gem install|"
                     r"ADD\s+(--\S+\s+)*https?://|go get|go build", re.IGNORECASE)
_BUSYBOX = re.compile(r"^(docker\.io/)?(library/)?busybox([:@]\S+)?$")
_DEBIAN = re.compile(r"^(docker\.io/)?(library/)?debian([:@]\S+)?$")
_ALPINE = re.compile(r"^(docker\.io/)?(library/)?alpine([:@]\S+)?$")
# Dockerfiles that Docker 20.10 refuses but current BuildKit (and anybuild) accept.
DOCKER_REFUSES: dict[str, str] = {
    "Dockerfile_test_from_multistage_capital": "stage name with capitals (BUG_stage): BuildKit 0.8 refuses, "
    "later BuildKit lower-cases it",
    "Dockerfile_test_issue_519": "stage name with capitals (BUG_stage): BuildKit 0.8 refuses, "
    "later BuildKit lower-cases it",
}
# Dockerfiles where Docker 20.10's image differs from current BuildKit's, which anybuild follows:
# "config:Key" and anybuild's value (checked to differ from Docker's), with the reason.
DOCKER_DIFFERS: dict[str, tuple[dict[str, object], str]] = {
    "Dockerfile_test_cmd": (
        {"config:Entrypoint": ["/bin/sh", "-c", '["myentrypoint"] # This should clear out CMD in the config metadata']},
        "text after a JSON array makes it shell form: BuildKit parses exec forms with json.Unmarshal since "
        "moby/buildkit#5107 (frontend/dockerfile/parser/line_parsers.go parseJSON); Docker 20.10 (BuildKit 0.8) "
        "decoded the array and dropped the rest"),
}
SKIP: dict[str, str] = {
    "Dockerfile_test_cache": "kaniko layer-cache behaviour (--cache), not a Dockerfile semantic",
    "Dockerfile_test_cache_oci": "kaniko layer-cache behaviour (--cache), not a Dockerfile semantic",
    "Dockerfile_test_cache_copy": "kaniko layer-cache behaviour (--cache), not a Dockerfile semantic",
    "Dockerfile_test_cache_copy_oci": "kaniko layer-cache behaviour (--cache), not a Dockerfile semantic",
    "Dockerfile_test_cache_perm": "kaniko layer-cache behaviour (--cache), not a Dockerfile semantic",
    "Dockerfile_test_cache_perm_oci": "kaniko layer-cache behaviour (--cache), not a Dockerfile semantic",
    "Dockerfile_test_snapshotter_ignorelist": "kaniko's own snapshot ignore list",
    "Dockerfile_registry_mirror": "kaniko --registry-mirror flag test",
    "Dockerfile_test_copy_bucket": "copies from a GCS bucket context",
    "Dockerfile_git_buildcontext": "git build context over the network",
}


def _image_name(word: str, stages: set[str], text: str) -> str | None:
    """The offline stand-in for an image name, the name itself for stages/scratch/args, else None."""
    if word.lower() in stages or word == "scratch" or "$" in word:
        return word
    if _BUSYBOX.match(word):
        return "busybox:1.36"
    if _DEBIAN.match(word):
        return "debian:bookworm"
    if _ALPINE.match(word) and "apk" not in text:
        return "busybox:1.36"
    return None


def plan(path: Path) -> tuple[str | None, str]:
    """(rewritten Dockerfile, "") or (None, why it is skipped)."""
    if path.name in SKIP:
        return None, SKIP[path.name]
    text = path.read_text(errors="replace")
    if NETWORK.search(text):
        return None, "needs the network (package manager or download)"
    stages = {m.group(1).lower() for m in re.finditer(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", text)}
    lines = []
    for line in text.splitlines():
        arg = re.match(r"(?i)^(\s*ARG\s+\w+=)(\S+)$", line)
        if arg and _image_name(arg.group(2), stages, text) not in (None, arg.group(2)):
            line = arg.group(1) + str(_image_name(arg.group(2), stages, text))
        match = re.match(r"(?i)^(\s*FROM\s+(?:--platform=\S+\s+)?)(\S+)(.*)$", line)
        if match:
            image = _image_name(match.group(2), stages, text)
            if image is None:
                return None, f"base image {match.group(2)} has no offline stand-in"
            line = match.group(1) + image + match.group(3)
        for found in re.finditer(r"--from=(\S+)", line):
            image = _image_name(found.group(1), stages, text)
            if image is None and not found.group(1).isdigit():
                return None, f"COPY --from image {found.group(1)} has no offline stand-in"
            if image is not None:
                line = line.replace(found.group(0), f"--from={image}")
        lines.append(line)
    return "\n".join(lines) + "\n", ""


def kaniko_cases() -> list[tuple[str, Path, Path]]:
    """(name, Dockerfile, context) of every kaniko integration Dockerfile."""
    cases = []
    if not KANIKO.is_dir():
        return cases
    for path in sorted((KANIKO / "dockerfiles").iterdir()):
        if path.is_file() and not path.name.endswith(".dockerignore"):
            cases.append((path.name, path, KANIKO))
    for directory in sorted((KANIKO / "dockerfiles-with-context").iterdir()):
        if (directory / "Dockerfile").is_file():
            cases.append((f"with-context-{directory.name}", directory / "Dockerfile", directory))
    return cases


CASES = kaniko_cases()


def test_kaniko_data_present() -> None:
    # Guards against the parametrized test below silently collecting nothing.
    assert len(CASES) >= 50, KANIKO


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dockerfile", "context"), CASES, ids=[c[0] for c in CASES])
def test_kaniko_case_matches_docker(name: str, dockerfile: Path, context: Path, dockerd, base_images,
                                    tmp_path: Path,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    text, reason = plan(dockerfile)
    if text is None:
        pytest.skip(reason)
    if "debian:bookworm" in text:
        base_images.debian()
    rewritten = tmp_path / "Dockerfile"
    rewritten.write_text(text)
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if ignore.is_file():
        shutil.copy(ignore, tmp_path / "Dockerfile.dockerignore")
    case = Case(name=name, context=context, dockerfile=rewritten, build_args=ARGS.get(name, {}))
    data = tmp_path_factory.getbasetemp() / "anybuild-data"
    try:
        docker = docker_build(case, dockerd, tmp_path / "docker")
    except HarnessError as exc:
        if name in DOCKER_REFUSES:
            anybuild_build(case, SandboxKind.RUNC, base_images.mirror_host, tmp_path / "anybuild", data)
            pytest.skip(f"built by anybuild only; Docker 20.10 refuses it: {DOCKER_REFUSES[name]}")
        with pytest.raises(AnybuildError):  # the Dockerfile is broken offline: anybuild must refuse it too
            anybuild_build(case, SandboxKind.RUNC, base_images.mirror_host, tmp_path / "anybuild", data)
        lines = [line for line in str(exc).splitlines() if "ERROR" in line or "error" in line]
        pytest.skip(f"dockerd cannot build it offline either: {(lines or ['?'])[-1].strip()[:160]}")
    ours = anybuild_build(case, SandboxKind.RUNC, base_images.mirror_host, tmp_path / "anybuild", data)
    compare(name, ours, docker, dockerd, differs=DOCKER_DIFFERS.get(name, ({}, ""))[0])
