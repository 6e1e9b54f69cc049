"""Cluster access: anybuild's small interface (:class:`Cluster`) over the official ``kubernetes`` client.

The rest of the backend speaks only :class:`Cluster` and plain JSON (dicts) and
the values of :mod:`.model`; the client library is imported here alone, on
first use, and its errors become :class:`ClusterError` at this one boundary.
Credentials are the client's: kubeconfig contexts and ``KUBECONFIG`` lists,
exec credential plugins (EKS, GKE, AKS), and in-cluster service-account tokens
(the devpod: ``KUBERNETES_SERVICE_HOST`` + the mounted token and namespace).
Requests go through the client's ``ApiClient`` (its auth, TLS and proxy
settings), their bodies read as JSON here; exec uses its WebSocket client, which
offers ``v5.channel.k8s.io`` (stdin can be closed) and then ``v4``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from anybuild.backends.kubernetes.model import ExecOutcome, WatchEvent
from anybuild.errors import BackendError

__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "Cluster",
    "ClusterError",
    "Gone",
    "KubeCluster",
    "connect",
]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_V5 = "v5.channel.k8s.io"
_CHUNK = 256 * 1024


class ClusterError(BackendError):
    """The API server refused a request or could not be reached (status 0: no answer)."""

    kind = "kubernetes"

    def __init__(self, message: str, *, status: int = 0, reason: str = "", hint: str = "",
                 environmental: bool = True, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, backend="kubernetes", environmental=environmental, hint=hint,
                         docs="backends/kubernetes")
        self.status = status
        self.reason = reason
        self.body = dict(body or {})

    def details(self) -> dict[str, Any]:
        return {**super().details(), "status": self.status or None, "reason": self.reason or None}


class Gone(ClusterError):
    """A watch's resourceVersion is too old (410): list again, then watch from there."""


