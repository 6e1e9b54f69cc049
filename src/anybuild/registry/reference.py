"""Image references, parsed and normalised exactly as Docker's distribution/reference does.

``busybox`` → ``docker.io/library/busybox:latest``; ``index.docker.io/x/y`` →
``docker.io/x/y``; ``localhost:5000/a@sha256:…`` keeps its registry and digest.
The first path component is a registry when it contains ``.`` or ``:``, is
``localhost``, or has upper case letters; otherwise the image is on Docker Hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from anybuild.errors import IntegrityError, ReferenceFormatError
from anybuild.oci import Digest

__all__ = ["DOCKER_HUB", "DOCKER_HUB_API", "Reference"]

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_LEGACY_HUB = "index.docker.io"
_NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_IDENTIFIER = re.compile(r"^[a-f0-9]{64}$")
_TAG_ONLY = re.compile(rf"^{_TAG}$")

_HINT = (
    "write a reference as [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST], "
    "e.g. ghcr.io/acme/api:1.2 or busybox:1.36"
)


def _error(text: str, problem: str, hint: str = _HINT) -> ReferenceFormatError:
    return ReferenceFormatError(f"invalid reference format: {problem}: {text!r}", hint=hint)


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = DOCKER_HUB, name
    else:
        domain, remainder = first, rest
    if domain == _LEGACY_HUB:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = "library/" + remainder
    return domain, remainder


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse like Docker's ``ParseNormalizedNamed``; raise ReferenceFormatError naming the problem."""
        if _IDENTIFIER.match(text):
            raise _error(text, "cannot specify 64-byte hexadecimal strings as a repository name",
                         "to use an image by digest, write REPOSITORY@sha256:HEX")
        if not text:
            raise _error(text, "repository name must have at least one component")
        domain, remainder = _split_domain(text)
        remote_name = remainder.split(":", 1)[0]
        if remote_name.lower() != remote_name:
            raise _error(text, f"repository name ({remote_name}) must be lowercase",
                         f"write the repository in lower case: {_lower_name(text)!r} "
                         "(registries and Docker reject upper case names; tags may keep theirs)")
        candidate = f"{domain}/{remainder}"
        match = _REFERENCE.match(candidate)
        if match is None:
            if _REFERENCE.match(candidate.lower()):
                raise _error(text, "repository name must be lowercase")
            raise _error(text, "not a valid image reference")
        full_name, tag, digest_text = match.groups()
        if len(full_name) > _NAME_MAX:
            raise _error(text, f"repository name must not be more than {_NAME_MAX} characters")
        digest = None
        if digest_text:
            try:
                digest = Digest.parse(digest_text)
            except IntegrityError as exc:
                raise _error(text, exc.message, exc.hint) from None
        return cls(domain=domain, path=full_name[len(domain) + 1:], tag=tag, digest=digest)

    @classmethod
    def with_tag(cls, repository: str, tag: str) -> Reference:
        """``repository`` (no tag) plus *tag*, validated."""
        if not _TAG_ONLY.match(tag):
            raise _error(tag, "invalid tag format", "a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -")
        base = cls.parse(repository)
        return replace(base, tag=tag, digest=None)

    @property
    def repository(self) -> str:
        """``domain/path``, the fully qualified name."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """The host that serves the registry API (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def identifier(self) -> str:
        """What to ask the manifests endpoint for: the digest if any, else the tag (default latest)."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    def defaulted(self) -> Reference:
        """With ``latest`` when it has neither tag nor digest (Docker's TagNameOnly)."""
        return self if self.tag or self.digest else replace(self, tag="latest")

    def at(self, digest: Digest) -> Reference:
        return replace(self, tag=None, digest=digest)

    def in_domain(self, domain: str) -> Reference:
        """The same repository and identifier on another registry (a mirror)."""
        return replace(self, domain=domain)

    @property
    def familiar(self) -> str:
        """The short form Docker shows: ``busybox:1.36``, ``acme/api``, ``ghcr.io/x/y``."""
        name = self.repository
        if self.domain == DOCKER_HUB:
            name = self.path.removeprefix("library/") if self.path.count("/") == 1 else self.path
        return name + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.repository + self._suffix()



def _lower_name(text: str) -> str:
    """*text* with its name (not its tag or digest) lower-cased."""
    slash = text.rfind("/")
    ends = [i for i in (text.find(":", slash + 1), text.find("@")) if i != -1]
    end = min(ends) if ends else len(text)
    return text[:end].lower() + text[end:]
