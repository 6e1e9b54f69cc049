"""An in-repo fake Kubernetes API server: real HTTP/1.1 (chunked watches and log streams) and real WebSocket
exec on 127.0.0.1, a bearer token, and a generated kubeconfig. It implements what anybuild's kubernetes
backend and the kubectl commands of the tests use, and nothing else: discovery and version,
SelfSubjectAccessReviews, secrets, jobs and their pods (see simulation.py), events, watches with bookmarks
and 410 Gone, exec (v5 and v4), logs that follow and can be dropped, deletes with propagation.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.harness.kubeapi.simulation import Executor, Faults, JobController, close_pipes
from tests.harness.kubeapi.store import Store, now_rfc3339
from tests.harness.kubeapi.websocket import WebSocket, accept_key
from tests.harness.tlsca import make_test_ca

__all__ = ["FakeCluster", "running_fake_cluster"]

VERSION = {"major": "1", "minor": "36", "gitVersion": "v1.36.1-anybuild-fake", "gitCommit": "0" * 40,
           "gitTreeState": "clean", "buildDate": "2026-11-01T00:00:00Z", "goVersion": "go1.25.4",
           "compiler": "gc", "platform": "linux/amd64"}

_V1_RESOURCES = [
    ("pods", "Pod", True, ["create", "delete", "get", "list", "watch", "patch", "update", "deletecollection"]),
    ("pods/exec", "PodExecOptions", True, ["create", "get"]),
    ("pods/log", "Pod", True, ["get"]),
    ("secrets", "Secret", True, ["create", "delete", "get", "list", "watch", "patch", "update"]),
    ("events", "Event", True, ["create", "delete", "get", "list", "watch"]),
    ("namespaces", "Namespace", False, ["get", "list", "watch"]),
]
_BATCH_RESOURCES = [("jobs", "Job", True, ["create", "delete", "get", "list", "watch", "patch", "update"]),
                    ("jobs/status", "Job", True, ["get"])]
_AUTHZ_RESOURCES = [("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, ["create"])]


def _resource_list(group_version: str, resources: list[tuple[str, str, bool, list[str]]]) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [{"name": n, "singularName": "" if "/" in n else k.lower(), "namespaced": ns, "kind": k,
                           "verbs": v} for n, k, ns, v in resources]}


def _group(name: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def _openapi(group_version: str) -> dict[str, Any]:
    """Just enough OpenAPI v3 for kubectl to see that writes take ``fieldValidation`` (it then validates
    server-side: kubectl looks for the parameter on the PATCH of the kind's path)."""
    kinds = {"apis/batch/v1": [("jobs", "batch", "Job")],
             "api/v1": [("pods", "", "Pod"), ("secrets", "", "Secret")]}.get(group_version, [])
    version = group_version.rsplit("/", 1)[-1]
    parameter = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    paths = {}
    for plural, group, kind in kinds:
        operation = {"parameters": [parameter], "responses": {},
                     "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind}}
        paths[f"/{group_version}/namespaces/{{namespace}}/{plural}/{{name}}"] = {"patch": operation}
        paths[f"/{group_version}/namespaces/{{namespace}}/{plural}"] = {"post": operation}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]}, "paths": paths,
            "components": {"schemas": {}}}


