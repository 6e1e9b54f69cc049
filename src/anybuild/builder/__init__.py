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

from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.builder.executor import BuildInputs, BuiltImage, Executor

__all__ = ["BuildEnvironment", "BuildInputs", "BuiltImage", "Executor", "build_image"]
