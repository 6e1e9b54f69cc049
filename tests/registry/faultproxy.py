"""A loopback HTTP proxy in front of a real registry that injects faults on chosen requests.

Rules match on method and a path substring; each fires a number of times:
``drop`` reads part of the request body and closes the connection without an
answer (a connection dropped mid-upload); ``truncate`` forwards the request and
sends only half of the response body; ``status`` answers with a status and
headers itself (429 with Retry-After, 503); ``hang`` reads the request and never
answers (a registry that accepts connections and is dead behind them); ``slow``
forwards, reading the request body and writing the response body at ``rate``
bytes a second (a slow link: bytes keep moving). Everything else is forwarded
unchanged, Host header included, so the registry's Location URLs point back at
the proxy. Every request is recorded.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO


@dataclass(slots=True, kw_only=True)
class Fault:
    method: str
    path: str
    action: str  # "drop" | "truncate" | "status" | "hang" | "slow"
    times: int = 1
    rate: int = 256 * 1024  # bytes a second, for "slow"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    skip: int = 0  # let this many matching requests through first


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    method: str
    path: str
    outcome: str  # the status forwarded, or the fault injected
    headers: dict[str, str]


class FaultProxy:
    def __init__(self, upstream: str, faults: list[Fault]) -> None:
        self.upstream = upstream
        self.faults = faults
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def _match(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.path in path and fault.times > 0:
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.times -= 1
                    return fault
        return None

    def _record(self, handler: BaseHTTPRequestHandler, outcome: str) -> None:
        with self._lock:
            self.seen.append(Seen(method=handler.command, path=handler.path, outcome=outcome,
                                  headers=dict(handler.headers.items())))

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        fault = self._match(h.command, h.path)
        if fault is not None and fault.action == "drop":
            h.rfile.read(length // 2)
            self._record(h, "dropped")
            h.close_connection = True
            h.connection.shutdown(2)
            return
        if fault is not None and fault.action == "slow":
            body = _read_slowly(h.rfile, length, fault.rate)
        else:
            body = h.rfile.read(length) if length else b""
        if fault is not None and fault.action == "hang":
            self._record(h, "hung")
            self.stopping.wait()
            h.close_connection = True
            return
        if fault is not None and fault.action == "status":
            self._record(h, f"injected {fault.status}")
            h.send_response(fault.status)
            for key, value in fault.headers.items():
                h.send_header(key, value)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for key, value in h.headers.items():
                conn.putheader(key, value)
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        truncate = fault is not None and fault.action == "truncate" and len(data) > 1
        self._record(h, "truncated" if truncate else str(response.status))
        h.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD" and fault is not None and fault.action == "slow":
            _write_slowly(h.wfile, data, fault.rate)
        elif h.command != "HEAD":
            h.wfile.write(data[: len(data) // 2] if truncate else data)
        if truncate:
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)


_TICK = 0.05


def _read_slowly(stream: BinaryIO, length: int, rate: int) -> bytes:
    parts, left, piece = [], length, max(1, int(rate * _TICK))
    while left > 0:
        chunk = stream.read(min(piece, left))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
        time.sleep(_TICK)
    return b"".join(parts)


def _write_slowly(stream: BinaryIO, data: bytes, rate: int) -> None:
    piece = max(1, int(rate * _TICK))
    for start in range(0, len(data), piece):
        stream.write(data[start:start + piece])
        stream.flush()
        time.sleep(_TICK)


@contextmanager
def fault_proxy(upstream: str, faults: list[Fault]) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, faults)
    thread = threading.Thread(target=proxy.server.serve_forever, name="faultproxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.stopping.set()
        proxy.server.shutdown()
        proxy.server.server_close()
        thread.join(timeout=10)
