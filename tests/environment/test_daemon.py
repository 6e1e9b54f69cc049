"""The docker daemon probe: endpoints, no daemon, a hung daemon, a recorded daemon, and real daemons."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from anybuild.backends.docker import docker_verdict
from anybuild.environment.context import ProbeContext
from anybuild.environment.daemon import daemon_error_line, probe_docker, resolve_endpoint
from anybuild.environment.facts import Fact, FactKey, Facts, Topic
from tests.environment.trees import context, tree
from tests.harness.dockerd import Dockerd

INFO = {
    "ServerVersion": "24.0.7",
    "Driver": "overlay2",
    "DockerRootDir": "/var/lib/docker",
    "SecurityOptions": ["name=seccomp,profile=builtin", "name=rootless"],
}


def _recorded_daemon(request: httpx.Request) -> httpx.Response:
    match request.url.path:
        case "/_ping":
            return httpx.Response(200, text="OK")
        case "/info":
            return httpx.Response(200, json=INFO)
        case "/version":
            return httpx.Response(200, json={"Version": "24.0.7", "ApiVersion": "1.43"})
    return httpx.Response(404)


@pytest.fixture
def hung_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A unix socket that accepts connections and never answers."""
    path = Path(tmp_path_factory.mktemp("hung")) / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_daemon_endpoint_docker_host_wins(tmp_path: Path) -> None:
    endpoint = resolve_endpoint(context(tmp_path, {"DOCKER_HOST": "tcp://127.0.0.1:2375"}))
    assert (endpoint.host, endpoint.evidence) == ("tcp://127.0.0.1:2375", "DOCKER_HOST=tcp://127.0.0.1:2375")


def test_daemon_endpoint_from_current_context(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"colima").hexdigest()
    tree(
        tmp_path,
        {
            "/cfg/config.json": json.dumps({"currentContext": "colima"}),
            f"/cfg/contexts/meta/{digest}/meta.json": json.dumps(
                {"Name": "colima", "Endpoints": {"docker": {"Host": "unix:///home/u/.colima/docker.sock"}}}
            ),
        },
    )
    endpoint = resolve_endpoint(context(tmp_path, {"DOCKER_CONFIG": str(tmp_path / "cfg")}))
    assert endpoint.host == "unix:///home/u/.colima/docker.sock"
    assert endpoint.context == "colima"


def test_daemon_no_socket_unreachable_with_reason(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "PATH": "/nonexistent"}
    facts = Facts.of(probe_docker(context(tmp_path, env)))
    assert facts.value(FactKey.DOCKER_REACHABLE) is False
    assert f"no socket at {tmp_path}/none.sock" in facts.evidence(FactKey.DOCKER_REACHABLE)


def test_daemon_hung_socket_times_out_within_bound(tmp_path: Path, hung_socket: Path) -> None:
    ctx = replace(context(tmp_path, {"DOCKER_HOST": f"unix://{hung_socket}"}), timeout=0.5)
    started = time.monotonic()
    facts = Facts.of(probe_docker(ctx))
    elapsed = time.monotonic() - started
    assert elapsed < 5  # bounded: the socket never answers, so without the timeout this would hang
    assert facts.value(FactKey.DOCKER_REACHABLE) is False
    assert "no answer within 0.5 s" in facts.evidence(FactKey.DOCKER_REACHABLE)


def test_daemon_recorded_answers_parsed(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    sock.touch()
    ctx = replace(
        context(tmp_path, {"DOCKER_HOST": f"unix://{sock}"}),
        docker_transport=lambda _path: httpx.MockTransport(_recorded_daemon),
    )
    facts = Facts.of(probe_docker(ctx))
    assert facts.value(FactKey.DOCKER_REACHABLE) is True
    assert facts.value(FactKey.DOCKER_VERSION) == "24.0.7"
    assert facts.value(FactKey.DOCKER_STORAGE_DRIVER) == "overlay2"
    assert facts.value(FactKey.DOCKER_ROOT_DIR) == "/var/lib/docker"
    assert facts.value(FactKey.DOCKER_ROOTLESS) is True
    assert facts.value(FactKey.DOCKER_ERROR) is None


def test_daemon_error_line_picks_overlay_failure() -> None:
    log = (
        'level=info msg="Starting up"\n'
        'level=error msg="failed to mount overlay: invalid argument" storage-driver=overlay2\n'
        "failed to start daemon: error initializing graphdriver: driver not supported\n"
    )
    assert daemon_error_line(log) == "failed to start daemon: error initializing graphdriver: driver not supported"
    assert daemon_error_line("all good\n") is None


# --- real daemons -------------------------------------------------------------------------------


def _with_docker_client(facts: Facts) -> Facts:
    return facts.with_facts(Fact(key=FactKey.TOOL_DOCKER, value="20.10", evidence="test", topic=Topic.TOOLS))


def test_daemon_real_dockerd_on_ext4_reachable_and_can_build(dockerd: Dockerd) -> None:
    host = dockerd.host
    data_root = dockerd.data_root
    facts = _with_docker_client(Facts.of(probe_docker(ProbeContext(env={**os.environ, "DOCKER_HOST": host}))))
    assert facts.value(FactKey.DOCKER_REACHABLE) is True, facts.evidence(FactKey.DOCKER_REACHABLE)
    assert facts.value(FactKey.DOCKER_ROOT_DIR) == str(data_root)
    assert facts.value(FactKey.DOCKER_STORAGE_DRIVER) in ("overlay2", "vfs")
    assert facts.value(FactKey.DOCKER_ROOT_FSTYPE) not in ("overlay", None)
    verdict = docker_verdict(facts)
    assert verdict.ok, verdict.reason


def test_daemon_nested_overlay_dockerd_excluded_with_overlay_line_and_fix(
    tmp_path: Path, nested_overlay: Path, overlay_dockerd_failure: str
) -> None:
    data_root = nested_overlay / "docker"
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text(json.dumps({"data-root": str(data_root), "storage-driver": "overlay2"}))
    log = tmp_path / "dockerd.log"
    log.write_text(overlay_dockerd_failure)
    ctx = ProbeContext(
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/docker.sock"},
        docker_daemon_config=daemon_json,
        docker_log=log,
    )
    facts = _with_docker_client(Facts.of(probe_docker(ctx)))
    assert facts.value(FactKey.DOCKER_REACHABLE) is False
    assert facts.value(FactKey.DOCKER_ROOT_FSTYPE) == "overlay"
    assert facts.value(FactKey.DOCKER_ROOT_OVERLAY) is False
    error = facts.text(FactKey.DOCKER_ERROR)
    assert error is not None
    assert error in overlay_dockerd_failure
    verdict = docker_verdict(facts)
    assert not verdict.ok
    assert "overlay" in verdict.reason
    assert any(error in e for e in verdict.evidence), verdict.evidence
    assert f"mount an emptyDir or tmpfs at {data_root}" in verdict.fix
    assert "use the built-in builder" in verdict.fix


def test_daemon_down_error_read_from_var_log_docker_log(tmp_path: Path) -> None:
    line = 'level=error msg="failed to mount overlay: invalid argument" storage-driver=overlay2'
    tree(tmp_path, {"/var/log/docker.log": f'level=info msg="Starting up"\n{line}\n'})
    facts = Facts.of(probe_docker(context(tmp_path, {"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})))
    assert facts.value(FactKey.DOCKER_ERROR) == line
    assert facts.evidence(FactKey.DOCKER_ERROR) == f"{tmp_path}/var/log/docker.log: {line}"