def validate_strictly(manifest: dict[str, Any]) -> str | None:
    """Why the API server would refuse *manifest* under strict field validation (kubernetes-validate), or None."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        return f"{manifest.get('kind')} {where or '.'}: {exc.message}"
    return None


SCHEMA_VERSION = "1.36"


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


@dataclass
class FakeCluster:
    """A running fake: its URL, token, kubeconfig, store, faults and simulation."""

    url: str
    token: str
    kubeconfig: Path
    store: Store
    faults: Faults
    controller: JobController
    namespace: str = "builds"
    requests: list[tuple[str, str]] | None = None
    created: list[dict[str, Any]] = field(default_factory=list)  # every body POSTed, as sent

    def objects(self, kind: str) -> list[str]:
        """Names of the objects of *kind* (jobs, pods, secrets) left in the cluster."""
        return self.store.names(kind)

    def leftovers(self) -> dict[str, list[str]]:
        return {kind: self.objects(kind) for kind in ("jobs", "pods", "secrets") if self.objects(kind)}

    def pod_dir(self, pod: str) -> Path:
        return self.controller.root / "pods" / pod


class _Unsupported(Exception):
    """A request body in a media type the fake does not read (protobuf, CBOR)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def fake(self) -> FakeCluster:
        return self.server.fake

    def _send_json(self, code: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, reason: str, message: str) -> None:
        self._send_json(code, _status(code, reason, message))

    def _body_bytes(self) -> bytes:
        if getattr(self, "_consumed", None) is not None:
            return self._consumed
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        self._consumed: bytes | None = raw
        return raw

    def _body(self) -> dict[str, Any]:
        raw = self._body_bytes()
        if raw[:4] == b"k8s\x00":
            raise _Unsupported("application/vnd.kubernetes.protobuf")
        return json.loads(raw) if raw.strip() else {}

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        """Cut the connection mid-response."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _authorized(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() == self.fake.token:  # the scheme is case-insensitive
            return True
        self._body_bytes()  # read, so the connection can serve the next request
        self._error(401, "Unauthorized", "Unauthorized")
        return False

    # -- dispatch --------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        self._consumed = None
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        commands = parse_qs(parts.query).get("command", [])
        path = parts.path.rstrip("/")
        if self.fake.requests is not None:
            self.fake.requests.append((method, self.path))
        if not self._authorized():
            return
        segments = [s for s in path.split("/") if s]
        content_type = self.headers.get("Content-Type", "")
        try:
            if method in ("POST", "PUT", "PATCH") and content_type and "json" not in content_type:
                raise _Unsupported(content_type)
            self._route(method, path, segments, query, commands)
        except _Unsupported as exc:
            self._body_bytes()
            self._error(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                        f'accepted media types include: application/json, application/yaml ({exc})')
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def _route(self, method: str, path: str, seg: list[str], query: dict[str, str], commands: list[str]) -> None:
        fake = self.fake
        if method == "GET" and path == "/version":
            return self._send_json(200, VERSION)
        if method == "GET" and path == "/openapi/v3":
            return self._send_json(200, {"paths": {
                gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=FAKE"} for gv in ("api/v1", "apis/batch/v1")}})
        if method == "GET" and path.startswith("/openapi/v3/"):
            return self._send_json(200, _openapi(path.removeprefix("/openapi/v3/")))
        if method == "GET" and path == "/api":
            return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": urlsplit(fake.url).netloc}]})
        if method == "GET" and path == "/apis":
            return self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                _group("batch", "v1"), _group("authorization.k8s.io", "v1")]})
        if method == "GET" and path == "/api/v1":
            return self._send_json(200, _resource_list("v1", _V1_RESOURCES))
        if method == "GET" and path == "/apis/batch/v1":
            return self._send_json(200, _resource_list("batch/v1", _BATCH_RESOURCES))
        if method == "GET" and path == "/apis/authorization.k8s.io/v1":
            return self._send_json(200, _resource_list("authorization.k8s.io/v1", _AUTHZ_RESOURCES))
        if method == "POST" and path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
            return self._access_review()
        # /api/v1/namespaces/NS/KIND[/NAME[/SUB]] and /apis/batch/v1/namespaces/NS/jobs[/NAME]
        base = 2 if seg[:1] == ["api"] else 3
        if len(seg) >= base + 3 and seg[base] == "namespaces":
            namespace, kind = seg[base + 1], seg[base + 2]
            name = seg[base + 3] if len(seg) > base + 3 else ""
            sub = seg[base + 4] if len(seg) > base + 4 else ""
            group = "batch" if seg[:1] == ["apis"] else ""
            if (kind == "jobs") != (group == "batch") or kind not in ("pods", "secrets", "jobs", "events"):
                return self._error(404, "NotFound", f"the server could not find the requested resource ({path})")
            return self._namespaced(method, namespace, kind, name, sub, query, commands)
        return self._error(404, "NotFound", f"the server could not find the requested resource ({path})")

    # -- authorization ---------------------------------------------------------------------------

    def _denied(self, verb: str, resource: str, sub: str = "") -> bool:
        return (verb, resource, sub) in self.fake.faults.denied

    def _forbidden(self, verb: str, resource: str, sub: str, namespace: str, group: str = "") -> None:
        what = f"{resource}/{sub}" if sub else resource
        in_group = f' in API group "{group}"' if group else ' in API group ""'
        self._error(403, "Forbidden", f'{what} is forbidden: User "system:serviceaccount:{namespace}:builder" '
                    f'cannot {verb} resource "{what}"{in_group} in the namespace "{namespace}"')

    def _access_review(self) -> None:
        body = self._body()
        attributes = (body.get("spec") or {}).get("resourceAttributes") or {}
        verb, resource = attributes.get("verb", ""), attributes.get("resource", "")
        sub = attributes.get("subresource", "")
        allowed = not self._denied(verb, resource, sub)
        body["status"] = {"allowed": allowed, **({} if allowed else {"reason": "no RBAC policy matched"})}
        body.setdefault("metadata", {})["creationTimestamp"] = None
        self._send_json(201, body)

    # -- namespaced resources --------------------------------------------------------------------

    def _namespaced(self, method: str, namespace: str, kind: str, name: str, sub: str, query: dict[str, str],
                    commands: list[str]) -> None:
        fake = self.fake
        verb = {"GET": "get" if name else ("watch" if query.get("watch") in ("1", "true") else "list"),
                "POST": "create", "DELETE": "delete", "PUT": "update", "PATCH": "patch"}[method]
        if sub == "exec":
            verb = "create"
        if self._denied(verb, kind, sub):
            return self._forbidden(verb, kind, sub, namespace, "batch" if kind == "jobs" else "")
        if sub == "exec":
            return self._exec(namespace, name, query, commands)
        if sub == "log" and kind == "pods":
            return self._log(namespace, name, query)
        if sub:
            return self._error(404, "NotFound", f"{kind}/{sub} is not served by the fake")
        if method == "GET" and not name:
            if verb == "watch":
                return self._watch(namespace, kind, query)
            items = fake.store.list(kind, namespace, labels=query.get("labelSelector", ""),
                                    fields=query.get("fieldSelector", ""))
            list_kind = {"pods": "PodList", "secrets": "SecretList", "jobs": "JobList", "events": "EventList"}[kind]
            return self._send_json(200, {"kind": list_kind, "apiVersion": "batch/v1" if kind == "jobs" else "v1",
                                         "metadata": {"resourceVersion": str(fake.store.rv)}, "items": items})
        if method == "GET":
            found = fake.store.get(kind, namespace, name)
            if found is None:
                return self._error(404, "NotFound", f'{kind} "{name}" not found')
            return self._send_json(200, found)
        if method == "POST" and not name:
            body = self._body()
            invalid = validate_strictly(body)
            fake.created.append(json.loads(json.dumps(body)))
            if invalid is not None:
                return self._error(422, "Invalid", f"strict decoding error: {invalid}")
            if query.get("dryRun") == "All":
                return self._send_json(201, body)
            try:
                created = fake.store.create(kind, namespace, body)
            except KeyError:
                return self._error(409, "AlreadyExists", f'{kind} "{body["metadata"]["name"]}" already exists')
            self._send_json(201, created)
            if kind == "jobs":
                fake.controller.job_created(namespace, created)
            return None
        if method == "PUT" and name:
            body = self._body()
            invalid = validate_strictly(body)
            fake.created.append(json.loads(json.dumps(body)))
            if invalid is not None:
                return self._error(422, "Invalid", f"strict decoding error: {invalid}")

            def replace(current: dict[str, Any]) -> None:
                metadata = current["metadata"]
                current.clear()
                current.update(body)
                current["metadata"] = {**body.get("metadata", {}), **{k: metadata[k] for k in (
                    "uid", "creationTimestamp", "namespace")}}

            if not fake.store.update(kind, namespace, name, replace):
                return self._error(404, "NotFound", f'{kind} "{name}" not found')
            return self._send_json(200, fake.store.get(kind, namespace, name))
        if method == "DELETE" and name:
            body = self._body()
            propagation = query.get("propagationPolicy") or body.get("propagationPolicy") or (
                "Orphan" if kind == "jobs" else "Background")
            if kind == "jobs":
                deleted = fake.controller.delete_job(namespace, name, propagation)
            elif kind == "pods":
                deleted = fake.controller.delete_pod(namespace, name)
            else:
                deleted = fake.store.delete(kind, namespace, name)
            if deleted is None:
                return self._error(404, "NotFound", f'{kind} "{name}" not found')
            return self._send_json(200, deleted)
        return self._error(405, "MethodNotAllowed", f"{method} {kind} is not served by the fake")

    # -- watch -----------------------------------------------------------------------------------

    def _watch(self, namespace: str, kind: str, query: dict[str, str]) -> None:
        store, faults = self.fake.store, self.fake.faults
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        requested = query.get("resourceVersion", "")
        self._start_chunked("application/json")

        def send(event_type: str, obj: dict[str, Any]) -> None:
            self._chunk(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")

        with store.lock:
            start = int(requested) if requested.isdigit() and requested != "0" else None
            gone = start is not None and (start < store.compacted or (faults.gone_first_watch and kind == "pods"))
            if gone:
                faults.gone_first_watch = False
            pending: list[tuple[str, dict[str, Any]]] = []
            if start is None:
                pending = [("ADDED", o) for o in store.list(kind, namespace, labels=labels, fields=fields)]
                position = store.rv
            else:
                position = start
        if gone:
            send("ERROR", _status(410, "Expired", f"too old resource version: {requested} ({store.rv})"))
            return self._end_chunked()
        for event_type, obj in pending:
            send(event_type, obj)
        deadline = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            with store.lock:
                changes = [c for c in store.history if c.rv > position and c.kind == kind and c.namespace == namespace]
                if not changes:
                    store.changed.wait(0.25)
                    continue
            for change in changes:
                position = change.rv
                from tests.harness.kubeapi.store import match_fields, match_labels

                if match_labels(labels, change.object["metadata"].get("labels") or {}) and match_fields(
                        fields, change.object):
                    send(change.type, change.object)
            if bookmarks and time.monotonic() - last_bookmark > 1.0:
                last_bookmark = time.monotonic()
                send("BOOKMARK", {"kind": "Pod" if kind == "pods" else "Job", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(position)}})
        self._end_chunked()
        return None

    # -- logs ------------------------------------------------------------------------------------

    def _log(self, namespace: str, name: str, query: dict[str, str]) -> None:
        fake = self.fake
        run = fake.controller.pod(name)
        if run is None or fake.store.get("pods", namespace, name) is None:
            return self._error(404, "NotFound", f'pods "{name}" not found')
        wanted = query.get("container") or run.main[0].name
        container = next((c for c in (*run.init, *run.main) if c.name == wanted), None)
        if container is None:
            return self._error(400, "BadRequest", f"container {wanted} is not valid for pod {name}")
        if not container.started:
            return self._error(400, "BadRequest", f'container "{wanted}" in pod "{name}" is waiting to start: '
                               "PodInitializing")
        follow = query.get("follow") in ("1", "true")
        stamps = query.get("timestamps") in ("1", "true")
        since = query.get("sinceTime")
        since_ns = 0
        if since:
            from datetime import datetime

            since_ns = int(datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()) * 1_000_000_000
        self._start_chunked("text/plain")
        sent = index = 0
        log = container.log
        while True:
            with log.cond:
                while index >= len(log.lines) and not log.done and follow:
                    log.cond.wait(0.25)
                batch = log.lines[index:]
                index += len(batch)
                done = log.done or not follow
            for stamp, text in batch:
                if stamp < since_ns:
                    continue
                if fake.faults.drop_logs_after is not None and sent >= fake.faults.drop_logs_after:
                    fake.faults.drop_logs_after = None
                    return self._drop()
                prefix = f"{now_rfc3339(stamp / 1e9, nanos=True)[:20]}{stamp % 1_000_000_000:09d}Z " if stamps else ""
                self._chunk((prefix + text + "\n").encode())
                sent += 1
            if done and index >= len(log.lines):
                break
        return self._end_chunked()

    # -- exec ------------------------------------------------------------------------------------

    def _exec(self, namespace: str, name: str, query: dict[str, str], commands: list[str]) -> None:
        fake = self.fake
        if self.headers.get("Upgrade", "").lower() != "websocket":
            return self._error(400, "BadRequest", "exec needs a WebSocket upgrade (this fake speaks no SPDY)")
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        protocol = next((p for p in offered if p in fake.faults.exec_protocols), None)
        if protocol is None:
            return self._error(400, "BadRequest", f"no supported subprotocol in {offered}")
        run = fake.controller.pod(name)
        container = query.get("container", "")
        try:
            if run is None:
                raise LookupError(f'pods "{name}" not found')
            process = run.exec_process(container, commands)
        except LookupError as exc:
            return self._error(400, "BadRequest", f"unable to upgrade connection: {exc}")
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(self.headers["Sec-WebSocket-Key"]))
        self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        ws = WebSocket(self.rfile, self.wfile, self.connection)
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None

        def pump(stream: Any, channel: int) -> None:
            with suppress(ValueError, OSError):
                for chunk in iter(lambda: stream.read1(65536), b""):
                    ws.send_binary(bytes([channel]) + chunk)

        pumps = [threading.Thread(target=pump, args=(s, c), daemon=True)
                 for s, c in ((process.stdout, 1), (process.stderr, 2))]
        for thread in pumps:
            thread.start()
        dropped = threading.Event()

        def feed() -> None:
            """Client frames to the command's stdin; v5's close of channel 0 closes it."""
            received = 0
            stdin_open = True
            while True:
                message = ws.receive()
                if message is None:
                    break
                payload = message[1]
                if not payload:
                    continue
                if payload[0] == 255 and protocol == "v5.channel.k8s.io" and len(payload) > 1 and payload[1] == 0:
                    stdin_open = False
                    with suppress(OSError):
                        process.stdin.close()
                    continue
                if payload[0] == 0 and stdin_open:
                    data = payload[1:]
                    limit = fake.faults.drop_exec_after
                    if limit is not None and received + len(data) > limit:
                        fake.faults.drop_exec_after = None
                        with suppress(OSError):
                            process.stdin.write(data[: max(0, limit - received)])
                        dropped.set()
                        ws.drop()
                        process.kill()
                        return
                    received += len(data)
                    try:
                        process.stdin.write(data)
                        process.stdin.flush()
                    except OSError:
                        stdin_open = False
            if process.poll() is None:  # the client went away: the kubelet ends the command
                process.kill()

        threading.Thread(target=feed, daemon=True, name="exec-stdin").start()
        code = process.wait()
        for thread in pumps:
            thread.join(timeout=5)
        close_pipes(process)
        if dropped.is_set():
            return None
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                      "message": f"command terminated with non-zero exit code: exit status {code}",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        ws.send_binary(b"\x03" + json.dumps(status).encode())
        ws.close()
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeCluster
    stopping: threading.Event


def write_kubeconfig(path: Path, url: str, token: str, namespace: str, ca: Path, context: str = "fake") -> None:
    authority = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "fake", "cluster": {"server": url, "certificate-authority-data": authority}}],
        "users": [{"name": "builder", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "fake", "user": "builder", "namespace": namespace}}],
    }, indent=2))


@contextmanager
def running_fake_cluster(work: Path, executor: Executor, *, namespace: str = "builds",
                         faults: Faults | None = None) -> Iterator[FakeCluster]:
    """Start the fake on 127.0.0.1; stop every pod's processes and the server at the end."""
    store = Store()
    faults = faults or Faults()
    controller = JobController(store, work / "cluster", faults, executor)
    ca = make_test_ca(work / "tls")
    server = _Server(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca.server_cert, ca.server_key)
    context.set_alpn_protocols(["http/1.1"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    token = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode()
    kubeconfig = work / "kubeconfig"
    write_kubeconfig(kubeconfig, url, token, namespace, ca.ca_cert)
    fake = FakeCluster(url=url, token=token, kubeconfig=kubeconfig, store=store, faults=faults,
                       controller=controller, namespace=namespace, requests=[])
    server.fake = fake
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.stopping.set()
        controller.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
