"""Version strings as metadata-action reads them: Semantic Versioning 2.0 and PEP 440.

``parse_semver`` accepts what node-semver's strict ``valid()`` accepts (an optional
leading ``v``, no leading zeros, optional pre-release and build); ``parse_pep440``
accepts PEP 440's permissive grammar and normalises it (``1.1beta2`` → ``1.1b2``,
``1.0dev4`` → ``1.0.dev4``), as ``pip`` would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Pep440Version", "SemVer", "parse_pep440", "parse_semver"]

_NUM = r"0|[1-9]\d*"
_PRE_ID = rf"(?:{_NUM}|\d*[a-zA-Z-][a-zA-Z0-9-]*)"
_SEMVER = re.compile(
    rf"^v?(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_MAX_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SemVer:
    """A parsed semantic version; ``raw`` is the text it came from."""

    raw: str
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        """``major.minor.patch[-pre]``, without the ``v`` and the build metadata."""
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def fields(self) -> dict[str, str]:
        """The names a ``pattern=`` may use."""
        return {
            "raw": self.raw,
            "version": self.version,
            "major": str(self.major),
            "minor": str(self.minor),
            "patch": str(self.patch),
        }


def parse_semver(text: str) -> SemVer | None:
    """The semantic version in *text*, or None when it is not one."""
    if len(text) > 256:
        return None
    match = _SEMVER.match(text.strip())
    if match is None:
        return None
    numbers = [int(match.group(name)) for name in ("major", "minor", "patch")]
    if any(n > _MAX_SAFE_INTEGER for n in numbers):
        return None
    pre = match.group("pre")
    build = match.group("build")
    return SemVer(
        raw=text,
        major=numbers[0],
        minor=numbers[1],
        patch=numbers[2],
        prerelease=tuple(pre.split(".")) if pre else (),
        build=tuple(build.split(".")) if build else (),
    )


# The grammar of PEP 440 ("Appendix B: Parsing version strings with regular expressions").
_PEP440 = re.compile(
    r"""^\s*v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?P<pre>[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?
    (?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE_SPELLING = {"alpha": "a", "a": "a", "beta": "b", "b": "b", "c": "rc", "pre": "rc",
                 "preview": "rc", "rc": "rc"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Pep440Version:
    """A parsed PEP 440 version; ``raw`` is the text it came from."""

    raw: str
    epoch: int
    release: tuple[int, ...]
    pre: tuple[str, int] | None = None
    post: int | None = None
    dev: int | None = None
    local: str | None = None

    @property
    def version(self) -> str:
        """The normalised form (``1.0.dev4``, ``1.2.post1``, ``1.1b2``)."""
        text = f"{self.epoch}!" if self.epoch else ""
        text += ".".join(str(n) for n in self.release)
        if self.pre is not None:
            text += f"{self.pre[0]}{self.pre[1]}"
        if self.post is not None:
            text += f".post{self.post}"
        if self.dev is not None:
            text += f".dev{self.dev}"
        if self.local is not None:
            text += f"+{self.local}"
        return text

    @property
    def is_prerelease(self) -> bool:
        """True for pre-, post- and dev-releases: metadata-action tags only their full version."""
        return self.pre is not None or self.post is not None or self.dev is not None

    def fields(self) -> dict[str, str]:
        release = self.release
        return {
            "raw": self.raw,
            "version": self.version,
            "major": str(release[0]),
            "minor": str(release[1] if len(release) > 1 else 0),
            "patch": str(release[2] if len(release) > 2 else 0),
        }


def parse_pep440(text: str) -> Pep440Version | None:
    """The PEP 440 version in *text*, or None when it does not conform."""
    match = _PEP440.match(text)
    if match is None:
        return None
    pre: tuple[str, int] | None = None
    if match.group("pre"):
        pre = (_PRE_SPELLING[match.group("pre_l").lower()], int(match.group("pre_n") or 0))
    post: int | None = None
    if match.group("post"):
        post = int(match.group("post_n1") or match.group("post_n2") or 0)
    dev = int(match.group("dev_n") or 0) if match.group("dev") else None
    local = match.group("local")
    return Pep440Version(
        raw=text,
        epoch=int(match.group("epoch") or 0),
        release=tuple(int(n) for n in match.group("release").split(".")),
        pre=pre,
        post=post,
        dev=dev,
        local=re.sub(r"[-_]", ".", local.lower()) if local else None,
    )
