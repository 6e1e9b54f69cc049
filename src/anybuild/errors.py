"""The one exception tree of anybuild.

Every error a user can meet is an :class:`AnybuildError`. It carries a
``message`` (what happened, naming the offending value), a ``hint`` (what to do,
in the imperative) and, where one exists, a ``docs`` slug under ``docs/``. The
CLI renders it as ``error:`` / ``hint:`` / ``docs:`` lines (or JSON) and exits
with its ``exit_code``. Anything that is not an ``AnybuildError`` is a bug and
keeps its traceback (shown with ``--debug``).

::

    AnybuildError                      exit
    ├── UsageError                       2   bad command-line input
    ├── ConfigError                      2   anybuild.toml: file, key, value
    ├── DockerfileError                  2   Dockerfile: file, line, column, text
    ├── ContextError                     2   build context: missing / unsafe path
    ├── EnvironmentUnsupported           3   nothing here can build (doctor's verdict)
    ├── RegistryError                    4   status, codes, redacted url, retryable
    │   ├── RegistryAuthError            4   401 / 403, missing or refused credentials
    │   └── ReferenceFormatError         2   a malformed image reference
    ├── IntegrityError                   5   digest or size mismatch, corrupt document
    ├── BackendError                     1   a backend could not run (tool failed to start)
    │   └── GithubError                  1   GitHub's API refused: status, redacted url, request id
    ├── BuildFailed                      1   the build ran and failed (carries the diagnosis)
    └── Interrupted                    130   Ctrl-C (143 SIGTERM, 129 SIGHUP)

Foreign exceptions (httpx, subprocess, OSError) are translated into this tree
at one boundary per kind, chained with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from pathlib import Path
from typing import Any

__all__ = [
    "AnybuildError",
    "BackendError",
    "BuildFailed",
    "ConfigError",
    "ContextError",
    "DockerfileError",
    "EnvironmentUnsupported",
    "ExitCode",
    "GithubError",
    "IntegrityError",
    "Interrupted",
    "ReferenceFormatError",
    "RegistryAuthError",
    "RegistryError",
    "UsageError",
]


class ExitCode(IntEnum):
    """Process exit statuses; scripts may rely on them."""

    OK = 0
    BUILD_FAILED = 1
    USAGE = 2
    ENVIRONMENT = 3
    REGISTRY = 4
    INTEGRITY = 5
    HANGUP = 129
    INTERRUPTED = 130
    TERMINATED = 143


class AnybuildError(Exception):
    """Base of every user-facing error: a message, a hint and a docs slug."""

    exit_code: int = ExitCode.BUILD_FAILED
    kind: str = "error"

    def __init__(self, message: str, *, hint: str = "", docs: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.docs = docs

    def details(self) -> dict[str, Any]:
        """Extra structured fields for JSON output; subclasses extend it."""
        return {}

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only constructors: rebuilt from the fields (the builder's worker sends errors back)
        return (_restore, (type(self), self.args, dict(self.__dict__)))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "message": self.message,
            "exit_code": int(self.exit_code),
        }
        if self.hint:
            data["hint"] = self.hint
        if self.docs:
            data["docs"] = self.docs
        data.update({k: v for k, v in self.details().items() if v is not None})
        return data


class UsageError(AnybuildError):
    """A command-line argument is wrong."""

    exit_code = ExitCode.USAGE
    kind = "usage"


class ConfigError(AnybuildError):
    """anybuild.toml is unreadable or invalid; names the file, key and value."""

    exit_code = ExitCode.USAGE
    kind = "config"

    def __init__(
        self,
        message: str,
        *,
        file: Path | None = None,
        key: str | None = None,
        value: object = None,
        line: int | None = None,
        hint: str = "",
        docs: str = "config",
    ) -> None:
        super().__init__(message, hint=hint, docs=docs)
        self.file = file
        self.key = key
        self.value = value
        self.line = line

    def details(self) -> dict[str, Any]:
        return {
            "file": str(self.file) if self.file else None,
            "key": self.key,
            "value": _jsonable(self.value),
            "line": self.line,
        }


class DockerfileError(AnybuildError):
    """A Dockerfile cannot be parsed or expanded; names file, line and column."""

    exit_code = ExitCode.USAGE
    kind = "dockerfile"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        text: str | None = None,
        hint: str = "",
        docs: str = "",
    ) -> None:
        super().__init__(message, hint=hint, docs=docs)
        self.file = file
        self.line = line
        self.column = column
        self.text = text

    def __str__(self) -> str:
        where = self.file or "Dockerfile"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"

    def details(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "text": self.text}


class ContextError(AnybuildError):
    """The build context is missing, unreadable or holds an unsafe path."""

    exit_code = ExitCode.USAGE
    kind = "context"


class EnvironmentUnsupported(AnybuildError):
    """No backend can build in this environment."""

    exit_code = ExitCode.ENVIRONMENT
    kind = "environment"


class RegistryError(AnybuildError):
    """A registry answered with an error, or could not be reached."""

    exit_code = ExitCode.REGISTRY
    kind = "registry"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        url: str | None = None,
        retryable: bool = False,
        hint: str = "",
        docs: str = "",
    ) -> None:
        super().__init__(message, hint=hint, docs=docs)
        self.status = status
        self.codes = codes
        self.url = url  # always redacted by whoever builds the error
        self.retryable = retryable

    def details(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "codes": list(self.codes) or None,
            "url": self.url,
            "retryable": self.retryable,
        }


class RegistryAuthError(RegistryError):
    """Credentials are missing, wrong, or lack the needed permission."""

    kind = "registry-auth"


class ReferenceFormatError(RegistryError):
    """An image reference is malformed."""

    exit_code = ExitCode.USAGE
    kind = "reference"


class IntegrityError(AnybuildError):
    """A blob or document does not match its digest, size or schema."""

    exit_code = ExitCode.INTEGRITY
    kind = "integrity"


class BackendError(AnybuildError):
    """A backend could not run at all (its tool is missing or refused to start)."""

    exit_code = ExitCode.BUILD_FAILED
    kind = "backend"

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        environmental: bool = True,
        hint: str = "",
        docs: str = "",
    ) -> None:
        super().__init__(message, hint=hint, docs=docs)
        self.backend = backend
        self.environmental = environmental

    def details(self) -> dict[str, Any]:
        return {"backend": self.backend or None, "environmental": self.environmental}


class GithubError(BackendError):
    """GitHub's REST API answered with an error, or could not be reached (the github backend)."""

    kind = "github"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        hint: str = "",
        docs: str = "backends/github",
    ) -> None:
        super().__init__(message, backend="github", environmental=False, hint=hint, docs=docs)
        self.status = status
        self.url = url  # always redacted by whoever builds the error
        self.request_id = request_id  # x-github-request-id, for GitHub support
        self.retryable = retryable

    def details(self) -> dict[str, Any]:
        return {**super().details(), "status": self.status, "url": self.url, "request_id": self.request_id,
                "retryable": self.retryable}


