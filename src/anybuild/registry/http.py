"""HTTP for registries: scheme choice, TLS, retries with back-off, and error translation.

This module is the one place where httpx errors and registry error responses
become :class:`~anybuild.errors.RegistryError` / ``RegistryAuthError``. Every URL
in an error or a log line passes through the redactor first.

Plain HTTP is allowed only for loopback registries (127.0.0.0/8, ::1, localhost),
where HTTPS is tried first as Docker does, and for hosts named insecure, where
HTTPS is tried without certificate verification and then HTTP.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import ipaddress
import logging
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import certifi
import httpcore
import httpx

from anybuild.cancellation import Cancellation
from anybuild.errors import RegistryAuthError, RegistryError, UsageError
from anybuild.redaction import Redactor, redact_url
from anybuild.registry.auth import RegistryAuth

__all__ = ["RETRYABLE_STATUS", "RegistryHttp", "RegistryTimeouts", "RetryPolicy", "Retryable", "is_loopback",
           "raise_for"]

T = TypeVar("T")
log = logging.getLogger("anybuild.registry")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "anybuild/0.1 (+https://github.com/anybuild)"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry; Retry-After from the registry wins, up to max_delay."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return min(self.base_delay * float(2**attempt), self.max_delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryTimeouts:
    """How long a registry may be silent: to accept a connection, and between two bytes (of its answer, or
    of an upload it reads), never for a whole transfer: a slow large upload keeps going while bytes move.

    A request that times out is tried once more, so a registry that accepts connections and never
    answers fails a pull or push in about 30 s with the defaults (``ANYBUILD_REGISTRY_CONNECT_TIMEOUT``,
    ``ANYBUILD_REGISTRY_READ_TIMEOUT``, in seconds, change them). The answer to the request that
    completes an upload may take longer (the registry verifies and moves the blob): :meth:`finishing`.
    """

    connect: float = 10.0
    read: float = 15.0

    CONNECT_ENV = "ANYBUILD_REGISTRY_CONNECT_TIMEOUT"
    READ_ENV = "ANYBUILD_REGISTRY_READ_TIMEOUT"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RegistryTimeouts:
        values = {}
        for name, field_name in ((cls.CONNECT_ENV, "connect"), (cls.READ_ENV, "read")):
            text = env.get(name, "").strip()
            if not text:
                continue
            try:
                value = float(text.removesuffix("s"))
            except ValueError:
                value = -1.0
            if not value > 0 or value == float("inf"):
                raise UsageError(f"{name}={text!r} is not a number of seconds", hint=f"set {name} to e.g. 30 "
                                 "(seconds, more than 0), or unset it")
            values[field_name] = value
        return cls(**values)

    def per_request(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.read, pool=self.connect + self.read)

    def finishing(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=max(4 * self.read, 60.0), write=self.read,
                             pool=self.connect + self.read)

    def probe(self) -> httpx.Timeout:
        """For the TLS probe of a loopback or insecure registry: a plain-HTTP one answers at once."""
        quick = min(3.0, self.connect, self.read)
        return httpx.Timeout(quick)


_TIMEOUT_ATTEMPTS = 2  # a request that timed out twice is not tried again: the registry is not answering


class _Interruptible(httpcore.NetworkBackend):
    """httpcore's own network backend, whose open sockets a cancellation shuts down: a request blocked
    on a silent registry returns at once instead of at its read timeout."""

    def __init__(self, inner: httpcore.NetworkBackend, cancel: Cancellation) -> None:
        self._inner = inner
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.Lock()
        cancel.on_cancel(self._shut)

    def _keep(self, stream: httpcore.NetworkStream) -> httpcore.NetworkStream:
        sock = stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.add(sock)
        return stream

    def _shut(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return self._keep(self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                  socket_options=socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return self._keep(self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport(verify: ssl.SSLContext, cancel: Cancellation | None) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=verify)
    pool = getattr(transport, "_pool", None)  # httpx has no public seam for httpcore's network backend
    if cancel is not None and isinstance(pool, httpcore.ConnectionPool):
        pool._network_backend = _Interruptible(pool._network_backend, cancel)
    return transport


class Retryable(Exception):
    """Internal: a failed attempt that may be retried; carries the user-facing error."""

    def __init__(self, error: RegistryError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after

    @property
    def final(self) -> bool:
        return not self.error.retryable


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _retry_after(response: httpx.Response, now: Callable[[], float]) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


@functools.cache
def _public_roots() -> ssl.SSLContext:
    """The TLS context for the public roots, made once: loading the CA bundle costs ~50 ms a client."""
    return ssl.create_default_context(cafile=certifi.where())


@functools.cache
def _no_verification() -> ssl.SSLContext:
    """The TLS context for insecure hosts, made once (httpx's own for ``verify=False`` costs ~25 ms)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RegistryHttp:
    """An httpx client per TLS mode, scheme resolution per host, and the retry loop."""

    def __init__(
        self,
        *,
        auth: RegistryAuth,
        redactor: Redactor,
        insecure: frozenset[str] = frozenset(),
        ca_bundle: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        timeouts: RegistryTimeouts = RegistryTimeouts(),
        notify: Callable[[str], None] | None = None,
        schemes: dict[str, str] | None = None,
        cancel: Cancellation | None = None,
    ) -> None:
        """*sleep* waits between retries (default: on *cancel*, which cuts it short)."""
        self.auth = auth
        self.cancel = cancel or Cancellation()
        self.timeouts = timeouts
        self._transport = transport
        self._notify = notify
        self.redactor = redactor
        self.insecure = insecure
        self.retry = retry
        self._sleep = sleep if sleep is not None else self.cancel.sleep
        self._wall_clock = wall_clock
        self._schemes: dict[str, str] = {} if schemes is None else schemes
        self._lock = threading.Lock()
        self._ca_bundle = ca_bundle
        self._options: dict[str, Any] = {
            "auth": auth, "follow_redirects": True, "headers": {"User-Agent": USER_AGENT},
            "timeout": timeouts.per_request(),
        }
        self._clients: dict[bool, httpx.Client] = {}  # by "verifies certificates"; made on first use

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _verify(self) -> ssl.SSLContext:
        if self._ca_bundle is None:
            return _public_roots()
        context = ssl.create_default_context(cafile=certifi.where())  # the public roots, plus the CA given
        context.load_verify_locations(cafile=str(self._ca_bundle))
        return context

    def redact(self, text: str) -> str:
        return self.redactor(redact_url(text))

    def client(self, host: str) -> httpx.Client:
        """The client for *host*: unverified for insecure hosts only. A build that talks only to
        plain-HTTP registries never loads the CA bundle (~50 ms)."""
        verifies = host not in self.insecure
        with self._lock:
            found = self._clients.get(verifies)
            if found is None:
                verify = self._verify() if verifies else _no_verification()
                transport = self._transport or _transport(verify, self.cancel)
                found = self._clients[verifies] = httpx.Client(verify=verify, transport=transport, **self._options)
        return found

    def base_url(self, host: str) -> str:
        """``https://host`` or, for loopback and insecure hosts that do not speak TLS, ``http://host``."""
        with self._lock:
            known = self._schemes.get(host)
        if known is not None:
            return f"{known}://{host}"
        scheme = "https"
        if host in self.insecure or is_loopback(host):
            try:
                self.client(host).get(f"https://{host}/v2/", timeout=self.timeouts.probe())
            except httpx.TransportError as exc:
                # it speaks TLS, with a certificate we do not trust: stay on https and say so
                if "CERTIFICATE_VERIFY_FAILED" not in str(exc):
                    log.debug("https to %s failed (%s); using plain http", host, exc)
                    scheme = "http"
        with self._lock:
            self._schemes[host] = scheme
        return f"{scheme}://{host}"

    # -- the one translation boundary ------------------------------------------

    def transport_error(self, exc: httpx.HTTPError, what: str, url: str) -> Retryable:
        where = self.redact(url)
        message = self.redact(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            connect = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            said = (f"connect timeout: {where} did not accept a connection within {self.timeouts.connect:g} s"
                    if connect else f"read timeout: {where} sent nothing for {self.timeouts.read:g} s"
                    if isinstance(exc, httpx.ReadTimeout) else
                    f"write timeout: {where} took nothing of what was sent for {self.timeouts.read:g} s")
            variable = RegistryTimeouts.CONNECT_ENV if connect else RegistryTimeouts.READ_ENV
            return Retryable(RegistryError(
                f"{what}: {said}", url=where, retryable=True,
                hint=f"the registry is not answering: check that it is up and reachable; for a registry that "
                     f"is only slow, raise {variable} (seconds)"))
        if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            error = RegistryError(
                f"{what}: TLS certificate of {where} is not trusted: {message}", url=where,
                hint="install the registry's CA certificate, or name the host with "
                "--insecure-registry HOST if it is yours and you accept the risk",
                docs="troubleshooting/registry-tls",
            )
            return Retryable(error)
        error = RegistryError(
            f"{what}: {type(exc).__name__} talking to {where}: {message}", url=where, retryable=True,
            hint="check the network and the registry's address; anybuild retried with back-off",
        )
        return Retryable(error)

    def response_error(self, response: httpx.Response, what: str) -> Retryable:
        """The error for a registry response that is not a success."""
        where = self.redact(str(response.request.url))
        status = response.status_code
        codes: tuple[str, ...] = ()
        detail = ""
        try:
            body = response.json()
            errors = body.get("errors") or []
            codes = tuple(str(e.get("code", "")) for e in errors if isinstance(e, dict))
            detail = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
        except (ValueError, AttributeError, httpx.ResponseNotRead):
            detail = ""
        detail = self.redact(detail or response.reason_phrase)
        message = f"{what}: {response.request.method} {where} → {status} {detail}".rstrip()
        retryable = status in RETRYABLE_STATUS
        error: RegistryError
        if status in (401, 403):
            # a 401 on a one-shot body (an upload) could not be replayed by the auth flow: the
            # token expired mid-transfer; the flow has dropped it, so one more attempt gets a new one
            replay = status == 401 and not isinstance(response.request.stream, httpx.ByteStream)
            error = RegistryAuthError(
                message, status=status, codes=codes, url=where, retryable=replay,
                hint="log in (`docker login HOST`), set ANYBUILD_REGISTRY_AUTH, or check that the "
                "credentials may access this repository",
                docs="registry-auth",
            )
        elif status == 404:
            error = RegistryError(message, status=status, codes=codes, url=where,
                                  hint="check the repository name and tag or digest")
        elif status == 429:
            error = RegistryError(message, status=status, codes=codes, url=where, retryable=True,
                                  hint="the registry rate-limits you: log in, wait, or use a registry mirror "
                                  "(--registry-mirror HOST)")
        else:
            error = RegistryError(message, status=status, codes=codes, url=where, retryable=retryable,
                                  hint="retry later" if retryable else "see the registry's message above")
        return Retryable(error, _retry_after(response, self._wall_clock))

    # -- the retry loop ----------------------------------------------------------

    def attempt(self, op: Callable[[], T], *, what: str, url: str,
                on_retry: Callable[[], None] | None = None, attempts: int | None = None) -> T:
        """Run *op* until it succeeds, retrying retryable failures with back-off."""
        last: Retryable | None = None
        attempts = min(attempts, self.retry.attempts) if attempts else self.retry.attempts
        timeouts = 0
        for attempt in range(attempts):
            self.cancel.check()
            if last is not None:
                delay = self.retry.delay(attempt - 1, last.retry_after)
                note = f"{last.error.message}; retrying in {delay:.1f}s (attempt {attempt + 1} of {attempts})"
                log.info("%s", note)
                if self._notify is not None:
                    self._notify(note)
                self._sleep(delay)
                if on_retry is not None:
                    on_retry()
            try:
                return op()
            except httpx.HTTPError as exc:
                self.cancel.check()  # its socket was shut down by the cancellation
                last = self.transport_error(exc, what, url)
                last.__cause__ = exc
                if isinstance(exc, httpx.TimeoutException):
                    timeouts += 1
                    if timeouts >= _TIMEOUT_ATTEMPTS and attempt + 1 < attempts:
                        raise self._give_up(last, attempt + 1) from exc
            except Retryable as failure:
                last = failure
            if last.final:
                raise last.error from last.__cause__
        if last is None:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        raise self._give_up(last, attempts)

    def _give_up(self, last: Retryable, attempts: int) -> RegistryError:
        error = last.error
        error.message = f"{error.message} (gave up after {attempts} attempts)"
        error.args = (error.message,)
        error.__cause__ = last.__cause__
        return error


def raise_for(http: RegistryHttp, response: httpx.Response, what: str, *ok: int) -> httpx.Response:
    """Return *response* if its status is one of *ok*, else raise the translated failure."""
    if response.status_code in ok:
        return response
    if not response.is_stream_consumed:
        response.read()
    raise http.response_error(response, what)

