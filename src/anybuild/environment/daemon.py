"""The Docker daemon: where it is (DOCKER_HOST, contexts), whether it answers, what it runs on."""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, FactKey, FactValue, Topic
from anybuild.environment.storage import docker_data_root, probe_data_dir

if TYPE_CHECKING:  # ~40 ms to import: loaded only when there is a daemon endpoint to ask
    import httpx

__all__ = ["DaemonEndpoint", "daemon_error_line", "probe_docker", "resolve_endpoint"]

DEFAULT_HOST = "unix:///var/run/docker.sock"
_DAEMON_LOGS = ("/var/log/docker.log", "/var/log/dockerd.log")  # where devpod images usually send dockerd
# Lines of a dockerd log that say why it cannot run or build.
_DAEMON_ERROR = re.compile(
    r"(failed to mount overlay|error initializing graphdriver|driver not supported|"
    r"failed to start daemon|overlay.*(invalid argument|not supported)|"
    r"mkdir .*: (read-only file system|permission denied)|devmapper)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonEndpoint:
    host: str
    context: str | None
    evidence: str


def resolve_endpoint(ctx: ProbeContext) -> DaemonEndpoint:
    """DOCKER_HOST, else the current docker context's endpoint, else the default socket."""
    host = ctx.env.get("DOCKER_HOST")
    if host:
        return DaemonEndpoint(host=host, context=None, evidence=f"DOCKER_HOST={host}")
    config_dir = Path(ctx.env.get("DOCKER_CONFIG") or ctx.home / ".docker")
    name = ctx.env.get("DOCKER_CONTEXT")
    source = "DOCKER_CONTEXT"
    if not name:
        try:
            config = json.loads((config_dir / "config.json").read_text())
            name = config.get("currentContext") if isinstance(config, dict) else None
            source = f"{config_dir / 'config.json'}: currentContext"
        except (OSError, ValueError):
            name = None
    if name and name != "default":
        meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
        try:
            data = json.loads(meta.read_text())
            endpoint = data["Endpoints"]["docker"]["Host"]
        except (OSError, ValueError, KeyError, TypeError):
            return DaemonEndpoint(host=DEFAULT_HOST, context=name, evidence=f"{source}={name}, but {meta} unreadable")
        return DaemonEndpoint(host=str(endpoint), context=name, evidence=f"{source}={name} -> {meta}")
    return DaemonEndpoint(host=DEFAULT_HOST, context=name, evidence="DOCKER_HOST unset; default socket")


def daemon_error_line(log_text: str) -> str | None:
    """The last line of a dockerd log that explains why it cannot run."""
    found = [line.strip() for line in log_text.splitlines() if _DAEMON_ERROR.search(line)]
    return found[-1] if found else None


def _fact(key: FactKey, value: FactValue, evidence: str) -> Fact:
    return Fact(key=key, value=value, evidence=evidence, topic=Topic.DOCKER)


def _client(ctx: ProbeContext, host: str) -> httpx.Client | None:
    import httpx

    timeout = httpx.Timeout(ctx.timeout)
    if host.startswith("unix://"):
        transport = ctx.docker_transport(host.removeprefix("unix://"))
        return httpx.Client(transport=transport, base_url="http://docker", timeout=timeout)
    if host.startswith("tcp://"):
        return httpx.Client(base_url="http://" + host.removeprefix("tcp://"), timeout=timeout)
    return None


def probe_docker(ctx: ProbeContext) -> list[Fact]:
    endpoint = resolve_endpoint(ctx)
    facts = [
        _fact(FactKey.DOCKER_HOST, endpoint.host, endpoint.evidence),
        _fact(FactKey.DOCKER_CONTEXT, endpoint.context, endpoint.evidence),
    ]
    local = endpoint.host.startswith("unix://")
    # A build reads the daemon's data root only when there is a daemon to build with: without its
    # socket, no overlay trial (a process of its own, ~50 ms) for a backend that is excluded anyway.
    trial = ("" if ctx.thorough or not local or Path(endpoint.host.removeprefix("unix://")).exists()
             else "no daemon socket: a build does not read it")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Probe the configured data root while the daemon is asked (it may take the whole timeout).
        guessed_root, guessed_source = docker_data_root(ctx, None)
        guessed = (
            pool.submit(
                probe_data_dir,
                ctx,
                guessed_root,
                guessed_source,
                FactKey.DOCKER_ROOT_FSTYPE,
                FactKey.DOCKER_ROOT_OVERLAY,
                trial=trial,
            )
            if local
            else None
        )
        info, error = _query(ctx, endpoint.host)
        guessed_facts = guessed.result() if guessed else []
    reachable = info is not None
    facts.append(_fact(FactKey.DOCKER_REACHABLE, reachable, f"GET /_ping on {endpoint.host}: {error or 'OK'}"))
    info = info or {}
    version = info.get("ServerVersion")
    driver = info.get("Driver")
    root_dir = info.get("DockerRootDir")
    security = [str(s) for s in info.get("SecurityOptions") or []]
    where = f"GET /info on {endpoint.host}"
    facts += [
        _fact(FactKey.DOCKER_VERSION, version, f"{where}: ServerVersion" if reachable else "daemon unreachable"),
        _fact(FactKey.DOCKER_STORAGE_DRIVER, driver, f"{where}: Driver" if reachable else "daemon unreachable"),
        _fact(FactKey.DOCKER_ROOT_DIR, root_dir, f"{where}: DockerRootDir" if reachable else "daemon unreachable"),
        _fact(
            FactKey.DOCKER_ROOTLESS,
            any("rootless" in s for s in security) if reachable else None,
            f"{where}: SecurityOptions {security}" if reachable else "daemon unreachable",
        ),
    ]
    facts.append(_daemon_error(ctx, error, reachable))
    data_root, source = docker_data_root(ctx, root_dir if isinstance(root_dir, str) else None)
    facts.append(Fact(key=FactKey.DOCKER_DATA_ROOT, value=str(data_root), evidence=source, topic=Topic.STORAGE))
    if local and data_root == guessed_root:
        facts += guessed_facts
    elif local:
        facts += probe_data_dir(ctx, data_root, source, FactKey.DOCKER_ROOT_FSTYPE, FactKey.DOCKER_ROOT_OVERLAY,
                                trial=trial)
    else:
        remote = f"{endpoint.host} is not a local socket: its data root is not on this machine"
        facts += [
            Fact(key=FactKey.DOCKER_ROOT_FSTYPE, value=None, evidence=remote, topic=Topic.STORAGE),
            Fact(key=FactKey.DOCKER_ROOT_OVERLAY, value=None, evidence=remote, topic=Topic.STORAGE),
        ]
    return facts


def _daemon_error(ctx: ProbeContext, error: str | None, reachable: bool) -> Fact:
    """Why the daemon cannot build: its own log's last error line when it is down, else the ping error."""
    if reachable:
        return _fact(FactKey.DOCKER_ERROR, None, "daemon answered /_ping and /info")
    logs = [ctx.docker_log] if ctx.docker_log else [ctx.path(p) for p in _DAEMON_LOGS]
    for log in logs:
        try:
            logged = daemon_error_line(log.read_text(errors="replace")[-200_000:])
        except OSError:
            continue
        if logged:
            return _fact(FactKey.DOCKER_ERROR, logged, f"{log}: {logged}")
    return _fact(FactKey.DOCKER_ERROR, error, f"GET /_ping: {error}")


def _query(ctx: ProbeContext, host: str) -> tuple[dict[str, Any] | None, str | None]:
    """(/info merged with /version, None) when the daemon answers, else (None, why not)."""
    if host.startswith("unix://"):
        path = Path(host.removeprefix("unix://"))
        if not path.exists():
            return None, f"no socket at {path}"
    client = _client(ctx, host)
    if client is None:
        return None, f"{host}: only unix:// and tcp:// endpoints are probed"
    import httpx
    try:
        with client:
            ping = client.get("/_ping")
            if ping.status_code != 200:
                return None, f"/_ping answered {ping.status_code}: {ping.text.strip()[:200]}"
            info = client.get("/info").json()
            version = client.get("/version").json()
    except httpx.TimeoutException:
        return None, f"no answer within {ctx.timeout:g} s (daemon hung?)"
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not isinstance(info, dict):
        return None, "/info did not return an object"
    if isinstance(version, dict):
        info = {**info, "ApiVersion": version.get("ApiVersion")}
    return info, None
