"""Every user mistake about mounts, outputs and paths is an input error: exit 2, the value named, a hint.

Each case runs the real command (a real build on the offline busybox base, a real pull from the test
registry); none may end as an internal error (70, a traceback) or as "nothing can build here" (3).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from anybuild.cli.main import main
from anybuild.oci import LayoutStore

from ..oci.images import make_image


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ANYBUILD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ctx"
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "file").write_text("in the context\n")
    return path


def build(context: Path, registry: object, dockerfile: str, *extra: str,
          capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    (context / "Dockerfile").write_text(dockerfile)
    host = registry.host  # type: ignore[attr-defined]
    code, out, err = run(["build", str(context), "--registry-mirror", host, "--insecure-registry", host,
                          "--progress", "plain", *extra], capsys)
    return code, out, out + err  # a build's failure is in its summary (stdout), the log on stderr


def assert_input_error(code: int, err: str, *named: str) -> None:
    assert code == 2, err[-3000:]
    assert "Traceback" not in err and "internal error" not in err
    error = next((line for line in err.splitlines() if "error: " in line), "")
    for value in named:
        assert value in error, (value, error)
    assert any("hint: " in line for line in err.splitlines()), err[-2000:]


MOUNTS = {
    "missing-deeper": ("RUN --mount=type=bind,source=nope/deeper,target=/m true", ["source=nope/deeper",
                                                                                   "no such file"]),
    "missing": ("RUN --mount=type=bind,source=nope,target=/m true", ["source=nope", "no such file"]),
    "climbs-out": ("RUN --mount=type=bind,source=../../../etc/shadow-nope,target=/m true",
                   ["source=../../../etc/shadow-nope"]),
    "target-under-a-file": ("RUN --mount=type=bind,source=sub,target=/bin/busybox/inside true",
                            ["/bin/busybox/inside"]),
    "required-secret": ("RUN --mount=type=secret,id=token,required=true true", ["id=token"]),
}


@pytest.mark.parametrize(("instruction", "named"), MOUNTS.values(), ids=MOUNTS.keys())
def test_build_mount_mistake_is_an_input_error(instruction: str, named: list[str], context: Path, base_images: object,
                                               registry: object, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = build(context, registry, f"FROM busybox:1.36\n{instruction}\n", capsys=capsys)
    assert_input_error(code, err, "Dockerfile:2", *named)
    assert "environmental reasons" not in err and "falling back" not in err  # never another sandbox or backend


def test_build_mount_climbing_out_says_the_context_is_its_root(context: Path, base_images: object, registry: object,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = build(context, registry, "FROM busybox:1.36\nRUN --mount=type=bind,source=../x,target=/m true\n",
                      capsys=capsys)
    assert ".. cannot leave it" in err


def test_build_output_archive_onto_a_directory_refused_before_building(context: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "existing").mkdir()
    (context / "Dockerfile").write_text("FROM busybox:1.36\nRUN true\n")
    code, _, err = run(["build", str(context), "--output", f"docker-archive:{tmp_path / 'existing'}"], capsys)
    assert_input_error(code, err, f"docker-archive:{tmp_path / 'existing'}", "is a directory")
    assert "image.tar" in err
    assert not (tmp_path / "data" / "tmp").exists() or not list((tmp_path / "data" / "tmp").iterdir())


@pytest.mark.parametrize(("make", "output", "named"), [
    ("file", "oci:{path}", "is a file; an OCI layout is a directory"),
    ("busy-dir", "oci:{path}", "not an OCI image layout"),
    ("file-parent", "docker-archive:{path}/image.tar", "is a file, not a directory"),
], ids=["oci-onto-file", "oci-onto-other-dir", "parent-is-a-file"])
def test_build_output_other_mistakes_refused(make: str, output: str, named: str, context: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "there"
    if make == "busy-dir":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    else:
        path.write_text("mine")
    (context / "Dockerfile").write_text("FROM busybox:1.36\n")
    code, _, err = run(["build", str(context), "--output", output.format(path=path)], capsys)
    assert_input_error(code, err, named)
    assert (path / "notes.txt").read_text() == "mine" if make == "busy-dir" else path.read_text() == "mine"


@pytest.fixture
def pushed(registry: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    store = LayoutStore.create(tmp_path / "src")
    make_image(store, [{"x": os.urandom(2000)}], tag="v1")
    ref = f"{registry.host}/mistakes/app:v1"  # type: ignore[attr-defined]
    code, _, err = run(["push", f"oci:{tmp_path / 'src'}:v1", ref], capsys)
    assert code == 0, err
    return ref


@pytest.mark.parametrize(("make", "kind", "named"), [
    ("dir", "docker-archive", "is a directory; a docker archive is a file"),
    ("file", "oci", "is a file; an OCI layout is a directory"),
], ids=["archive-onto-dir", "oci-onto-file"])
def test_pull_output_mistake_is_an_input_error(make: str, kind: str, named: str, pushed: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "existing"
    if make == "dir":
        path.mkdir()
    else:
        path.write_text("mine")
    code, out, err = run(["pull", pushed, "-o", f"{kind}:{path}", "--platform", "linux/amd64"], capsys)
    assert_input_error(code, err, f"{kind}:{path}", named)
    assert (list(path.iterdir()) == []) if make == "dir" else path.read_text() == "mine"
    code, out, _ = run(["pull", pushed, "-o", f"{kind}:{path}", "--platform", "linux/amd64", "--json"], capsys)
    assert code == 2 and json.loads(out)["error"]["kind"] == "usage"
