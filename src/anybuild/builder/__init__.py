"""The built-in daemonless builder.

::

    result = build_image(request, sink)            # anybuild.builder.build

Layers of the package, bottom up: :mod:`.inroot` (paths resolved inside a root,
never escaping it), :mod:`.rootfs` (unpacking layers safely), :mod:`.snapshot`
(scan / diff) and :mod:`.layer` (deterministic layer tars), :mod:`.sandbox` (RUN
isolation: runc, unshare, chroot, proot), :mod:`.instructions` (one module per
instruction group), :mod:`.executor` (stages and steps) and :mod:`.build`
(outputs and the environment around a build).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anybuild.builder.build import BuildEnvironment, build_image
    from anybuild.builder.executor import BuildInputs, BuiltImage, Executor

__all__ = ["BuildEnvironment", "BuildInputs", "BuiltImage", "Executor", "build_image"]


def __getattr__(name: str) -> Any:
    """The package's names, loaded on first use: importing one light module of the builder
    (``.host``, whose namespace choice every build's probe makes) does not load all of it."""
    if name in ("BuildEnvironment", "build_image"):
        from anybuild.builder import build

        return getattr(build, name)
    if name in ("BuildInputs", "BuiltImage", "Executor"):
        from anybuild.builder import executor

        return getattr(executor, name)
    raise AttributeError(f"module 'anybuild.builder' has no attribute {name!r}")
