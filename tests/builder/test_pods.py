"""The built-in builder in real, unprivileged pods (tests/harness/pod.py): the project's story in each.

In every pod variant — root and uid 1000, with and without subuid ranges, seccomp Unconfined and
RuntimeDefault, no_new_privs, the data directory on the pod's overlay root or on an emptyDir:

- ``anybuild doctor --json`` says which user namespace, sandbox and snapshotter the built-in builder
  will use, from trials;
- ``anybuild build --all --push`` builds examples/moltbook with the built-in builder (no fallback to
  another backend), with the sandbox doctor named;
- the images the registry serves have the file trees (path, type, mode, uid, gid, size, content hash,
  link target) and configs of the test dockerd's build of the same contexts, and dockerd runs them;
- nothing is left behind: no mount in the pod, no process, no temporary directory in the data dir;
- ``USER 1000`` then ``RUN id > /y`` fails with "Permission denied" wherever doctor claims
  permission checks, and builds with a note (refused by ``--strict``) where it does not.

The test dockerd builds each moltbook image once per session. npm's cache (``/root/.npm``: wall-clock
times) is compared by name only, as two Docker builds differ there too.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builder.building import Built, Case, _read, docker_build
from tests.builder.imagetree import runtime_config, tree_diff
from tests.builder.test_devpod import run_and_get
from tests.harness.pod import POD_VARIANTS, SOURCE, Pod, PodVariant, running_pod

pytestmark = [pytest.mark.slow, pytest.mark.root]

MOLTBOOK = Path(__file__).resolve().parents[2] / "examples" / "moltbook"
EPOCH = "1764300000"
VOLATILE = ("root/.npm/",)
VARIANTS = [pytest.param(v, id=v.name) for v in POD_VARIANTS]


def _stable(tree: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    return {k: v for k, v in tree.items() if not k.startswith(VOLATILE)}


@pytest.fixture(scope="session")
def docker_moltbook(dockerd: Any, base_images: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """The test dockerd's build of each moltbook image (once per session)."""
    base_images.node()
    built = {}
    for image in ("api", "frontend"):
        context = MOLTBOOK / image
        case = Case(name=f"pod-moltbook-{image}", context=context, dockerfile=context / "Dockerfile",
                    build_args={"NODE_ENV": "production"} if image == "api" else {})
        built[image] = docker_build(case, dockerd, tmp_path_factory.mktemp(f"docker-moltbook-{image}"))
    return built


@pytest.fixture(params=VARIANTS)
def pod(request: pytest.FixtureRequest) -> Iterator[Pod]:
    with running_pod(request.param) as started:
        yield started


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-11-01T12:00:00Z", "GIT_COMMITTER_DATE": "2026-11-01T12:00:00Z",
           "GIT_AUTHOR_NAME": "dana", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "dana", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)


def _chown_tree(path: Path, uid: int) -> None:
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(Path(top) / name, uid, uid)
    os.lchown(path, uid, uid)


def _repository(pod: Pod, registry_host: str, name: str = "moltbook") -> str:
    """examples/moltbook copied into the pod (a git repository of the pod's user), pointed at the test
    registry; its path in the pod."""
    inside = f"{SOURCE}/{name}"
    repo = Path(shutil.copytree(MOLTBOOK, pod.host_path(inside)))
    config = repo / "anybuild.toml"
    text = config.read_text().replace("ghcr.io/acme/", f"{registry_host}/{pod.variant.name}/")
    text += (f'\n[registries."docker.io"]\nmirrors = ["{registry_host}"]\n'
             f'\n[registries."{registry_host}"]\ninsecure = true\n')
    config.write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "moltbook")
    _chown_tree(repo, pod.variant.uid)
    return inside


