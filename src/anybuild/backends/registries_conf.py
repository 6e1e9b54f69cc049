"""containers-registries.conf(5) text for a build's mirrors and insecure registries (pure)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["registries_conf"]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def registries_conf(mirrors: Mapping[str, tuple[str, ...]], insecure: tuple[str, ...]) -> str:
    """registries.conf v2: unqualified names resolve on docker.io; mirrors tried first."""
    lines = ['unqualified-search-registries = ["docker.io"]', 'short-name-mode = "permissive"']
    for prefix in sorted(mirrors):
        lines += ["", "[[registry]]", f"prefix = {_quote(prefix)}", f"location = {_quote(prefix)}"]
        if prefix in insecure:
            lines.append("insecure = true")
        for mirror in mirrors[prefix]:
            lines += ["", "[[registry.mirror]]", f"location = {_quote(mirror)}"]
            if mirror in insecure:
                lines.append("insecure = true")
    for host in sorted(set(insecure) - set(mirrors)):
        lines += ["", "[[registry]]", f"location = {_quote(host)}", "insecure = true"]
    return "\n".join(lines) + "\n"
