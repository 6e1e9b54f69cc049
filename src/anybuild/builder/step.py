"""What one instruction did: a :class:`StepResult` (new config and history text)."""

from __future__ import annotations

from dataclasses import dataclass

from anybuild.oci.config import ContainerConfig

__all__ = ["DEFAULT_SHELL", "StepResult"]

DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """The config after a step, its history line, and whether it may have changed files.

    ``changed_paths`` names the paths a filesystem step wrote (COPY/ADD/WORKDIR); RUN
    cannot know them, so its layer always comes from a snapshot diff.
    """

    config: ContainerConfig
    created_by: str
    filesystem: bool = False
    changed_paths: tuple[str, ...] = ()
    author: str | None = None
    cmd_set: bool | None = None  # CMD given in this stage (ENTRYPOINT clears an inherited CMD)
    # RUN where the pod has no id for USER: the image owner of the files the step made (the
    # command ran as another id), given to those without an owner recorded by the command
    made_by: tuple[int, int] | None = None