class BuildFailed(AnybuildError):
    """The build ran and failed; carries the diagnosis when one was made."""

    exit_code = ExitCode.BUILD_FAILED
    kind = "build"

    def __init__(
        self,
        message: str,
        *,
        diagnosis: Mapping[str, Any] | None = None,
        hint: str = "",
        docs: str = "",
    ) -> None:
        super().__init__(message, hint=hint, docs=docs)
        self.diagnosis = dict(diagnosis) if diagnosis else None

    def details(self) -> dict[str, Any]:
        return {"diagnosis": self.diagnosis}


class Interrupted(AnybuildError):
    """Ctrl-C, SIGTERM or SIGHUP stopped the work; everything started was cleaned up.

    The exit code is the shell's for the signal: 128 + its number (130, 143, 129).
    """

    exit_code: int = ExitCode.INTERRUPTED
    kind = "interrupted"

    def __init__(self, message: str, *, signum: int = 2, hint: str = "", docs: str = "") -> None:
        super().__init__(message, hint=hint, docs=docs)
        self.signum = signum
        self.exit_code = 128 + signum

    def details(self) -> dict[str, Any]:
        return {"signal": self.signum}


def _restore(cls: type[AnybuildError], args: tuple[Any, ...], state: dict[str, Any]) -> AnybuildError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)
