"""What the built-in builder can do here, found by doing it (``python -m anybuild.builder.trial DIR``).

``anybuild doctor`` runs this where the builder would run — in its own user namespace
when it uses one (:mod:`anybuild.builder.host`) — so that its verdict comes from the
same operations a build does, not from the presence of a binary:

- every sandbox of the ladder runs a RUN in a small trial root filesystem (a shell
  and its libraries) as uid 1000, through the same code a build uses: it must read
  ``/proc``, write to ``/tmp``, and be refused a write to ``/`` (root's, 0755) — which
  says whether USER's permission checks are the kernel's;
- the snapshotter is chosen by the same trial mount a build makes.

It prints one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from anybuild.builder.overlay import choose_snapshotter
from anybuild.builder.sandbox import RunSpec, SandboxUnavailable, probe_sandbox_facts, sandbox_ladder, sandbox_of
from anybuild.errors import AnybuildError
from anybuild.process import SubprocessRunner

__all__ = ["main", "trial_rootfs"]

_SCRIPT = ("read x < /proc/self/stat || exit 3; echo denied > /written 2>/dev/null && echo no-permission-checks; "
           "echo ok > /tmp/ok")


def _is_static(path: Path) -> bool:
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    return head.startswith(b"\x7fELF") and b"ld-linux" not in head and b"ld-musl" not in head


def _libraries(binary: str) -> list[str] | None:
    """The shared libraries *binary* loads (``ldd``), or None where that cannot be told."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    done = subprocess.run([ldd, binary], capture_output=True, text=True, check=False, timeout=20)
    if done.returncode != 0:
        return None
    found = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if "=>" in parts and parts.index("=>") + 1 < len(parts) and parts[parts.index("=>") + 1].startswith("/"):
            found.append(parts[parts.index("=>") + 1])
        elif parts and parts[0].startswith("/"):
            found.append(parts[0])
    return found


def trial_rootfs(root: Path) -> Path | None:
    """A root filesystem holding ``/bin/sh`` (a static busybox, or the host's shell and its libraries)."""
    for name in ("bin", "tmp", "etc"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n")
    busybox = shutil.which("busybox")
    if busybox and _is_static(Path(busybox)):
        shutil.copy2(busybox, root / "bin/sh")
        return root
    shell = shutil.which("sh")
    if shell is None:
        return None
    real = os.path.realpath(shell)
    libraries = _libraries(real)
    if libraries is None:
        return None
    shutil.copy2(real, root / "bin/sh")
    for library in libraries:
        target = root / library.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(library), target)
    return root


def _try(kind: Any, facts: Any, work: Path, rootfs: Path) -> dict[str, Any]:
    sandbox = sandbox_of(kind, work=work, facts=facts, runner=SubprocessRunner())
    spec = RunSpec(rootfs=rootfs, argv=("/bin/sh", "-c", _SCRIPT), env=("PATH=/bin",), cwd="/tmp", uid=1000,
                   gid=1000)
    lines: list[str] = []
    try:
        outcome = sandbox.run(spec, lines.append)
    except SandboxUnavailable as exc:
        return {"kind": str(kind), "ok": False, "why": exc.message}
    except AnybuildError as exc:
        return {"kind": str(kind), "ok": False, "why": exc.message}
    finally:
        (rootfs / "written").unlink(missing_ok=True)
    made = (rootfs / "tmp/ok").exists()
    (rootfs / "tmp/ok").unlink(missing_ok=True)
    if outcome.exit_code != 0 or not made:
        why = f"the trial RUN exited {outcome.exit_code}: {' | '.join(lines[-3:]) or 'no output'}"
        return {"kind": str(kind), "ok": False, "why": why}
    return {"kind": str(kind), "ok": True, "permission_checks": "no-permission-checks" not in lines,
            "ran_as_user": outcome.ran_as is None, "notes": list(outcome.notes)}


def main(argv: list[str]) -> int:
    data = Path(argv[1])
    data.mkdir(parents=True, exist_ok=True)
    facts = probe_sandbox_facts()
    report: dict[str, Any] = {"owners": facts.ownership.describe(), "owners_real": facts.ownership.full,
                              "evidence": list(facts.to_evidence()), "sandboxes": []}
    scratch = Path(tempfile.mkdtemp(prefix="trial-", dir=data))
    try:
        try:
            ladder = sandbox_ladder(facts, env=os.environ)
        except AnybuildError as exc:
            ladder = []
            report["ladder_error"] = exc.message
        rootfs = trial_rootfs(scratch / "rootfs")
        if rootfs is None:
            report["not_tried"] = "no static busybox, and no ldd to copy the host's shell with its libraries"
        else:
            for choice in ladder:
                report["sandboxes"].append({**_try(choice.kind, facts, scratch, rootfs), "reason": choice.reason})
        try:
            snapshotter = choose_snapshotter(os.environ, scratch, in_userns=facts.in_userns is not None)
            report["snapshotter"] = snapshotter.describe()
        except AnybuildError as exc:
            report["snapshotter"] = f"none: {exc.message}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
