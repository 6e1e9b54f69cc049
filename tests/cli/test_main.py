"""The CLI frame: version, help, error rendering, exit codes, --json, redaction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from anybuild import __version__
from anybuild.cli.commands import COMMANDS
from anybuild.cli.main import _status, main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "moltbook"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_main_version_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert __version__ in out


def test_main_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for name in COMMANDS:
        assert name in out
    assert "Examples:" in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_main_every_command_help_works(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([name, "--help"], capsys)
    assert code == 0, err
    assert "Usage:" in out


def test_main_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2
    assert err.startswith("error: ")
    assert "hint: " in err
    assert "Traceback" not in err


def test_main_unknown_option_json_renders_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--json", "config", "show", "--nope"], capsys)
    assert code == 2
    payload = json.loads(out)
    assert payload["error"]["kind"] == "usage"
    assert "--nope" in payload["error"]["message"]


def test_python_m_anybuild_version_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "anybuild", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout


def program(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS`` with stdout and stderr on pipes (block-buffered, as under CI)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)


RUN = "import sys; from anybuild.cli.main import run; sys.argv = ['anybuild', *sys.argv[1:]]; run()"


def test_program_quick_exit_flushes_output_and_keeps_exit_codes() -> None:
    helped = program(RUN, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "anybuild diagnose build.log" in helped.stdout  # the epilog, at the end

    wrong = program(RUN, "frobnicate")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("error: ")
    assert "Traceback" not in wrong.stderr


def test_program_quick_exit_runs_exit_handlers_and_waits_for_threads() -> None:
    code = (
        "import atexit, threading, time\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread finished', flush=True))).start()\n"
        + RUN.replace("; ", "\n")
    )
    done = program(code, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("anybuild, version")
    assert "thread finished" in done.stdout
    assert "handler ran" in done.stdout  # printed after main returned, unflushed: the exit flushed it


def test_build_path_imports_no_httpx_command_line_client() -> None:
    """httpx imports its CLI (rich.progress, rich.syntax, pygments: ~30 ms) unless told not to; the
    build command's modules load without it, and httpx still makes requests."""
    code = (
        "import sys\n"
        "import anybuild.cli.main, anybuild.cli.build_cmd, anybuild.backends.builtin, anybuild.registry.client\n"
        "import httpx\n"
        "reply = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204))).get('http://x/')\n"
        "loaded = [m for m in ('httpx._main', 'pygments', 'rich.syntax') if sys.modules.get(m) is not None]\n"
        "print(reply.status_code, *loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["204"]


def test_exit_status_as_python_gives_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert (_status(None), _status(0), _status(3), _status(256 + 7)) == (0, 0, 3, 7)
    assert _status("fatal: no") == 1
    assert capsys.readouterr().err == "fatal: no\n"


def test_config_show_example_prints_both_images(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(EXAMPLE / "api")  # found by walking upwards
    code, out, err = run(["config", "show", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert [i["name"] for i in data["images"]] == ["api", "frontend"]
    assert data["images"][0]["repository"] == "ghcr.io/acme/moltbook-api"
    assert data["images"][0]["args"] == {"NODE_ENV": "production"}
    assert Path(data["images"][1]["dockerfile"]) == EXAMPLE / "frontend" / "Dockerfile"


def test_config_show_human_names_file_and_images(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(["config", "show", "--config", str(EXAMPLE / "anybuild.toml")], capsys)
    assert code == 0
    assert str(EXAMPLE / "anybuild.toml") in out
    assert "ghcr.io/acme/moltbook-frontend" in out


BAD_CONFIGS = {
    "wrong-type": (
        '[images.api]\ncontext = "api"\nrepository = "ghcr.io/a/api"\nargs = "NODE_ENV=production"\n',
        "images.api.args",
        "'NODE_ENV=production'",
    ),
    "unknown-key": (
        '[images.api]\ncontext = "api"\nrepository = "ghcr.io/a/api"\ndockerfiel = "Dockerfile"\n',
        "images.api.dockerfiel",
        "did you mean 'dockerfile'",
    ),
    "missing-context": (
        '[images.api]\ncontext = "nowhere"\nrepository = "ghcr.io/a/api"\n',
        "images.api.context",
        "'nowhere'",
    ),
    "bad-backend": (
        '[build]\nbackends = ["builtin", "kaniko"]\n',
        "build.backends",
        "'kaniko'",
    ),
    "upper-case-repository": (
        '[images.api]\ncontext = "api"\nrepository = "ghcr.io/Acme/api"\n',
        "images.api.repository",
        "ghcr.io/acme/api",
    ),
    "toml-syntax": ("[images.api\ncontext = 1\n", "line 1", "TOML"),
}


def _write_repo(tmp_path: Path, text: str) -> Path:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "Dockerfile").write_text("FROM busybox\n")
    config = tmp_path / "anybuild.toml"
    config.write_text(text)
    return config


@pytest.mark.parametrize(("text", "key", "value"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_config_show_bad_config_one_error_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, value: str
) -> None:
    config = _write_repo(tmp_path, text)
    code, out, err = run(["config", "show", "--config", str(config)], capsys)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    error_lines = [line for line in lines if line.startswith("error: ")]
    assert len(error_lines) == 1, err
    assert str(config) in error_lines[0]
    assert key in err
    assert value in err
    assert any(line.startswith("hint: ") for line in lines)
    assert "Traceback" not in err


def test_config_show_bad_config_json_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write_repo(tmp_path, BAD_CONFIGS["wrong-type"][0])
    code, out, _err = run(["config", "show", "--json", "--config", str(config)], capsys)
    assert code == 2
    payload = json.loads(out)["error"]
    assert payload["kind"] == "config"
    assert payload["key"] == "images.api.args"
    assert payload["file"] == str(config)
    assert payload["hint"]
    assert payload["exit_code"] == 2


def test_config_show_no_config_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["config", "show"], capsys)
    assert code == 2
    assert "no anybuild.toml" in err


def test_error_rendering_redacts_secret_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    monkeypatch.setenv("MY_REGISTRY_TOKEN", "s3cr3t-value-from-env")
    config = _write_repo(
        tmp_path,
        f'[images.api]\ncontext = "api"\nrepository = "ghcr.io/a/api"\n'
        f'args = ["{secret}", "s3cr3t-value-from-env"]\n',
    )
    code, out, err = run(["config", "show", "--config", str(config)], capsys)
    assert code == 2
    assert secret not in out + err
    assert "s3cr3t-value-from-env" not in out + err
    assert "***" in err
