"""The nested-overlay failure, for real: dockerd's overlay2 driver on a data root that is
itself inside an overlay mount (what a devpod's container filesystem looks like)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness import procs
from tests.harness.dockerd import dockerd_argv, ping, short_tempdir, write_daemon_json

__all__ = ["mounted_overlay", "overlay_dockerd_failure_log"]


@contextmanager
def mounted_overlay(work: Path) -> Iterator[Path]:
    """An overlay mount (lower/upper/work under `work`); yields its merged directory."""
    procs.require_root("mounting overlayfs")
    dirs = {name: work / name for name in ("lower", "upper", "work", "merged")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
    done = procs.run(["mount", "-t", "overlay", "overlay", "-o", options, str(dirs["merged"])], check=False)
    if done.returncode != 0:
        procs.unavailable(f"cannot mount overlayfs here: {done.stderr.strip()}")
    try:
        yield dirs["merged"]
    finally:
        procs.unmount_under(dirs["merged"])
        procs.remove_tree(work)


def overlay_dockerd_failure_log(merged: Path, *, timeout: float = 60.0) -> str:
    """Start dockerd --storage-driver overlay2 with its data root inside `merged`; return its log.

    dockerd is expected to exit by itself; if it comes up instead, it is stopped and the
    log (without the overlay error) is returned for the test to judge.
    """
    procs.require_root("dockerd")
    binary = procs.require_binary("dockerd", "docker.io")
    short = short_tempdir("abo-")
    data_root = merged / "docker"
    log_path = short / "dockerd.log"
    try:
        write_daemon_json(short / "daemon.json")
        argv = dockerd_argv(
            binary,
            data_root=data_root,
            exec_root=short / "x",
            socket_path=short / "docker.sock",
            pidfile=short / "docker.pid",
            config_file=short / "daemon.json",
            storage_driver="overlay2",
            mirror_host=None,
        )
        proc = procs.start(argv, log_path=log_path)
        socket_path = short / "docker.sock"
        try:
            procs.wait_until(
                lambda: proc.poll() is not None or ping(socket_path),
                what="dockerd on overlay",
                timeout=timeout,
                log_path=log_path,
            )
        finally:
            procs.stop(proc)
        return log_path.read_text(errors="replace")
    finally:
        procs.unmount_under(data_root)
        procs.unmount_under(short)
        procs.remove_tree(short)
