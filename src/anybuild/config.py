"""`anybuild.toml` → a frozen :class:`Config` with one :class:`ImageSpec` per image.

The file describes a repository's images and how to build them::

    [project]
    name = "moltbook"
    registry = "ghcr.io"          # default registry of every image
    namespace = "acme"            # default repository prefix

    [build]
    backends = ["builtin", "docker", "buildah", "kubernetes", "github"]
    platforms = ["linux/amd64"]

    [tags]                        # docker/metadata-action syntax
    rules = ["type=ref,event=branch", "type=semver,pattern={{version}}", "type=sha"]
    flavor = ["latest=auto"]

    [registries."ghcr.io"]
    mirrors = []
    insecure = false

    [backend.github]              # the GitHub Actions backend (docs/backends/github.md)
    repository = "acme/moltbook"  # default: the github.com remote
    [backend.kubernetes]          # settings of one backend (see docs/backends/)
    namespace = "builds"

    [images.api]
    context = "api"               # relative to the directory holding anybuild.toml
    dockerfile = "Dockerfile"     # relative to the context (as in compose)
    repository = "ghcr.io/acme/moltbook-api"
    args = { NODE_ENV = "production" }

Every mistake is a :class:`~anybuild.errors.ConfigError` naming the file, the
dotted key, the bad value and the fix. Nothing here reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from anybuild.errors import ConfigError

__all__ = [
    "CONFIG_FILENAME",
    "BackendName",
    "BackendSettings",
    "BuildSettings",
    "Config",
    "GithubSettings",
    "ImageSpec",
    "ProjectSettings",
    "RegistrySettings",
    "TagSettings",
    "find_config",
    "load_config",
    "parse_config",
]

CONFIG_FILENAME = "anybuild.toml"


class BackendName(StrEnum):
    """The backends anybuild can build with, in the default preference order."""

    BUILTIN = "builtin"
    DOCKER = "docker"
    BUILDAH = "buildah"
    PODMAN = "podman"
    KUBERNETES = "kubernetes"
    GITHUB = "github"


DEFAULT_BACKENDS: tuple[BackendName, ...] = (
    BackendName.BUILTIN,
    BackendName.DOCKER,
    BackendName.BUILDAH,
    BackendName.PODMAN,
    BackendName.KUBERNETES,
    BackendName.GITHUB,
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")
_REPOSITORY = re.compile(
    r"^(?:(?P<host>[a-zA-Z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)$"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectSettings:
    name: str = ""
    registry: str = ""
    namespace: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildSettings:
    backends: tuple[BackendName, ...] = DEFAULT_BACKENDS
    platforms: tuple[str, ...] = ()
    jobs: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TagSettings:
    rules: tuple[str, ...] = ()
    flavor: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySettings:
    host: str
    mirrors: tuple[str, ...] = ()
    insecure: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GithubSettings:
    """``[backend.github]``: where the workflow lives and what it runs (docs/backends/github.md)."""

    repository: str = ""  # "owner/name"; default: the GitHub remote of the checkout
    api_url: str = ""  # default: GITHUB_API_URL, else https://api.github.com (or https://HOST/api/v3)
    workflow: str = "anybuild.yml"  # the file name under .github/workflows
    runs_on: tuple[str, ...] = ("ubuntu-24.04",)
    timeout_minutes: int = 60
    python: str = "3.12"
    anybuild: str = ""  # a pip requirement; default: the version of anybuild that writes the workflow
    id_token: bool = False  # `permissions: id-token: write` (OIDC), only when asked
    secrets: Mapping[str, str] = field(default_factory=dict)  # registry host -> secret name prefix
    poll_interval: float = 5.0  # seconds between two looks at a running workflow

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository, "api-url": self.api_url, "workflow": self.workflow,
            "runs-on": list(self.runs_on), "timeout-minutes": self.timeout_minutes, "python": self.python,
            "anybuild": self.anybuild, "id-token": self.id_token, "secrets": dict(self.secrets),
            "poll-interval": self.poll_interval,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendSettings:
    """``[backend.NAME]`` tables: settings of the backends that need some."""

    github: GithubSettings = GithubSettings()
    kubernetes: Mapping[str, Any] = field(default_factory=dict)  # validated; read by KubernetesSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageSpec:
    """One image to build: where its sources are, and where it goes."""

    name: str
    context: Path
    dockerfile: Path
    repository: str
    args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    platforms: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "context": str(self.context),
            "dockerfile": str(self.dockerfile),
            "repository": self.repository,
            "args": dict(self.args),
            "target": self.target,
            "platforms": list(self.platforms),
            "tags": list(self.tags),
            "labels": dict(self.labels),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The resolved configuration of one repository."""

    file: Path | None
    root: Path
    project: ProjectSettings = ProjectSettings()
    build: BuildSettings = BuildSettings()
    tags: TagSettings = TagSettings()
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    images: tuple[ImageSpec, ...] = ()
    backend: BackendSettings = BackendSettings()

    def image(self, name: str) -> ImageSpec:
        for spec in self.images:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.images) or "none"
        raise ConfigError(
            f"no image named {name!r} in {self.file or 'the configuration'}",
            file=self.file,
            key=f"images.{name}",
            hint=f"use one of: {known}" + _did_you_mean(name, [s.name for s in self.images]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.file) if self.file else None,
            "root": str(self.root),
            "project": {
                "name": self.project.name,
                "registry": self.project.registry,
                "namespace": self.project.namespace,
            },
            "build": {
                "backends": [str(b) for b in self.build.backends],
                "platforms": list(self.build.platforms),
                "jobs": self.build.jobs,
            },
            "tags": {"rules": list(self.tags.rules), "flavor": list(self.tags.flavor)},
            "registries": {
                host: {"mirrors": list(r.mirrors), "insecure": r.insecure}
                for host, r in self.registries.items()
            },
            "images": [spec.to_dict() for spec in self.images],
            "backend": {"github": self.backend.github.to_dict(), "kubernetes": dict(self.backend.kubernetes)},
        }


