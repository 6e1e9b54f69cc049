"""Lint rules and backend feature limits, kept as data.

Severities: ``error`` will (almost surely) break the build or the image;
``warning`` is risky or hides failures; ``info`` is advice. ``anybuild lint``
exits non-zero only when an ``error`` is found.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from anybuild.config import BackendName

__all__ = ["BACKEND_LIMITS", "RULES", "Feature", "Limit", "Rule", "RuleId", "Severity"]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class RuleId(StrEnum):
    NODE_MODULES_IN_CONTEXT = "node-modules-in-context"
    NODE_MODULES_NOT_IGNORED = "node-modules-not-ignored"
    NPM_INSTALL_FALLBACK = "npm-install-fallback"
    APT_INSTALL_NO_YES = "apt-get-install-without-y"
    APT_UPGRADE = "apt-get-upgrade"
    BASE_UNPINNED = "base-image-unpinned"
    BASE_LATEST = "base-image-latest"
    ADD_URL_NO_CHECKSUM = "add-url-without-checksum"
    SECRET_IN_ARG_ENV = "secret-in-arg-or-env"  # noqa: S105 - a rule id
    COPY_ALL_NO_DOCKERIGNORE = "copy-context-without-dockerignore"
    CD_IN_RUN = "cd-in-run"
    MAINTAINER = "maintainer-deprecated"
    BACKEND_UNSUPPORTED = "backend-unsupported-feature"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One lint rule: ``message`` may hold ``{placeholders}`` filled per finding."""

    id: RuleId
    severity: Severity
    message: str
    hint: str
    docs: str


_RULE_LIST = (
    Rule(
        id=RuleId.NODE_MODULES_IN_CONTEXT, severity=Severity.ERROR,
        message="node_modules/ is in the build context and {instruction} copies the whole context",
        hint="add node_modules to .dockerignore; host modules over an image's node_modules cause ENOTEMPTY "
        "and wrong native binaries",
        docs="lint/node-modules",
    ),
    Rule(
        id=RuleId.NODE_MODULES_NOT_IGNORED, severity=Severity.WARNING,
        message="a Node.js context whose {ignore_file} does not exclude node_modules",
        hint="add a line `node_modules` to {ignore_file}",
        docs="lint/node-modules",
    ),
    Rule(
        id=RuleId.NPM_INSTALL_FALLBACK, severity=Severity.WARNING,
        message="`npm ci || ... npm install` hides why npm ci failed and builds from an unlocked tree",
        hint="run `npm ci` alone; fix the lock file or the cause it reports (ENOTEMPTY: ignore node_modules)",
        docs="lint/npm-install-fallback",
    ),
    Rule(
        id=RuleId.APT_INSTALL_NO_YES, severity=Severity.ERROR,
        message="`{command}` without -y asks for confirmation and aborts in a build",
        hint="write `apt-get install -y --no-install-recommends PACKAGES`",
        docs="lint/apt-get",
    ),
    Rule(
        id=RuleId.APT_UPGRADE, severity=Severity.WARNING,
        message="`{command}` makes the image depend on the day it was built",
        hint="pin a newer base image instead of upgrading packages in the build",
        docs="lint/apt-get",
    ),
    Rule(
        id=RuleId.BASE_UNPINNED, severity=Severity.WARNING,
        message="base image {image} has no tag or digest, so it means :latest",
        hint="pin a tag and ideally a digest: FROM {image}:TAG@sha256:...",
        docs="lint/pin-base-images",
    ),
    Rule(
        id=RuleId.BASE_LATEST, severity=Severity.WARNING,
        message="base image {image} uses the moving tag latest",
        hint="pin a version tag and ideally a digest",
        docs="lint/pin-base-images",
    ),
    Rule(
        id=RuleId.ADD_URL_NO_CHECKSUM, severity=Severity.WARNING,
        message="ADD {url} downloads without --checksum, so the content can change unnoticed",
        hint="add --checksum=sha256:<digest of the file>",
        docs="lint/add-checksum",
    ),
    Rule(
        id=RuleId.SECRET_IN_ARG_ENV, severity=Severity.WARNING,
        message="{keyword} {name} looks like a secret; ARG and ENV values are kept in the image history",
        hint="pass it with a secret mount: RUN --mount=type=secret,id={id} (anybuild build --secret id={id},...)",
        docs="lint/secrets",
    ),
    Rule(
        id=RuleId.COPY_ALL_NO_DOCKERIGNORE, severity=Severity.WARNING,
        message="{instruction} copies the whole context and there is no .dockerignore",
        hint="add a .dockerignore (at least .git and node_modules) so the build sends and copies less",
        docs="lint/dockerignore",
    ),
    Rule(
        id=RuleId.CD_IN_RUN, severity=Severity.INFO,
        message="`cd` in RUN only lasts for that RUN",
        hint="use WORKDIR {directory} instead",
        docs="lint/workdir",
    ),
    Rule(
        id=RuleId.MAINTAINER, severity=Severity.INFO,
        message="MAINTAINER is deprecated",
        hint='use LABEL org.opencontainers.image.authors="..."',
        docs="lint/maintainer",
    ),
    Rule(
        id=RuleId.BACKEND_UNSUPPORTED, severity=Severity.INFO,
        message="{feature} is not supported by: {backends}",
        hint="anybuild picks a backend that supports it; pass --backend to choose one yourself",
        docs="lint/backend-features",
    ),
)
RULES = MappingProxyType({rule.id: rule for rule in _RULE_LIST})


