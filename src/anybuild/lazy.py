"""A package's names loaded from its submodules on first use (PEP 562 ``__getattr__``).

``anybuild.oci`` and ``anybuild.registry`` re-export their submodules' names; importing every
submodule up front cost a no-op rebuild tens of milliseconds it never used (docs/design.md, issue 23).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["loader"]


def loader(package: str, where: Mapping[str, str], namespace: MutableMapping[str, Any]) -> Callable[[str], Any]:
    """The ``__getattr__`` of *package*: *where* maps each name to its submodule; a name once loaded is
    kept in *namespace* (the package's globals), so the next access does not come here."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__
