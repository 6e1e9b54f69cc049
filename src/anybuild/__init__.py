"""anybuild: build OCI container images anywhere, including where `docker build` breaks."""

from __future__ import annotations

import sys

__all__ = ["__version__"]

# httpx imports its own command-line client (httpx._main) when it is imported, and that pulls in
# rich.progress, rich.syntax and pygments: ~30 ms of every anybuild start, for a program anybuild
# never runs. A None entry in sys.modules makes that import fail with ImportError, which httpx
# expects (its CLI is an optional extra) and answers by defining a stub `httpx.main`. Left alone
# when something imported httpx's CLI first.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed metadata on first use (importlib.metadata costs ~35 ms)."""
    if name != "__version__":
        raise AttributeError(f"module 'anybuild' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anybuild")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0.0.0+unknown"