class Feature(StrEnum):
    """Dockerfile features that not every backend supports."""

    HEREDOC = "heredoc"
    RUN_MOUNT = "RUN --mount"
    RUN_MOUNT_SSH = "RUN --mount=type=ssh"
    RUN_NETWORK = "RUN --network"
    RUN_SECURITY_INSECURE = "RUN --security=insecure"
    COPY_LINK = "COPY/ADD --link"
    COPY_PARENTS = "COPY --parents"
    COPY_EXCLUDE = "COPY/ADD --exclude"
    ADD_CHECKSUM = "ADD --checksum"
    ADD_GIT = "ADD <git repository>"
    HEALTHCHECK_START_INTERVAL = "HEALTHCHECK --start-interval"


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """A backend that cannot (or only in some versions can) build a feature."""

    backend: BackendName
    feature: Feature
    note: str


_B = BackendName
_F = Feature
# Where these rows come from (checked 2026-11-28; "tested here" = on Debian 12 with its packages):
# - kubernetes runs upstream Kaniko (gcr.io/kaniko-project/executor, archived by Google in 2025), which never
#   implemented heredocs or RUN --mount. Issues still open upstream: heredocs kaniko#1713, and kaniko#3351
#   shows v1.23.2 running `/bin/sh -c <<END_OF_RUN` with the body dropped, a silent no-op; RUN --mount
#   kaniko#1568 / #969: old versions fail "Unknown flag: mount", newer ones parse the flag and run the
#   command without the mount (chainguard-forks/kaniko#35 calls it failing silently). The community fork
#   osscontainertools/kaniko added heredocs (#206, #214) and cache/secret/bind mounts (#245, #391, v1.28.0)
#   behind feature flags; these rows describe upstream.
# - docker, tested here with Docker 20.10.24 (Debian's docker.io): BuildKit (DOCKER_BUILDKIT=1) builds
#   RUN --mount=type=bind; its built-in Dockerfile frontend reads a heredoc body as instructions ("unknown
#   instruction: HELLO") and rejects COPY --link, ADD --checksum and RUN --network ("Unknown flag: ...");
#   the classic builder, which anybuild uses for a >= 23 client without buildx, also fails RUN --mount
#   ("the --mount option requires BuildKit"). Dockerfile release notes: heredocs stable in 1.4, ADD
#   --checksum / ADD <git> / HEALTHCHECK --start-interval in 1.6; COPY --parents and --exclude were labs-only
#   from 1.7 until 1.20 and 1.19 (so "1.7" needs `# syntax=docker/dockerfile:1.7-labs`, pulled from Docker
#   Hub); RUN --security=insecure is GA in 1.20 and also needs the security.insecure entitlement.
# - buildah, tested here with 1.28.2: RUN --mount (bind, cache, tmpfs) works; heredocs fail (COPY: `stat
#   "/<<EOF"`; RUN: the body is read as instructions); ADD --checksum, COPY --link, RUN --network and
#   HEALTHCHECK --start-interval are rejected ("ADD only supports the --chmod ... and --chown flag", ...).
#   Heredocs arrived in buildah 1.33 (imagebuilder#264, buildah#5092); Debian/Ubuntu packages of 1.33-1.34
#   still lacked them (buildah#5474).
BACKEND_LIMITS: tuple[Limit, ...] = (
    Limit(backend=_B.KUBERNETES, feature=_F.HEREDOC,
          note="upstream Kaniko does not implement it: a RUN heredoc runs without its body (kaniko#1713, #3351)"),
    Limit(backend=_B.KUBERNETES, feature=_F.RUN_MOUNT,
          note="upstream Kaniko does not implement it: the command runs without the mount (kaniko#1568, #969)"),
    *(Limit(backend=_B.KUBERNETES, feature=f, note="upstream Kaniko does not implement it") for f in (
        _F.RUN_MOUNT_SSH, _F.RUN_NETWORK, _F.RUN_SECURITY_INSECURE,
        _F.COPY_PARENTS, _F.COPY_EXCLUDE, _F.ADD_CHECKSUM, _F.ADD_GIT, _F.HEALTHCHECK_START_INTERVAL)),
    Limit(backend=_B.DOCKER, feature=_F.HEREDOC,
          note="needs BuildKit with Dockerfile 1.4+ (Docker >= 23 with buildx); Docker 20.10 and the classic "
          "builder read the body as instructions (unknown instruction)"),
    Limit(backend=_B.DOCKER, feature=_F.RUN_MOUNT,
          note="needs BuildKit; the classic builder (a Docker >= 23 client without buildx) fails: "
          "the --mount option requires BuildKit"),
    *(Limit(backend=_B.DOCKER, feature=f, note=f"needs a newer BuildKit (Docker >= 23 with buildx); "
            f"Docker 20.10 fails: Unknown flag: {flag}")
      for f, flag in ((_F.COPY_LINK, "link"), (_F.RUN_NETWORK, "network"))),
    *(Limit(backend=_B.DOCKER, feature=f, note="needs BuildKit with Dockerfile 1.6+") for f in (
        _F.ADD_CHECKSUM, _F.ADD_GIT, _F.HEALTHCHECK_START_INTERVAL)),
    Limit(backend=_B.DOCKER, feature=_F.COPY_PARENTS,
          note="needs Dockerfile 1.20+ (labs-only since 1.7: # syntax=docker/dockerfile:1.7-labs)"),
    Limit(backend=_B.DOCKER, feature=_F.COPY_EXCLUDE,
          note="needs Dockerfile 1.19+ (labs-only since 1.7: # syntax=docker/dockerfile:1.7-labs)"),
    Limit(backend=_B.DOCKER, feature=_F.RUN_SECURITY_INSECURE,
          note="needs Dockerfile 1.20+ and the security.insecure entitlement, which anybuild does not grant"),
    *(Limit(backend=b, feature=_F.HEREDOC, note="needs buildah >= 1.33; 1.28 (Debian 12) reads the body as "
            "instructions") for b in (_B.BUILDAH, _B.PODMAN)),
    *(Limit(backend=b, feature=f, note="not implemented by buildah") for b in (_B.BUILDAH, _B.PODMAN)
      for f in (_F.COPY_PARENTS, _F.COPY_EXCLUDE, _F.ADD_GIT, _F.RUN_SECURITY_INSECURE)),
    *(Limit(backend=b, feature=f, note="rejected by buildah 1.28 (Debian 12); newer buildah may build it")
      for b in (_B.BUILDAH, _B.PODMAN)
      for f in (_F.COPY_LINK, _F.ADD_CHECKSUM, _F.RUN_NETWORK, _F.HEALTHCHECK_START_INTERVAL)),
    Limit(backend=_B.BUILTIN, feature=_F.RUN_MOUNT_SSH, note="the built-in builder has no SSH agent forwarding"),
    Limit(backend=_B.BUILTIN, feature=_F.RUN_SECURITY_INSECURE, note="the built-in builder runs unprivileged"),
    Limit(backend=_B.BUILTIN, feature=_F.ADD_GIT, note="the built-in builder does not clone git repositories"),
    # Tested here: the built-in builder copies `COPY --parents a/b/f /out/` to /out/f, as if without the flag.
    Limit(backend=_B.BUILTIN, feature=_F.COPY_PARENTS,
          note="the built-in builder does not implement --parents yet (it would copy without the parents)"),
)
