"""Before a dispatch: would the run build what is here?

A workflow run checks out a commit of the remote, not the working tree. So a
dispatch is refused, with the command to type, when HEAD is on no branch or tag
GitHub can run, when GitHub's copy of that ref is another commit, and when the
working tree has uncommitted changes a local build would include (files under an
image's context that its ``.dockerignore`` keeps, the Dockerfiles, anybuild.toml,
the workflow itself) — unless the user allows it, and is told what is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anybuild.config import Config, ImageSpec
from anybuild.dockerfile.dockerignore import DockerIgnore, find_ignore_file
from anybuild.errors import BackendError, UsageError
from anybuild.gitstate import GitState
from anybuild.process import Runner

__all__ = ["Change", "DispatchRef", "dispatch_ref", "git_changes", "included_changes", "refuse_dirty"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    path: str  # relative to the repository root, as git prints it
    status: str  # "modified", "untracked", "deleted", "added", "renamed"

    def __str__(self) -> str:
        return f"{self.path} ({self.status})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchRef:
    """The ref to dispatch on: ``name`` for the API, ``api_ref`` for ``GET /commits/{ref}``."""

    name: str  # "main" or "v1.2.3"
    api_ref: str  # "heads/main" or "tags/v1.2.3"
    kind: str  # "branch" | "tag"


def dispatch_ref(git: GitState) -> DispatchRef:
    """The branch or tag a workflow run of HEAD is dispatched on (the ref the tag rules see)."""
    if not git.sha:
        raise UsageError("this checkout has no commit: a workflow run builds a pushed commit",
                         hint="commit and push first: git add -A && git commit -m '...' && git push -u origin HEAD")
    if git.ref_tag:
        return DispatchRef(name=git.ref_tag, api_ref=f"tags/{git.ref_tag}", kind="tag")
    if git.ref_branch:
        return DispatchRef(name=git.ref_branch, api_ref=f"heads/{git.ref_branch}", kind="branch")
    raise UsageError(
        f"HEAD ({git.sha[:12]}) is detached and not tagged: a workflow runs on a branch or a tag",
        hint="switch to the branch holding it (git switch BRANCH), or tag it and push the tag "
        "(git tag v1.2.3 && git push origin v1.2.3)")


def remote_mismatch_error(ref: DispatchRef, local: str, remote: str | None, repository: str) -> UsageError:
    what = f"{ref.kind} {ref.name}"
    if remote is None:
        push = f"git push -u origin {ref.name}" if ref.kind == "branch" else f"git push origin {ref.name}"
        return UsageError(f"{what} is not on GitHub ({repository}): the run would have nothing to check out",
                          hint=f"push it first: {push}")
    return UsageError(
        f"HEAD is {local[:12]} but {repository}'s {what} is {remote[:12]}: the run would build {remote[:12]}",
        hint=(f"push HEAD first: git push origin HEAD:{ref.name}" if ref.kind == "branch"
              else f"move the tag on GitHub to HEAD (git push --force origin {ref.name}) or check out the tag")
        + ("; or, if GitHub is ahead, git pull first" if ref.kind == "branch" else ""))


_STATUS = {"M": "modified", "A": "added", "D": "deleted", "R": "renamed", "C": "copied", "?": "untracked",
           "T": "modified", "U": "conflicted"}


def git_changes(root: Path, runner: Runner) -> tuple[Path, list[Change]]:
    """The repository's top directory and its uncommitted changes (untracked files included)."""
    try:
        top = runner.run(["git", "rev-parse", "--show-toplevel"], cwd=root, timeout=30)
        done = runner.run(["git", "--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=all"],
                          cwd=root, timeout=60)
    except BackendError as exc:
        raise UsageError(f"git cannot run here ({exc.message}): the github backend builds a pushed commit",
                         hint="install git, and build from a clone of the repository") from exc
    if not top.ok or not done.ok:
        raise UsageError(f"{root} is not in a git work tree: the github backend builds a pushed commit",
                         hint="run it from a clone of the GitHub repository")
    changes: list[Change] = []
    fields = done.stdout.split("\0")
    index = 0
    while index < len(fields):
        entry = fields[index]
        index += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            index += 1  # the rename's source path follows
        letter = code[1] if code[1] not in " " else code[0]
        changes.append(Change(path=path, status=_STATUS.get(letter, "changed")))
    return Path(top.stdout.strip()), changes


def _under(path: Path, directory: Path) -> str | None:
    try:
        return path.relative_to(directory).as_posix()
    except ValueError:
        return None


def included_changes(changes: Sequence[Change], *, top: Path, config: Config, images: Sequence[ImageSpec],
                     workflow: str) -> list[Change]:
    """The changes a local build of *images* would see (so a workflow run would miss)."""
    ignores: dict[Path, DockerIgnore] = {}

    def kept(spec: ImageSpec, relative: str) -> bool:
        if spec.context not in ignores:
            ignores[spec.context] = DockerIgnore.from_file(find_ignore_file(spec.context, spec.dockerfile))
        return not ignores[spec.context].excluded(relative)

    found: list[Change] = []
    workflow_path = (top / ".github" / "workflows" / workflow).resolve()
    for change in changes:
        path = (top / change.path).resolve()
        if path in (config.file.resolve() if config.file else None, workflow_path):
            found.append(change)
            continue
        for spec in images:
            relative = _under(path, spec.context)
            if path == spec.dockerfile or (relative is not None and kept(spec, relative)):
                found.append(change)
                break
    return found


def refuse_dirty(changes: Sequence[Change]) -> UsageError:
    shown = ", ".join(str(c) for c in changes[:8]) + (f" and {len(changes) - 8} more" if len(changes) > 8 else "")
    return UsageError(
        f"uncommitted changes a local build would include, but a workflow run would not see: {shown}",
        hint="commit and push them (git add -A && git commit -m '...' && git push), or build the pushed commit "
        "without them: anybuild build --backend github --allow-dirty")