# --- loading ---------------------------------------------------------------------------------


def find_config(start: Path) -> Path | None:
    """The nearest anybuild.toml in *start* or a parent directory."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path) -> Config:
    """Read and validate *path*."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"configuration file {path} does not exist",
            file=path,
            hint=f"create {CONFIG_FILENAME} (see examples/moltbook/{CONFIG_FILENAME}) or pass --config FILE",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}", file=path, hint="check the file's permissions and encoding"
        ) from exc
    import tomllib  # ~10 ms with its regular expressions: only with a file to read

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigError(
            f"{path}: not valid TOML: {exc}",
            file=path,
            line=line,
            hint="fix the TOML syntax at that line (strings need quotes; tables are [name])",
        ) from exc
    return parse_config(data, file=path, root=path.parent.resolve())


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else None


# --- validation ------------------------------------------------------------------------------


Validator = Callable[["_Checker", str, object], Any]


class _Checker:
    """Validates one document, remembering the file for every error."""

    def __init__(self, file: Path | None) -> None:
        self.file = file

    def fail(self, key: str, value: object, problem: str, hint: str) -> ConfigError:
        where = f"{self.file}: " if self.file else ""
        shown = _show(value)
        return ConfigError(
            f"{where}{key} = {shown}: {problem}", file=self.file, key=key, value=value, hint=hint
        )

    def table(
        self, key: str, value: object, fields: Mapping[str, Validator]
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, value, f"must be a table, not {_type_name(value)}",
                            f"write it as [{key}] followed by key = value lines")
        result: dict[str, Any] = {}
        for name, item in value.items():
            dotted = f"{key}.{name}" if key else name
            if name not in fields:
                raise ConfigError(
                    f"{self.file}: unknown key {dotted}" if self.file else f"unknown key {dotted}",
                    file=self.file,
                    key=dotted,
                    value=item,
                    hint=f"remove it, or use one of: {', '.join(fields)}"
                    + _did_you_mean(name, list(fields)),
                )
            result[name] = fields[name](self, dotted, item)
        return result


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: object) -> str:
    return {
        str: "a string", int: "an integer", float: "a number", bool: "a boolean",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)


