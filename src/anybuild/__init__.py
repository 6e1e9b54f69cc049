"""anybuild: build OCI container images anywhere, including where `docker build` breaks."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed metadata on first use (importlib.metadata costs ~35 ms)."""
    if name != "__version__":
        raise AttributeError(f"module 'anybuild' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anybuild")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0.0.0+unknown"