def _doctor(pod: Pod, cwd: str) -> dict[str, Any]:
    done = pod.anybuild("doctor", "--json", cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _fact(report: dict[str, Any], key: str) -> Any:
    return report["facts"].get(key, {}).get("value")


def _built_by_docker_pull(dockerd: Any, reference: str, work: Path) -> Built:
    work.mkdir(parents=True, exist_ok=True)
    dockerd.docker("pull", reference)
    archive = work / "image.tar"
    dockerd.docker("save", "-o", str(archive), reference)
    return _read(archive, work, [])


def _left_behind(pod: Pod) -> list[str]:
    """Mounts, processes and temporary directories the builds left in the pod."""
    left = [f"mount {m}" for m in pod.mounts()] + [f"process {p}" for p in pod.processes()]
    tmp = pod.host_path(pod.data_dir) / "tmp"
    if tmp.is_dir():
        left += [f"temporary {p.name}" for p in tmp.iterdir()]
    return left


def test_pod_moltbook_builds_pushes_matches_docker_and_runs(pod: Pod, registry: Any, base_images: Any,
                                                            dockerd: Any, docker_moltbook: dict[str, Built],
                                                            tmp_path: Path) -> None:
    variant: PodVariant = pod.variant
    repo = _repository(pod, registry.host)
    report = _doctor(pod, repo)
    assert report["can_build"], report["recommendation"]
    sandbox = _fact(report, "builder.sandbox")
    assert sandbox, report["facts"].get("builder.sandbox")
    if variant.runtime_default:
        assert _fact(report, "builder.userns") == "none"  # RuntimeDefault refuses unshare
        assert sandbox == "proot"
    else:
        assert _fact(report, "builder.userns") != "none"
        assert sandbox == "unshare"

    done = pod.anybuild("build", "--all", "--push", "--json", "--progress", "plain", cwd=repo,
                        env={"SOURCE_DATE_EPOCH": EPOCH}, timeout=1200)
    assert done.returncode == 0, done.stderr[-6000:]
    result = json.loads(done.stdout)
    images = {image["name"]: image for image in result["images"]}
    assert set(images) == {"api", "frontend"}
    for name, image in images.items():
        assert image["backend"] == "builtin", (name, image)  # no fallback to another backend
        ran, _, snapshotter = image["sandbox"].partition("+")
        expected = sandbox if name == "api" else "none"  # the front end has no RUN step
        assert ran == expected, f"doctor said {sandbox}, the build of {name} ran {image['sandbox']}"
        assert snapshotter in _fact(report, "builder.snapshotter"), (image["sandbox"], report["facts"])
    assert _left_behind(pod) == []

    for name in ("api", "frontend"):
        reference = images[name]["references"][0]
        ours = _built_by_docker_pull(dockerd, reference, tmp_path / name)
        theirs = docker_moltbook[name]
        differences = tree_diff(_stable(ours.tree), _stable(theirs.tree))
        assert differences == [], f"{variant.name} {name}:\n" + "\n".join(differences[:40])
        # the project build adds metadata-action's OCI labels, computed from git; Docker's has none
        ours_config, their_config = runtime_config(ours.config), runtime_config(theirs.config)
        labels = ours_config.pop("Labels") or {}
        assert "org.opencontainers.image.revision" in labels
        assert their_config.pop("Labels") is None
        assert ours_config == their_config

    port = _free_port()
    health = run_and_get(dockerd, f"pod-api-{port}", ["-e", f"PORT={port}", images["api"]["references"][0]],
                    f"http://127.0.0.1:{port}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    port = _free_port()
    page = run_and_get(dockerd, f"pod-web-{port}", [images["frontend"]["references"][0], "httpd", "-f", "-p",
                                               f"127.0.0.1:{port}", "-h", "/srv/www"],
                  f"http://127.0.0.1:{port}/index.html")
    assert page.status_code == 200
    assert page.content == (MOLTBOOK / "frontend/public/index.html").read_bytes()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


USER_RUN = "FROM busybox:1.36\nUSER 1000\nRUN id > /y\n"


def test_pod_user_permission_checks_as_doctor_says(pod: Pod, registry: Any, base_images: Any) -> None:
    context = f"{SOURCE}/user-run"
    host = pod.host_path(context)
    host.mkdir()
    (host / "Dockerfile").write_text(USER_RUN)
    _chown_tree(host, pod.variant.uid)
    report = _doctor(pod, context)
    checks = _fact(report, "builder.permission_checks")
    assert checks is not None, report["facts"]
    args = ["build", ".", "--progress", "plain", "--registry-mirror", registry.host,
            "--insecure-registry", registry.host]
    done = pod.anybuild(*args, cwd=context)
    if checks:
        assert done.returncode == 1, done.stderr[-3000:]
        assert "Permission denied" in done.stderr
        assert "RUN id > /y" in done.stdout + done.stderr
    else:
        assert done.returncode == 0, done.stderr[-3000:]
        assert "permission checks are root's" in done.stderr  # said once, plainly
        strict = pod.anybuild(*args, "--strict", cwd=context)
        assert strict.returncode == 3, strict.stderr[-3000:]
        assert "--strict: Dockerfile:3: RUN as USER 1000 cannot run as that user here" in strict.stdout
    assert _left_behind(pod) == []


SECRET = "pod-s3cret-never-on-disk-7d1e"


def _interrupted_context(pod: Pod, mark: str) -> str:
    context = f"{SOURCE}/interrupted"
    host = pod.host_path(context)
    host.mkdir()
    (host / "Dockerfile").write_text(
        f"FROM busybox:1.36\nRUN --mount=type=secret,id=token grep -q never-on-disk /run/secrets/token && "
        f"echo started-{mark} && sleep {mark}\nRUN echo never\n")
    (pod.host_path(SOURCE) / "token").write_text(SECRET + "\n")
    _chown_tree(host, pod.variant.uid)
    _chown_tree(pod.host_path(SOURCE) / "token", pod.variant.uid)
    return context


def _output(proc: subprocess.Popen[str]) -> tuple[list[str], threading.Thread]:
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def _secret_on_disk(pod: Pod) -> list[str]:
    """Files of the data directory holding the secret (it must live in memory only)."""
    found = []
    for top, _dirs, files in os.walk(pod.host_path(pod.data_dir)):
        for name in files:
            path = Path(top) / name
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink() and SECRET.encode() in path.read_bytes():
                    found.append(str(path))
    return found


def _shared_memory(pod: Pod) -> list[str]:
    return [n for n in pod.exec(["/bin/ls", "-A", "/dev/shm"]).stdout.split() if n.startswith("anybuild-")]


def _interrupt(pod: Pod, context: str, mark: str, signum: signal.Signals, args: list[str]) -> None:
    """Start the build, wait for its RUN, send *signum* as a terminal would, and check what it leaves."""
    proc = pod.spawn([sys.executable, "-m", "anybuild", *args], cwd=context)
    lines, pump = _output(proc)
    try:
        deadline = time.monotonic() + 300
        while not any(f"started-{mark}" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "\n".join(lines[-40:])
            time.sleep(0.2)
        time.sleep(0.5)  # the RUN's sleep is running
        assert _secret_on_disk(pod) == []  # a tmpfs of its own, or the pod's /dev/shm
        builds: list[int] = []
        until = time.monotonic() + 10  # `runc ps` reads the pod's cgroup: a listing may come up short once
        while len(builds) != 1 and time.monotonic() < until:
            builds = [pid for pid, cmd in pod.pids().items()
                      if cmd.startswith(f"{sys.executable} -m anybuild build")]
        assert len(builds) == 1, pod.processes()
        group = os.getpgid(builds[0])
        # Ctrl-C at a `kubectl exec -it` terminal signals the foreground process group; SIGTERM (the
        # kubelet stopping the pod, `kill`) reaches the process alone; SIGKILL (the OOM killer) too
        if signum == signal.SIGINT and group in pod.pids():
            os.killpg(group, signum)
        else:
            os.kill(builds[0], signum)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pump.join(timeout=30)
    text = "\n".join(lines)
    if signum == signal.SIGKILL:
        assert code == 128 + signum or code == -signum, text[-3000:]
        return  # the next build undoes what it left
    assert code == 128 + signum, text[-3000:]
    assert f"interrupted by {signum.name}" in text, text[-3000:]
    assert "Traceback" not in text and "never" not in [line.strip() for line in lines]
    deadline = time.monotonic() + 15
    while _left_behind(pod) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _left_behind(pod) == [], f"{signum.name}: " + "; ".join(_left_behind(pod))
    assert _secret_on_disk(pod) == [] and _shared_memory(pod) == []


def test_pod_interrupted_build_leaves_nothing_and_the_next_one_builds(pod: Pod, registry: Any,
                                                                      base_images: Any) -> None:
    """Ctrl-C, then SIGTERM, during a RUN with a secret in the pod: exit 130 and 143, nothing left in the pod
    (no mount, process, temporary directory, secret file on disk or in /dev/shm); then SIGKILL, after which
    the next build in the same data directory undoes what the killed one left, says so, and succeeds."""
    mark = str(random.randrange(20_000, 60_000))
    context = _interrupted_context(pod, mark)
    args = ["build", ".", "--progress", "plain", "--registry-mirror", registry.host,
            "--insecure-registry", registry.host, "--secret", f"id=token,src={SOURCE}/token"]
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        _interrupt(pod, context, mark, signum, args)
    (pod.host_path(context) / "Dockerfile").write_text("FROM busybox:1.36\nRUN echo done > /done\n")
    done = pod.anybuild(*args, cwd=context)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert said.count("cleaned up after a build that was killed") == 1, said[-3000:]
    deadline = time.monotonic() + 15
    while _left_behind(pod) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _left_behind(pod) == []
    assert _secret_on_disk(pod) == [] and _shared_memory(pod) == []
