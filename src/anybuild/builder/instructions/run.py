"""RUN: the command line (shell, exec or heredoc form), its mounts, and the sandboxed run.

:func:`run_argv` is pure (BuildKit's heredoc rules: a lone ``<<EOF`` runs its
body with the shell, or as a script when it starts with ``#!``; other heredocs
are passed to the shell inline). :func:`run_step` prepares the mounts
(``secret`` files, persistent ``cache`` directories, read-only ``bind`` sources,
``tmpfs``), runs the sandbox and raises :class:`~anybuild.errors.BuildFailed`
with the line, the command, the exit code and the output tail on failure.
Secret values never reach the log: every line passes through a redactor.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.builder.emulation import ENTRYPOINT_TARGET
from anybuild.builder.inroot import RootDir
from anybuild.builder.instructions.metadata import shell_of
from anybuild.builder.owners import Ownership
from anybuild.builder.sandbox import Mount, MountKind, MountPointError, NetworkMode, RunOutcome, RunSpec, Sandbox
from anybuild.builder.users import home_of, resolve_user
from anybuild.dockerfile.instructions import MountType, Run
from anybuild.errors import BuildFailed, ContextError, UsageError
from anybuild.oci.config import ContainerConfig
from anybuild.redaction import Redactor

__all__ = ["RunContext", "run_argv", "run_step"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run_argv(instr: Run, shell: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, bytes]]:
    """(argv, files to provide) for a RUN; files map a path in the sandbox to content."""
    command = instr.command
    if command.exec_form:
        return command.args, {}
    text = command.shell_text.strip()
    if instr.heredocs and len(instr.heredocs) == 1 and text.startswith("<<"):
        doc = instr.heredocs[0]
        body = doc.text()
        if body.startswith("#!"):
            path = f"/run/anybuild/heredoc-{hashlib.sha256(body.encode()).hexdigest()[:16]}"
            return (path,), {path: body.encode()}
        return (*shell, body), {}
    if instr.heredocs:
        parts = [text]
        for doc in instr.heredocs:
            parts.append(doc.content.rstrip("\n") if doc.content else "")
            parts.append(doc.name)
        return (*shell, "\n".join(parts)), {}
    return (*shell, text), {}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext:
    """What a RUN needs from the build around it."""

    sandbox: Sandbox
    secrets: Mapping[str, bytes]
    cache_dir: Path
    scratch: Path  # per-build temporary directory
    context: Path
    stage_roots: Callable[[str], Path]  # a --mount from= name -> rootfs
    network: NetworkMode
    redactor: Redactor
    on_line: Callable[[str], None]
    file: str = "Dockerfile"
    secrets_dir: Path | None = None  # where secret files are written (the build's private tmpfs), else scratch
    ownership: Ownership = field(default_factory=Ownership.real_root)  # how cache directories get their owner
    emulator: Path | None = None  # a foreign platform's emulator, put before the command (the entry point route)
    check: Callable[[], None] = lambda: None  # raises when the build is cancelled (while a RUN waits for a cache)


def _bind_source(instr: Run, ctx: RunContext, source_text: str, stage: str | None) -> Path:
    """The host path of a bind mount's source in the context (or a stage); a missing one is the user's
    mistake, said with the value (a sandbox that cannot start over it is not the environment's fault)."""
    base = ctx.stage_roots(stage) if stage else ctx.context
    where = f"stage or image {stage!r}" if stage else f"the build context {ctx.context}"
    with RootDir.open(base) as root:
        rel = root.resolve(source_text)
        if root.lstat(rel) is None:
            climbs = ".." in source_text.split("/")
            raise ContextError(
                f"{ctx.file}:{instr.start_line}: RUN --mount=type=bind,source={source_text}: no such file or "
                f"directory in {where}",
                hint=("the source is relative to the root of " + ("the stage" if stage else "the build context")
                      + (", and .. cannot leave it" if climbs else "") + "; fix the path, or add the file"
                      + ("" if stage else " to the context")))
        return root.host_path(rel)


def _locked(cache: Path, hold: contextlib.ExitStack, ctx: RunContext, where: str) -> None:
    """Hold *cache* (``sharing=locked``) until *hold* closes: a RUN of another platform of the build, or of
    another build, that uses it at the moment is waited for, as BuildKit waits."""
    handle = hold.enter_context(cache.with_name(cache.name + ".lock").open("a"))
    said = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one open file each: threads exclude each other too
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if not said:
            ctx.on_line(f"anybuild: {where}: waiting for another RUN to release its cache mount (sharing=locked)")
            said = True
        ctx.check()
        time.sleep(0.1)


def _mounts(instr: Run, ctx: RunContext, workdir: Path, secrets_dir: Path,
            hold: contextlib.ExitStack | None = None) -> list[Mount]:
    mounts: list[Mount] = []
    for spec in instr.mounts:
        match spec.type:
            case MountType.SECRET:
                secret_id = spec.id or (Path(spec.target).name if spec.target else "")
                target = spec.target or f"/run/secrets/{secret_id}"
                if secret_id not in ctx.secrets:
                    if spec.required:
                        raise UsageError(f"{ctx.file}:{instr.start_line}: RUN --mount=type=secret,id={secret_id} "
                                         "is required, and no --secret gives it",
                                         hint=f"pass --secret id={secret_id},src=FILE (or env=VARIABLE)")
                    continue
                path = secrets_dir / f"secret-{hashlib.sha256(secret_id.encode()).hexdigest()[:12]}"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(ctx.secrets[secret_id])
                mounts.append(Mount(kind=MountKind.BIND, target=target, source=path, readonly=True))
            case MountType.CACHE:
                target = spec.target or ""
                cache = _cache_dir(spec.id or target, spec.uid, spec.gid, spec.mode, ctx)
                if spec.sharing == "locked" and hold is not None:
                    _locked(cache, hold, ctx, f"{ctx.file}:{instr.start_line}")
                mounts.append(Mount(kind=MountKind.BIND, target=target, source=cache, readonly=bool(spec.readonly)))
            case MountType.TMPFS:
                size = ram_in_bytes(spec.size, f"{ctx.file}:{instr.start_line}") if spec.size else None
                mounts.append(Mount(kind=MountKind.TMPFS, target=spec.target or "/tmp", size=size))
            case MountType.BIND:
                source = _bind_source(instr, ctx, spec.source or ".", spec.from_)
                writable = spec.readonly is False
                if writable:  # `rw`: writes are discarded (BuildKit), never made to the context or a stage
                    source = _scratch_copy(source, workdir / f"rw-{len(mounts)}")
                mounts.append(Mount(kind=MountKind.BIND, target=spec.target or "/", source=source,
                                    readonly=not writable))
            case _:
                raise BuildFailed(f"{ctx.file}:{instr.start_line}: RUN --mount=type={spec.type} is not supported "
                                  "by the builtin builder", hint="use the docker backend for ssh mounts")
    return mounts


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)