class Cluster(Protocol):
    """What the backend asks of a cluster. Paths are API paths (``/api/v1/...``), bodies plain JSON."""

    @property
    def namespace(self) -> str: ...

    @property
    def description(self) -> str:
        """Where this is, for humans: ``context kind-dev at https://127.0.0.1:6443``."""
        ...

    def request(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (),
                body: Mapping[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]: ...

    def stream_lines(self, path: str, *, query: Sequence[tuple[str, str]] = (),
                     timeout: float | None = None) -> Iterator[bytes]:
        """A streaming GET (watch, follow): one line at a time, until the server ends it."""
        ...

    def exec(self, pod: str, container: str, command: Sequence[str], stdin: Iterable[bytes],
             *, timeout: float = 300.0) -> ExecOutcome: ...

    def close(self) -> None: ...


def watch_events(lines: Iterable[bytes]) -> Iterator[WatchEvent]:
    """The events of a watch stream; an ERROR event with 410 raises :class:`Gone`."""
    for line in lines:
        if not line.strip():
            continue
        data = json.loads(line)
        event = WatchEvent(type=str(data.get("type", "")), object=data.get("object") or {})
        if event.type == "ERROR":
            code = event.object.get("code")
            message = str(event.object.get("message") or "watch error")
            if code == 410:
                raise Gone(message, status=410, reason="Expired")
            raise ClusterError(f"watch failed: {message}", status=int(code or 0),
                               reason=str(event.object.get("reason") or ""))
        yield event


def _status_error(status: int, body: bytes, what: str) -> ClusterError:
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    message = str(data.get("message") or body[:300].decode(errors="replace").strip() or f"HTTP {status}")
    reason = str(data.get("reason") or "")
    hint = ""
    if status == 401:
        hint = "your cluster credentials were refused: log in again (e.g. refresh the kubeconfig's token)"
    elif status == 403:
        hint = "ask for the permission named above (docs/backends/kubernetes.md has the Role to apply)"
    if status == 410:
        return Gone(f"{what}: {message}", status=status, reason=reason or "Expired", body=data)
    return ClusterError(f"{what}: {message}", status=status, reason=reason, hint=hint, body=data)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Loaded:
    configuration: Any  # kubernetes.client.Configuration
    namespace: str
    description: str


def _load(*, kubeconfig: str | None, context: str | None, namespace: str | None, env: Mapping[str, str],
          home: Path, service_account: Path) -> _Loaded:
    from kubernetes import client as k8s
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.incluster_config import InClusterConfigLoader
    from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

    paths = kubeconfig or env.get("KUBECONFIG") or ""
    files = [p for p in paths.split(":") if p] or [str(home / ".kube" / "config")]
    present = [p for p in files if Path(p).expanduser().is_file()]
    token = service_account / "token"
    if not present and not kubeconfig and env.get("KUBERNETES_SERVICE_HOST") and token.is_file():
        configuration = k8s.Configuration()
        try:
            InClusterConfigLoader(token_filename=str(token), cert_filename=str(service_account / "ca.crt"),
                                  environ=env).load_and_set(configuration)
        except ConfigException as exc:
            raise ClusterError(f"in-cluster credentials are unusable: {exc}",
                               hint=f"check the service account token mounted at {service_account}") from exc
        own = (service_account / "namespace").read_text().strip() if (service_account / "namespace").is_file() \
            else "default"
        return _Loaded(configuration=configuration, namespace=namespace or own or "default",
                       description=f"in-cluster service account at {configuration.host}")
    if not present:
        raise ClusterError(
            f"no Kubernetes credentials: no kubeconfig at {', '.join(files)} and not in a pod with a service account",
            hint="set KUBECONFIG or --kube-context, or run in a pod whose service account may create Jobs")
    try:
        merged = KubeConfigMerger(":".join(present))
        loader = KubeConfigLoader(config_dict=merged.config, active_context=context, config_base_path=None)
        configuration = k8s.Configuration()
        loader.load_and_set(configuration)
    except ConfigException as exc:
        try:
            known = ", ".join(str(c["name"]) for c in KubeConfigLoader(config_dict=merged.config).list_contexts())
        except (ConfigException, KeyError, TypeError):
            known = ""
        raise ClusterError(f"kubeconfig {':'.join(present)}: {exc}",
                           hint=f"choose a context with --kube-context ({known or 'none defined'})") from exc
    current = loader.current_context
    name = str(current.get("name") if hasattr(current, "get") else context)
    chosen = namespace or str((current["context"].get("namespace") if current else None) or "default")
    return _Loaded(configuration=configuration, namespace=chosen,
                   description=f"context {name} at {configuration.host}")


def connect(*, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None,
            env: Mapping[str, str], home: Path, service_account: Path = SERVICE_ACCOUNT_DIR) -> KubeCluster:
    """Credentials as kubectl finds them: *kubeconfig* / ``$KUBECONFIG`` / ``~/.kube/config``, else in-cluster."""
    try:
        loaded = _load(kubeconfig=kubeconfig, context=context, namespace=namespace, env=env, home=home,
                       service_account=service_account)
    except ImportError as exc:
        raise ClusterError("the kubernetes backend needs the kubernetes client library",
                           hint="pip install 'anybuild[kubernetes]' (or pipx inject anybuild kubernetes)") from exc
    return KubeCluster(loaded.configuration, namespace=loaded.namespace, description=loaded.description)


class KubeCluster:
    """:class:`Cluster` over the official client's ``ApiClient``."""

    def __init__(self, configuration: Any, *, namespace: str, description: str) -> None:
        from kubernetes import client as k8s

        self._configuration = configuration
        self._api = k8s.ApiClient(configuration)
        self._namespace = namespace
        self._description = description
        self._lock = threading.Lock()

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def description(self) -> str:
        return self._description

    def close(self) -> None:
        self._api.close()

    def _call(self, method: str, path: str, query: Sequence[tuple[str, str]], body: Mapping[str, Any] | None,
              timeout: float | tuple[float, float] | None) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        try:
            with self._lock:  # param_serialize refreshes exec-plugin tokens: one at a time
                _, url, headers, data, _ = self._api.param_serialize(
                    method, path, query_params=list(query), header_params=headers,
                    body=dict(body) if body is not None else None, auth_settings=["BearerToken"])
            return self._api.call_api(method, url, header_params=headers, body=data, _request_timeout=timeout)
        except ApiException as exc:
            raise _status_error(int(exc.status or 0), (exc.body or b"") if isinstance(exc.body, bytes)
                                else str(exc.body or exc.reason or "").encode(), f"{method} {path}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(f"cannot reach the Kubernetes API server at {self._configuration.host}: {exc}",
                               hint="check the cluster address and your network (kubectl cluster-info)") from exc

    def request(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (),
                body: Mapping[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        response = self._call(method, path, query, body, timeout)
        data = response.read()
        if response.status >= 400:
            raise _status_error(response.status, data, f"{method} {path}")
        try:
            parsed = json.loads(data) if data else {}
        except ValueError as exc:
            raise ClusterError(f"{method} {path}: the API server answered with no JSON: {data[:200]!r}") from exc
        return parsed if isinstance(parsed, dict) else {"items": parsed}

    def stream_lines(self, path: str, *, query: Sequence[tuple[str, str]] = (),
                     timeout: float | None = None) -> Iterator[bytes]:
        import urllib3

        response = self._call("GET", path, query, None, (10.0, timeout) if timeout else None)
        raw = response.response
        try:
            if response.status >= 400:
                raise _status_error(response.status, raw.read(), f"GET {path}")
            pending = b""
            try:
                for chunk in raw.stream(16 * 1024, decode_content=True):
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        yield line
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if pending:
                    yield pending  # what arrived before the drop; the caller decides if it is whole
                raise ClusterError(f"the stream of {path} was cut: {exc}", reason="StreamDropped") from exc
            if pending:
                yield pending
        finally:
            raw.release_conn()

    def exec(self, pod: str, container: str, command: Sequence[str], stdin: Iterable[bytes],
             *, timeout: float = 300.0) -> ExecOutcome:
        from kubernetes import client as k8s
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream
        from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDIN_CHANNEL, STDOUT_CHANNEL
        from websocket import WebSocketException

        api = k8s.ApiClient(self._configuration)  # kubernetes.stream swaps a method of its client: one per call
        try:
            try:
                ws = stream(k8s.CoreV1Api(api).connect_get_namespaced_pod_exec, pod, self._namespace,
                            container=container, command=list(command), stdin=True, stdout=True, stderr=True,
                            tty=False, _preload_content=False, binary=True)
            except ApiException as exc:
                text = str(exc.reason or "")
                status = 403 if "403" in text else (404 if "404" in text else int(exc.status or 0))
                raise ClusterError(f"exec into {pod}/{container}: {text}", status=status,
                                   reason="Forbidden" if status == 403 else "") from exc
            protocol = str(ws.subprotocol or "")
            connection = ws.sock  # websocket-client's WebSocket: its shutdown() closes the socket, even when closed
            try:
                for chunk in stdin:
                    for start in range(0, len(chunk), _CHUNK):
                        ws.write_channel(STDIN_CHANNEL, chunk[start:start + _CHUNK])
                        ws.update(timeout=0)
                if protocol == _V5:
                    ws.close_channel(STDIN_CHANNEL)
                ws.run_forever(timeout=timeout)
                stdout = ws.read_channel(STDOUT_CHANNEL)
                stderr = ws.read_channel(STDERR_CHANNEL)
                status = ws.read_channel(ERROR_CHANNEL)
            except (TimeoutError, WebSocketException, OSError) as exc:
                raise ClusterError(f"exec into {pod}/{container} was cut: {exc}", reason="StreamDropped") from exc
            finally:
                with contextlib.suppress(WebSocketException, OSError):
                    ws.close()
                connection.shutdown()
        finally:
            api.close()
        returncode, message = _exec_status(status)
        return ExecOutcome(returncode=returncode, stdout=stdout.decode(errors="replace"),
                           stderr=stderr.decode(errors="replace"), protocol=protocol, message=message)


def _exec_status(raw: bytes) -> tuple[int | None, str]:
    """The exit status of an exec from its status channel (a metav1.Status)."""
    if not raw:
        return None, "the exec stream ended without a status"
    try:
        data = json.loads(raw)
    except ValueError:
        return None, raw[:200].decode(errors="replace")
    if data.get("status") == "Success":
        return 0, ""
    message = str(data.get("message") or "")
    for cause in (data.get("details") or {}).get("causes") or ():
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message")), message
            except (TypeError, ValueError):
                break
    return None, message


def api_path(kind: str, namespace: str, name: str = "", sub: str = "") -> str:
    """``/api/v1/namespaces/NS/pods[/NAME[/SUB]]`` and the like, for the kinds the backend uses."""
    prefix = {"jobs": "/apis/batch/v1", "events": "/api/v1", "pods": "/api/v1", "secrets": "/api/v1"}[kind]
    path = f"{prefix}/namespaces/{quote(namespace, safe='')}/{kind}"
    if name:
        path += f"/{quote(name, safe='')}"
    if sub:
        path += f"/{sub}"
    return path
