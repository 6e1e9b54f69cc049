"""SubprocessRunner: output, streaming, timeouts, missing programs, redacted logging."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from anybuild.cancellation import Cancellation, cleanup
from anybuild.errors import BackendError, Interrupted
from anybuild.process import SubprocessRunner, format_command


def test_runner_exit_status_and_output_returned() -> None:
    done = SubprocessRunner().run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert not done.ok


def test_runner_on_line_streams_merged_lines_in_order() -> None:
    seen: list[str] = []
    done = SubprocessRunner().run(["sh", "-c", "echo a; echo b >&2; echo c"], on_line=seen.append)
    assert seen == ["a", "b", "c"]
    assert done.stdout == "a\nb\nc\n"


def test_runner_stdin_is_passed() -> None:
    assert SubprocessRunner().run(["cat"], stdin="hello").stdout == "hello"


@pytest.mark.parametrize("stream", [False, True], ids=["collect", "stream"])
def test_runner_timeout_kills_process_group_and_raises(stream: bool) -> None:
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"did not finish within 0\.3 s") as info:
        SubprocessRunner().run(
            ["sh", "-c", "sleep 30 & sleep 30"], timeout=0.3, on_line=(lambda _: None) if stream else None
        )
    assert time.monotonic() - started < 3
    assert info.value.environmental


def test_runner_missing_program_raises_backend_error() -> None:
    with pytest.raises(BackendError, match="cannot run /nonexistent/tool") as info:
        SubprocessRunner().run(["/nonexistent/tool", "--version"])
    assert "install tool" in info.value.hint


def test_runner_logs_command_with_secrets_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-value-123"
    env = {**os.environ, "REGISTRY_PASSWORD": secret}
    with caplog.at_level(logging.DEBUG, logger="anybuild.process"):
        SubprocessRunner().run(["echo", f"--password={secret}", "https://u:pw@example.invalid/x"], env=env)
    text = caplog.text
    assert "echo" in text
    assert secret not in text
    assert "u:pw@" not in text


def test_format_command_quotes_arguments() -> None:
    assert format_command(["docker", "build", "-t", "a b"]) == "docker build -t 'a b'"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("stream", [False, True], ids=["collect", "stream"])
def test_runner_cancelled_ends_the_process_group_within_a_second(stream: bool, tmp_path: Path) -> None:
    cancel = Cancellation()
    pids = tmp_path / "pids"
    threading.Timer(0.5, cancel.cancel, args=(signal.SIGTERM,)).start()
    started = time.monotonic()
    with pytest.raises(Interrupted, match="interrupted by SIGTERM while sh ran") as info:
        SubprocessRunner(cancel=cancel).run(
            ["sh", "-c", f"sleep 30 & echo $! $$ > {pids}; wait"], on_line=(lambda _: None) if stream else None)
    assert time.monotonic() - started < 1.5  # sh ends on SIGTERM: no grace needed
    assert info.value.exit_code == 143
    assert not [pid for pid in map(int, pids.read_text().split()) if _alive(pid)]


def test_runner_cancelled_refuses_new_work_but_runs_cleanup() -> None:
    cancel = Cancellation()
    cancel.cancel()
    runner = SubprocessRunner(cancel=cancel)
    with pytest.raises(Interrupted, match="before running true"):
        runner.run(["true"])
    with cleanup():
        assert runner.run(["sh", "-c", "sleep 0.3; echo cleaned"]).stdout == "cleaned\n"