def ram_in_bytes(text: str, where: str) -> int:
    """A size as docker/go-units RAMInBytes reads it (``128m``, ``1g``, ``512kb``: powers of 1024)."""
    found = _SIZE.match(text.strip())
    if found is None:
        raise BuildFailed(f"{where}: invalid size {text!r} for a tmpfs mount", hint="write e.g. size=128m")
    unit = found.group(2).lower()
    return int(float(found.group(1)) * 1024 ** ("kmgtp".index(unit) + 1 if unit else 0))


def _cache_dir(cache_id: str, uid: str | None, gid: str | None, mode: str | None, ctx: RunContext) -> Path:
    """The persistent directory of a cache mount, made on first use, as BuildKit makes it.

    Without uid, gid or mode BuildKit mounts an empty directory kept under the mount's id. With any
    of them it mounts a directory made by a file operation (mkdir /cache, mode, uid:gid; defaults 0755,
    0, 0) and keys the cache by the id *and* that directory (mounts.getRefCacheDir: id + ":" + base
    ref), so RUNs that share an id but not the options do not share files. The mkdir is subject to
    the daemon's umask (022): mode=0777 gives 0755 in Docker's image, as here.
    """
    settings = None if uid is None and gid is None and mode is None else \
        (int(uid or 0), int(gid or 0), (int(mode, 8) if mode else 0o755) & 0o7777 & ~0o022)
    key = cache_id if settings is None else f"{cache_id}:{settings[0]}:{settings[1]}:{settings[2]:o}"
    cache = ctx.cache_dir / hashlib.sha256(key.encode()).hexdigest()[:24]
    if not cache.exists():
        made = Path(tempfile.mkdtemp(prefix=".new-", dir=ctx.cache_dir))  # whole or not at all
        owner, perms = (settings[:2], settings[2]) if settings else ((0, 0), 0o755)
        ctx.ownership.give(str(made), *owner)
        made.chmod(perms)
        try:
            made.rename(cache)
        except OSError:  # made meanwhile by a build beside this one
            shutil.rmtree(made, ignore_errors=True)
    return cache


