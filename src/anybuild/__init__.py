"""anybuild: build OCI container images anywhere, including where `docker build` breaks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anybuild")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