def _did_you_mean(word: str, options: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _string(c: _Checker, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise c.fail(key, value, f"must be a string, not {_type_name(value)}",
                     f'quote it: {key.rsplit(".", 1)[-1]} = "{value}"')
    return value


def _strings(c: _Checker, key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise c.fail(key, value, "must be an array of strings",
                     f'write it as {key.rsplit(".", 1)[-1]} = ["{value}"]')
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise c.fail(key, value, "must be an array of strings",
                     f'write it as {key.rsplit(".", 1)[-1]} = ["a", "b"]')
    return tuple(value)


def _string_map(c: _Checker, key: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise c.fail(key, value, f"must be a table of strings, not {_type_name(value)}",
                     f'write it as {key.rsplit(".", 1)[-1]} = {{ NAME = "value" }}')
    result: dict[str, str] = {}
    for name, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise c.fail(f"{key}.{name}", item, f"must be a string, not {_type_name(item)}",
                         f'quote the value: {name} = "..."')
        result[name] = str(item)
    return result


def _bool(c: _Checker, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise c.fail(key, value, f"must be true or false, not {_type_name(value)}",
                     f"write {key.rsplit('.', 1)[-1]} = true or false, without quotes")
    return value


def _positive_int(c: _Checker, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise c.fail(key, value, "must be a whole number of at least 1",
                     f"write {key.rsplit('.', 1)[-1]} = 2 (no quotes)")
    return value


def _backends(c: _Checker, key: str, value: object) -> tuple[BackendName, ...]:
    names = _strings(c, key, value)
    known = [b.value for b in BackendName]
    result: list[BackendName] = []
    for name in names:
        if name not in known:
            raise c.fail(key, name, "is not a backend",
                         f"use some of: {', '.join(known)}" + _did_you_mean(name, known))
        if BackendName(name) in result:
            raise c.fail(key, name, "is listed twice", "list each backend once")
        result.append(BackendName(name))
    if not result:
        raise c.fail(key, value, "must name at least one backend",
                     f"for example: backends = [{', '.join(repr(k) for k in known[:3])}]")
    return tuple(result)


def _platforms(c: _Checker, key: str, value: object) -> tuple[str, ...]:
    platforms = _strings(c, key, value)
    for platform in platforms:
        if not _PLATFORM.match(platform):
            raise c.fail(key, platform, "is not a platform",
                         "write platforms as os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8")
    return platforms


def _repository(c: _Checker, key: str, value: object) -> str:
    repo = _string(c, key, value)
    if repo != repo.lower() and _REPOSITORY.match(repo.lower()):
        raise c.fail(key, repo, "repository names must be lower case",
                     f'write repository = "{repo.lower()}"')
    if ":" in repo.rsplit("/", 1)[-1] or "@" in repo:
        raise c.fail(key, repo, "must be a repository without a tag or digest",
                     "put tags in the tags rules, e.g. tags = [\"type=raw,value=dev\"]")
    if not _REPOSITORY.match(repo):
        raise c.fail(key, repo, "is not a valid repository name",
                     "use lower-case letters, digits and separators, e.g. ghcr.io/acme/api")
    return repo


def _owner_repository(c: _Checker, key: str, value: object) -> str:
    text = _string(c, key, value)
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]*)/[A-Za-z0-9._-]+", text) or text.endswith((".git", "/")):
        raise c.fail(key, text, "must be OWNER/NAME, as in the repository's URL",
                     'write repository = "acme/moltbook"')
    return text


def _api_url(c: _Checker, key: str, value: object) -> str:
    text = _string(c, key, value).rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(?:/[^\s]*)?", text):
        raise c.fail(key, text, "must be an http(s) URL",
                     'write api-url = "https://github.example.com/api/v3" (GitHub Enterprise Server)')
    return text


def _workflow_file(c: _Checker, key: str, value: object) -> str:
    text = _string(c, key, value)
    if not re.fullmatch(r"[A-Za-z0-9._-]+\.ya?ml", text):
        raise c.fail(key, text, "must be a file name under .github/workflows ending in .yml",
                     'write workflow = "anybuild.yml"')
    return text


def _runs_on(c: _Checker, key: str, value: object) -> tuple[str, ...]:
    labels = (value,) if isinstance(value, str) else _strings(c, key, value)
    if not labels or not all(isinstance(v, str) and v.strip() for v in labels):
        raise c.fail(key, value, "must name a runner label, or an array of them",
                     'write runs-on = "ubuntu-24.04" or runs-on = ["self-hosted", "linux"]')
    return tuple(str(v) for v in labels)


def _secret_prefixes(c: _Checker, key: str, value: object) -> dict[str, str]:
    prefixes = _string_map(c, key, value)
    for host, prefix in prefixes.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", prefix) or prefix.startswith("GITHUB_"):
            raise c.fail(f"{key}.{host}", prefix,
                         "must be a secret name prefix: upper-case letters, digits and _, not GITHUB_",
                         f'write "{host}" = "REGISTRY" to use the secrets REGISTRY_USERNAME and REGISTRY_PASSWORD')
    return prefixes


def _seconds(c: _Checker, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
        raise c.fail(key, value, "must be a number of seconds above 0 and at most 600",
                     f"write {key.rsplit('.', 1)[-1]} = 5")
    return float(value)


def _non_negative_int(c: _Checker, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise c.fail(key, value, "must be a whole number of at least 0",
                     f"write {key.rsplit('.', 1)[-1]} = 600 (no quotes)")
    return value


def _choice(*options: str) -> Validator:
    def check(c: _Checker, key: str, value: object) -> str:
        text = _string(c, key, value)
        if text not in options:
            raise c.fail(key, text, f"must be one of {', '.join(options)}",
                         f'write {key.rsplit(".", 1)[-1]} = "{options[0]}"' + _did_you_mean(text, list(options)))
        return text

    return check


def _tables(c: _Checker, key: str, value: object) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise c.fail(key, value, "must be an array of tables",
                     f'write it as {key.rsplit(".", 1)[-1]} = [{{ key = "k", operator = "Exists" }}]')
    return tuple(dict(v) for v in value)


def _string_maps(c: _Checker, key: str, value: object) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise c.fail(key, value, f"must be a table of tables, not {_type_name(value)}",
                     f'write it as {key.rsplit(".", 1)[-1]} = {{ requests = {{ cpu = "1" }} }}')
    return {name: _string_map(c, f"{key}.{name}", item) for name, item in value.items()}


def _relative_path(c: _Checker, key: str, value: object) -> str:
    text = _string(c, key, value)
    if not text:
        raise c.fail(key, text, "must not be empty", 'use "." for the directory itself')
    return text


_PROJECT_FIELDS: dict[str, Validator] = {
    "name": _string, "registry": _string, "namespace": _string,
}
_BUILD_FIELDS: dict[str, Validator] = {
    "backends": _backends, "platforms": _platforms, "jobs": _positive_int,
}
_TAG_FIELDS: dict[str, Validator] = {"rules": _strings, "flavor": _strings}
_REGISTRY_FIELDS: dict[str, Validator] = {"mirrors": _strings, "insecure": _bool}
_GITHUB_FIELDS: dict[str, Validator] = {
    "repository": _owner_repository, "api-url": _api_url, "workflow": _workflow_file, "runs-on": _runs_on,
    "timeout-minutes": _positive_int, "python": _string, "anybuild": _string, "id-token": _bool,
    "secrets": _secret_prefixes, "poll-interval": _seconds,
}
_KUBERNETES_FIELDS: dict[str, Validator] = {
    "context": _string, "namespace": _string,
    "image": _string, "service_account": _string, "node_selector": _string_map,
    "tolerations": _tables, "image_pull_secrets": _strings, "registry_secret": _string,
    "resources": _string_maps, "ttl_seconds": _non_negative_int, "deadline_seconds": _positive_int,
    "context_size_limit": _string, "cache_repo": _string, "jobs": _positive_int,
    "unschedulable_grace_seconds": _non_negative_int, "upload": _choice("auto", "exec", "registry"),
    "context_repository": _repository,
}
# [backend.NAME]: one table of settings per backend that has any.
_BACKEND_TABLES: dict[str, dict[str, Validator]] = {
    "github": _GITHUB_FIELDS,
    "kubernetes": _KUBERNETES_FIELDS,
}
_IMAGE_FIELDS: dict[str, Validator] = {
    "context": _relative_path,
    "dockerfile": _relative_path,
    "repository": _repository,
    "args": _string_map,
    "target": _string,
    "platforms": _platforms,
    "tags": _strings,
    "labels": _string_map,
}


def _top_fields() -> dict[str, Validator]:
    def tables(fields: dict[str, Validator]) -> Validator:
        def check(c: _Checker, key: str, value: object) -> dict[str, dict[str, Any]]:
            if not isinstance(value, dict):
                raise c.fail(key, value, "must be a table",
                             f"write each entry as [{key}.NAME]")
            return {name: c.table(f"{key}.{name}", item, fields) for name, item in value.items()}

        return check

    return {
        "project": lambda c, k, v: c.table(k, v, _PROJECT_FIELDS),
        "build": lambda c, k, v: c.table(k, v, _BUILD_FIELDS),
        "tags": lambda c, k, v: c.table(k, v, _TAG_FIELDS),
        "registries": tables(_REGISTRY_FIELDS),
        "images": tables(_IMAGE_FIELDS),
        "backend": lambda c, k, v: c.table(
            k, v, {name: _backend_table(fields) for name, fields in _BACKEND_TABLES.items()}
        ),
    }


def _backend_table(fields: dict[str, Validator]) -> Validator:
    return lambda c, k, v: c.table(k, v, fields)


def parse_config(data: Mapping[str, Any], *, file: Path | None, root: Path) -> Config:
    """Validate a parsed TOML document and resolve paths against *root*."""
    c = _Checker(file)
    doc = c.table("", dict(data), _top_fields())
    project = ProjectSettings(**doc.get("project", {}))
    build = BuildSettings(**doc.get("build", {}))
    tags = TagSettings(**doc.get("tags", {}))
    registries = {
        host: RegistrySettings(host=host, **fields)
        for host, fields in doc.get("registries", {}).items()
    }
    images = tuple(
        _image(c, name, fields, project=project, build=build, tags=tags, root=root)
        for name, fields in doc.get("images", {}).items()
    )
    backends = doc.get("backend", {})
    github = {key.replace("-", "_"): value for key, value in backends.get("github", {}).items()}
    return Config(
        file=file, root=root, project=project, build=build, tags=tags,
        registries=registries, images=images,
        backend=BackendSettings(github=GithubSettings(**github), kubernetes=backends.get("kubernetes", {})),
    )


def _image(
    c: _Checker,
    name: str,
    fields: dict[str, Any],
    *,
    project: ProjectSettings,
    build: BuildSettings,
    tags: TagSettings,
    root: Path,
) -> ImageSpec:
    key = f"images.{name}"
    if not _NAME.match(name):
        raise c.fail(key, name, "image names must be lower case letters, digits, '.', '_' or '-'",
                     f"rename the table to [images.{re.sub(r'[^a-z0-9._-]', '-', name.lower())}]")
    context = (root / fields.get("context", name)).resolve()
    if not context.is_dir():
        raise c.fail(f"{key}.context", fields.get("context", name),
                     f"the build context {context} is not a directory",
                     f"create {context}, or set {key}.context to the image's source directory "
                     f"(relative to {root})")
    dockerfile = (context / fields.get("dockerfile", "Dockerfile")).resolve()
    if not dockerfile.is_file():
        raise c.fail(f"{key}.dockerfile", fields.get("dockerfile", "Dockerfile"),
                     f"{dockerfile} does not exist",
                     f"create it, or set {key}.dockerfile (relative to the context {context})")
    repository = fields.get("repository") or _default_repository(name, project)
    if not repository:
        raise c.fail(f"{key}.repository", None, "no repository to push to",
                     f'set {key}.repository = "ghcr.io/ORG/{name}", '
                     'or [project] registry and namespace')
    return ImageSpec(
        name=name,
        context=context,
        dockerfile=dockerfile,
        repository=repository,
        args=fields.get("args", {}),
        target=fields.get("target") or None,
        platforms=fields.get("platforms", build.platforms),
        tags=fields.get("tags", tags.rules),
        labels=fields.get("labels", {}),
    )


def _default_repository(name: str, project: ProjectSettings) -> str:
    parts = [p for p in (project.registry, project.namespace) if p]
    if not parts:
        return ""
    return "/".join([*parts, name]).lower()