def _scratch_copy(source: Path, copy: Path) -> Path:
    """A throw-away copy of *source* (symlinks copied as links, never followed)."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, copy, symlinks=True)
    else:
        shutil.copy2(source, copy, follow_symlinks=False)
    return copy


def _program_in(root: RootDir, name: str, path: str, cwd: str) -> str:
    """Where the kernel would find *name* in the image (an emulator does not search PATH itself)."""
    if "/" in name:
        return name if name.startswith("/") else posixpath.join(cwd, name)
    for directory in path.split(":"):
        candidate = posixpath.join(directory or cwd, name)
        if root.lstat(root.resolve(candidate)) is not None:
            return candidate
    return name


def run_step(instr: Run, config: ContainerConfig, env: Mapping[str, str], rootfs: Path, ctx: RunContext) -> RunOutcome:
    """Run one RUN instruction in *rootfs*; raise BuildFailed when it exits non-zero."""
    argv, files = run_argv(instr, shell_of(config))
    environment = dict(env)
    environment.setdefault("PATH", DEFAULT_PATH)
    with RootDir.open(rootfs) as root:
        ident = resolve_user(config.user, root)
        if "HOME" not in environment:  # runc sets it after the rest, from /etc/passwd: every sandbox does
            environment["HOME"] = home_of(config.user, root)
        cwd = config.working_dir or "/"
        if root.lstat(root.resolve(cwd)) is None:
            os.close(root.open_dir(root.resolve(cwd), create=True))
    network = NetworkMode(instr.network) if instr.network else ctx.network
    with tempfile.TemporaryDirectory(prefix="run-", dir=ctx.scratch) as tmp, \
            tempfile.TemporaryDirectory(prefix="secrets-", dir=ctx.secrets_dir or ctx.scratch) as secrets, \
            contextlib.ExitStack() as hold:
        workdir = Path(tmp)
        mounts = _mounts(instr, ctx, workdir, Path(secrets), hold)
        for index, (path, content) in enumerate(files.items()):
            script = workdir / f"script-{index}"
            script.write_bytes(content)
            script.chmod(0o755)
            mounts.append(Mount(kind=MountKind.BIND, target=path, source=script, readonly=True))
        if ctx.emulator is not None:
            with RootDir.open(rootfs) as root:
                program = _program_in(root, argv[0], environment["PATH"], cwd)
            mounts.append(Mount(kind=MountKind.BIND, target=ENTRYPOINT_TARGET, source=ctx.emulator, readonly=True))
            argv = (ENTRYPOINT_TARGET, "-0", argv[0], program, *argv[1:])
        spec = RunSpec(rootfs=rootfs, argv=argv, env=tuple(f"{k}={v}" for k, v in environment.items()), cwd=cwd,
                       uid=ident.uid, gid=ident.gid, groups=ident.groups, network=network, mounts=tuple(mounts))
        try:
            outcome = ctx.sandbox.run(spec, lambda line: ctx.on_line(ctx.redactor(line)))
        except MountPointError as exc:
            raise ContextError(f"{ctx.file}:{instr.start_line}: {exc.message}", hint=exc.hint) from exc
    if outcome.exit_code != 0:
        command = " ".join(argv) if instr.command.exec_form else instr.command.shell_text
        tail = [ctx.redactor(line) for line in outcome.tail]
        hint = "read the output above; fix the command or the files it needs"
        if ctx.emulator is not None and outcome.exit_code in (126, 127):
            hint = (f"this RUN ran under {ctx.emulator.name} as an explicit entry point, which emulates the first "
                    "program only: a foreign program it starts cannot run (exec format error). Build where a "
                    "binfmt_misc handler can be had: Linux 6.7+ with user namespaces, or the host's (Debian "
                    "package qemu-user-static with binfmt-support); see `anybuild doctor`")
        raise BuildFailed(
            f"{ctx.file}:{instr.start_line}: RUN {ctx.redactor(command)} failed with exit code {outcome.exit_code}",
            hint=hint,
            diagnosis={"file": ctx.file, "line": instr.start_line, "command": ctx.redactor(command),
                       "exit_code": outcome.exit_code, "tail": tail, "sandbox": str(outcome.sandbox)},
        )
    return outcome
