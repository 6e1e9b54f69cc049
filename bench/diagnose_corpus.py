"""Score the diagnosis on real failure logs: public issue threads, or logs made by real tools.

Default: the corpus of logs from public issue threads (tests/diagnose/corpus/), split by
source URL into a tuning part and a test part (tests/diagnose/corpus_data.py). For each
part it prints accuracy per family and overall, how often a Dockerfile mistake was blamed
on the environment, other_backend_helps accuracy where the thread settles it, and the
share of cases without an answer. Misses are listed for the tuning part only; the test
part is reported in aggregate, so that no rule is written against it.

    .venv/bin/python bench/diagnose_corpus.py [--json]

--lab: make real failure logs with real tools, diagnose each, print accuracy and confusions.

Runs, on this machine, under a private temporary directory (see bench/diagnose_lab.py):
dockerd (classic builder and BuildKit) on private sockets, one with its data root on a
nested overlay mount; buildah and skopeo; Distribution registries (plain, htpasswd, TLS with
an untrusted, a not-yet-valid and an expired certificate) and a front that answers 429;
small tmpfs mounts that fill up; memory-limited RUN steps; user namespaces refused in a
child namespace (the host's sysctls are never touched); npm and node on the host.

    .venv/bin/python bench/diagnose_corpus.py --lab [--out DIR] [--fixtures] [--only GROUP ...]

--fixtures also copies the logs into tests/diagnose/logs/<rule-id>/ (and near-misses into
tests/diagnose/logs/near-miss/). Needs root. Exit status 1 when accuracy is below 100%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "diagnose"))

from corpus_data import Case as ThreadCase
from corpus_data import family_of, load_corpus
from diagnose_lab import DOCKER, DOCKER28, Lab, busybox_rootfs

from anybuild.diagnose import diagnose_log

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "diagnose" / "logs"


@dataclass
class Case:
    expected: str  # the rule id that must come first, or "none"
    name: str  # tool-scenario, used as the file name
    text: str
    facts: dict[str, object] | None = None
    near_miss_of: str = ""  # this rule must not fire at all


@dataclass
class Ctx:
    lab: Lab
    cases: list[Case] = field(default_factory=list)
    reg: str = ""
    auth: str = ""
    tls: str = ""
    tls_future: str = ""
    tls_expired: str = ""
    limited: str = ""
    busybox: str = ""
    docker_env: dict[str, str] = field(default_factory=dict)
    arm_binary: Path | None = None

    def add(self, expected: str, name: str, text: str, **kw: object) -> None:
        self.cases.append(Case(expected, name, text, **kw))  # type: ignore[arg-type]


def fake_arm64_binary(path: Path) -> Path:
    """An ELF header for AArch64: the kernel refuses it on x86-64 with ENOEXEC."""
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr += struct.pack("<HHIQQQIHHHHHH", 2, 0xB7, 1, 0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x80, 0x80, 0x1000)
    path.write_bytes(ehdr + phdr + b"\x00" * 8)
    path.chmod(0o755)
    return path


def context(
    ctx: Ctx, name: str, dockerfile: str, files: dict[str, str] | None = None, dockerignore: str | None = None
) -> Path:
    directory = ctx.lab.dir("contexts", name)
    (directory / "Dockerfile").write_text(dockerfile.replace("BASE", ctx.busybox))
    for rel, text in (files or {}).items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if dockerignore is not None:
        (directory / ".dockerignore").write_text(dockerignore)
    if ctx.arm_binary is not None:
        shutil.copy2(ctx.arm_binary, directory / "arm64-tool")
    return directory


def setup(ctx: Ctx) -> None:
    lab = ctx.lab
    ctx.reg = lab.registry("plain")
    htpasswd = lab.root / "htpasswd"
    lab.run("htpasswd", "-Bbc", str(htpasswd), "corpus", "not-a-secret")
    ctx.auth = lab.registry("auth", htpasswd=htpasswd)
    ctx.tls = lab.registry("tls", tls=lab.certificate("untrusted"))
    ctx.tls_future = lab.registry("future", tls=lab.certificate("future", not_before_days=400))
    ctx.tls_expired = lab.registry("expired", tls=lab.certificate("expired", not_before_days=-60))
    ctx.limited = lab.too_many_requests(ctx.reg)
    ctx.arm_binary = fake_arm64_binary(lab.root / "arm64-tool")
    insecure = [f"--insecure-registry={h}" for h in (ctx.reg, ctx.auth, ctx.limited)]
    host, log, up = lab.dockerd("main", args=tuple(insecure))
    if not up:
        raise RuntimeError("dockerd did not start:\n" + log.read_text()[-2000:])
    ctx.docker_env = {"DOCKER_HOST": host, "DOCKER_CONFIG": str(lab.dir("docker-config"))}
    tarball = busybox_rootfs(lab)
    ctx.busybox = f"{ctx.reg}/library/busybox:1.36"
    for argv in (
        (DOCKER, "import", str(tarball), ctx.busybox),
        (DOCKER, "push", ctx.busybox),
        (DOCKER, "tag", ctx.busybox, f"{ctx.auth}/library/busybox:1.36"),
    ):
        result = lab.run(*argv, env=ctx.docker_env)
        if result.rc:
            raise RuntimeError(f"{argv}: {result.out}")
    # the auth registry gets the image through a logged-in client
    cfg = lab.dir("docker-config-auth")
    env = {**ctx.docker_env, "DOCKER_CONFIG": str(cfg)}
    lab.run(DOCKER, "login", "-u", "corpus", "--password-stdin", ctx.auth, env=env, input_text="not-a-secret")
    lab.run(DOCKER, "push", f"{ctx.auth}/library/busybox:1.36", env=env)
    lab.run(DOCKER, "rmi", f"{ctx.auth}/library/busybox:1.36", env=ctx.docker_env)


GROUPS: dict[str, Callable[[Ctx], None]] = {}

# Real logs that also serve as near-misses: the log of one failure must not fire these rules.
EXTRA_NEAR_MISSES: dict[str, tuple[str, ...]] = {
    "buildah-pull-cert-not-yet-valid": ("registry-tls",),
    "skopeo-inspect-expired-cert": ("clock-skew",),
    "docker20-socket-as-nobody": ("daemon-unreachable",),
    "docker20-dead-unix-socket": ("docker-socket-permission",),
    "docker-classic-run-ls-missing": ("copy-source-missing",),
    "buildah-rootless-no-subuid-warnings-then-run-fails": ("exec-format",),
    "npm-run-rename-into-node-modules": ("npm-ebusy",),
    "docker-buildkit-run-exit3": ("buildx-boot",),
}


def group(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    GROUPS[fn.__name__] = fn
    return fn


def sh(
    ctx: Ctx,
    *argv: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
    timeout: float = 180,
) -> str:
    """Run a command as a CI job would, returning its log: the command line, then its output."""
    result = ctx.lab.run(*argv, env=env, cwd=cwd, input_text=input_text, timeout=timeout)
    shown = " ".join(a if a.strip() and " " not in a else repr(a) for a in argv)
    return f"$ {shown}\n{result.out}" + ("" if result.out.endswith("\n") else "\n") + f"(exit status {result.rc})\n"


def docker_build(ctx: Ctx, builder: str, directory: Path, *extra: str, client: str = DOCKER) -> str:
    env = {**ctx.docker_env, "DOCKER_BUILDKIT": "1" if builder == "buildkit" else "0"}
    progress = ("--progress=plain",) if builder == "buildkit" else ()
    if builder == "buildkit" and "--network" not in extra:
        progress += ("--network", "host")  # this lab's dockerd runs with --bridge=none
    return sh(ctx, client, "build", *progress, *extra, "-t", f"corpus/{directory.name}", str(directory), env=env)


DOCKERFILE_CASES = {
    # name: (expected, dockerfile, files, dockerignore, facts?)
    "run-exit3": ("run-nonzero", "FROM BASE\nRUN echo building && exit 3\n", None, None),
    "run-ls-missing": ("run-nonzero", "FROM BASE\nWORKDIR /app\nRUN ls /app/dist/index.js\n", None, None),
    "copy-missing": ("copy-source-missing", "FROM BASE\nCOPY missing.txt /app/\n", {"present.txt": "x"}, None),
    "copy-excluded": (
        "copy-source-missing",
        "FROM BASE\nCOPY config/app.env /app/\n",
        {"config/app.env": "A=1"},
        "config\n",
    ),
    "unknown-instruction": ("dockerfile-unknown-instruction", "FROM BASE\nRUNN echo hi\n", None, None),
    "copy-from-stage-missing": (
        "copy-source-missing",
        "FROM BASE AS build\nRUN mkdir -p /out && echo ok > /out/readme\nFROM BASE\nCOPY --from=build /out/app /app\n",
        None,
        None,
    ),
    "add-missing-archive": ("copy-source-missing", "FROM BASE\nADD vendor.tar.gz /opt/\n", None, None),
    "run-nslookup-no-network": ("network-dns", "FROM BASE\nRUN nslookup deb.debian.org\n", None, None),
    "exec-format": (
        "exec-format",
        'FROM BASE\nCOPY arm64-tool /usr/local/bin/tool\nRUN ["/usr/local/bin/tool", "--version"]\n',
        None,
        None,
    ),
}


@group
def docker_dockerfile(ctx: Ctx) -> None:
    """Dockerfile mistakes and in-RUN failures, with the classic builder and with BuildKit."""
    for builder in ("classic", "buildkit"):
        for name, (expected, dockerfile, files, ignore) in DOCKERFILE_CASES.items():
            directory = context(ctx, f"{builder}-{name}", dockerfile, files, ignore)
            facts: dict[str, object] | None = None
            if name == "copy-excluded":
                facts = {"dockerignore.excluded_paths": ["config"]}
            extra = ("--network", "none") if name == "run-nslookup-no-network" else ()
            text = docker_build(ctx, builder, directory, *extra)
            ctx.add(expected, f"docker-{builder}-{name}", text, facts=facts)
        dns = context(
            ctx, f"{builder}-dns", "FROM BASE\nRUN wget -q -O /tmp/index.html http://deb.debian.org/debian/\n"
        )
        ctx.add(
            "network-dns", f"docker-{builder}-run-wget-no-network", docker_build(ctx, builder, dns, "--network", "none")
        )
        # near misses: builds that print words close to the failures, then fail for another reason
        words = context(
            ctx,
            f"{builder}-words",
            (
                "FROM BASE\n"
                "RUN echo 'checking Docker Hub rate limit: 97 of 100 pulls remaining' "
                "&& echo 'storage driver: overlay2 on ext4, d_type true, overlay mounts ok' "
                "&& echo 'Killed 0 stale workers' && df -h / | head -2 "
                "&& mkdir -p node_modules/a/b && (rmdir node_modules/a 2>&1 || true) "
                "&& echo 'user namespaces: enabled (max_user_namespaces=96365)' "
                "&& echo 'Resolving deb.debian.org (deb.debian.org)... 151.101.2.132' "
                "&& echo 'fuse-overlayfs: not needed, native overlay available' "
                "&& echo 'x509: 140 CA certificates added to the bundle' "
                "&& echo 'builder: docker (default), buildx not used' "
                "&& echo 'socket /var/run/docker.sock: not mounted, no daemon needed' && exit 1\n"
            ),
        )
        text = docker_build(ctx, builder, words)
        for rule in (
            "registry-rate-limit",
            "nested-overlay",
            "overlay-dtype",
            "oom-killed",
            "npm-enotempty",
            "userns-refused",
            "network-dns",
            "fuse-missing",
            "registry-tls",
            "buildx-boot",
            "daemon-unreachable",
            "disk-full",
        ):
            ctx.add("run-nonzero", f"docker-{builder}-{rule}-words-then-exit1", text, near_miss_of=rule)
        ok = context(
            ctx, f"{builder}-ok", "FROM BASE\nCOPY present.txt /app/\nRUN echo built > /app/out\n", {"present.txt": "x"}
        )
        ctx.add("none", f"docker-{builder}-success", docker_build(ctx, builder, ok), near_miss_of="run-nonzero")
    noarg = context(ctx, "classic-from-noarg", "FROM\nRUN true\n")
    ctx.add(
        "none",
        "docker-classic-from-without-image",
        docker_build(ctx, "classic", noarg),
        near_miss_of="dockerfile-unknown-instruction",
    )
    oom = context(ctx, "classic-oom", "FROM BASE\nRUN head -c 400m /dev/zero | tail > /dev/null\n")
    ctx.add(
        "oom-killed",
        "docker-classic-run-memory-limit",
        docker_build(ctx, "classic", oom, "--memory", "48m", "--memory-swap", "48m"),
    )
    oom2 = context(ctx, "classic-oom2", "FROM BASE\nRUN x=$(head -c 300m /dev/zero | tr '\\0' a); echo ${#x}\n")
    ctx.add(
        "oom-killed",
        "docker-classic-run-memory-limit-shell",
        docker_build(ctx, "classic", oom2, "--memory", "48m", "--memory-swap", "48m"),
    )


@group
def docker_registry(ctx: Ctx) -> None:
    """Pulls and pushes refused: 429, 401, TLS, plain HTTP, a clock behind the certificate."""
    for builder in ("classic", "buildkit"):
        for expected, name, host in (
            ("registry-rate-limit", "from-429", ctx.limited),
            ("registry-auth-pull", "from-401", ctx.auth),
        ):
            directory = context(ctx, f"{builder}-{name}", f"FROM {host}/library/busybox:1.36\nRUN true\n")
            ctx.add(expected, f"docker-{builder}-{name}", docker_build(ctx, builder, directory))
    env = ctx.docker_env
    ctx.add(
        "registry-rate-limit", "docker-pull-429", sh(ctx, DOCKER, "pull", f"{ctx.limited}/library/node:20", env=env)
    )
    text = sh(ctx, DOCKER, "pull", f"{ctx.auth}/library/busybox:1.36", env=env)
    ctx.add("registry-auth-pull", "docker-pull-401", text)
    ctx.add("registry-auth-pull", "docker-pull-401-registry-auth-push", text, near_miss_of="registry-auth-push")
    # (dockerd always treats 127.0.0.0/8 as insecure, so TLS failures come from buildah/skopeo)
    ctx.lab.run(DOCKER, "tag", ctx.busybox, f"{ctx.auth}/team/app:1", env=env)
    text = sh(ctx, DOCKER, "push", f"{ctx.auth}/team/app:1", env=env)
    ctx.add("registry-auth-push", "docker-push-401", text)
    for rule in ("registry-auth-pull", "ghcr-package-permission", "kaniko-push-permission"):
        ctx.add("registry-auth-push", f"docker-push-401-{rule}", text, near_miss_of=rule)


@group
def docker_daemon(ctx: Ctx) -> None:
    """No daemon, a dead DOCKER_HOST, a socket this user may not open, no buildx."""
    dead = ctx.lab.root / "no-such-docker.sock"
    port = __import__("diagnose_lab").free_port()
    for client, tag in ((DOCKER, "docker20"), (DOCKER28, "docker28")):
        ctx.add(
            "daemon-unreachable",
            f"{tag}-dead-unix-socket",
            sh(
                ctx,
                client,
                "build",
                "-t",
                "x",
                str(context(ctx, "dead", "FROM BASE\n")),
                env={"DOCKER_HOST": f"unix://{dead}"},
            ),
        )
        ctx.add(
            "daemon-unreachable",
            f"{tag}-dead-tcp-host",
            sh(ctx, client, "version", env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"}),
        )
        ctx.add(
            "docker-socket-permission",
            f"{tag}-socket-as-nobody",
            sh(
                ctx,
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                client,
                "info",
                env={**ctx.docker_env, "HOME": "/tmp"},
            ),
        )
    directory = context(ctx, "docker28-buildkit", "FROM BASE\nRUN true\n")
    ctx.add(
        "buildx-boot", "docker28-buildkit-without-buildx", docker_build(ctx, "buildkit", directory, client=DOCKER28)
    )
    ctx.add("buildx-boot", "docker28-buildx-ls", sh(ctx, DOCKER28, "buildx", "ls", env=ctx.docker_env))


def buildah(ctx: Ctx, *args: str, root: Path | None = None, driver: str = "vfs", user: str = "") -> str:
    store = root or ctx.lab.dir("buildah")
    base = ["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"), "--storage-driver", driver]
    if user:
        base = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *base]
    home = ctx.lab.dir("home-" + (user or "root"))
    if user:
        ctx.lab.root.chmod(0o755)
        os.chown(home, int(user), int(user))
        os.chown(store, int(user), int(user))
    env = {"BUILDAH_ISOLATION": "chroot", "HOME": str(home), "XDG_RUNTIME_DIR": str(home)}
    return sh(ctx, *base, *args, env=env, timeout=240)


def bud(ctx: Ctx, directory: Path, *extra: str, **kw: object) -> str:
    return buildah(ctx, "bud", "--tls-verify=false", *extra, "-t", f"corpus/{directory.name}", str(directory), **kw)  # type: ignore[arg-type]


OCI = ("--isolation", "oci", "--runtime", "runc")


@group
def buildah_dockerfile(ctx: Ctx) -> None:
    """The same Dockerfile mistakes and RUN failures with buildah (chroot and runc isolation)."""
    for name, (expected, dockerfile, files, ignore) in DOCKERFILE_CASES.items():
        directory = context(ctx, f"buildah-{name}", dockerfile, files, ignore)
        extra = OCI if name == "exec-format" else ()
        if name == "run-nslookup-no-network":
            extra = (*OCI, "--network", "none")
        facts = {"dockerignore.excluded_paths": ["config"]} if name == "copy-excluded" else None
        ctx.add(expected, f"buildah-{name}", bud(ctx, directory, *extra), facts=facts)
    dns = context(ctx, "buildah-dns", "FROM BASE\nRUN wget -q -O- http://registry.npmjs.org/\n")
    ctx.add("network-dns", "buildah-run-wget-no-network", bud(ctx, dns, *OCI, "--network", "none"))
    oom = context(ctx, "buildah-oom", "FROM BASE\nRUN head -c 400m /dev/zero | tail > /dev/null\n")
    ctx.add("oom-killed", "buildah-run-memory-limit", bud(ctx, oom, *OCI, "--memory", "48m", "--memory-swap", "48m"))


@group
def buildah_registry(ctx: Ctx) -> None:
    """buildah and skopeo against refusing registries; TLS checked (unlike dockerd on loopback)."""
    image = "library/busybox:1.36"
    for expected, name, host in (
        ("registry-rate-limit", "from-429", ctx.limited),
        ("registry-auth-pull", "from-401", ctx.auth),
    ):
        directory = context(ctx, f"buildah-{name}", f"FROM {host}/{image}\nRUN true\n")
        ctx.add(expected, f"buildah-{name}", bud(ctx, directory, "--retry", "0"))
    for expected, name, host, tls_verify in (
        ("registry-tls", "untrusted-ca", ctx.tls, True),
        ("registry-tls", "expired-cert", ctx.tls_expired, True),
        ("clock-skew", "cert-not-yet-valid", ctx.tls_future, True),
    ):
        ctx.add(expected, f"buildah-pull-{name}", buildah(ctx, "pull", "--retry", "0", f"{host}/{image}"))
        ctx.add(expected, f"skopeo-inspect-{name}", sh(ctx, "skopeo", "inspect", f"docker://{host}/{image}"))
        del tls_verify
    ctx.add(
        "registry-tls",
        "skopeo-inspect-plain-http-as-https",
        sh(ctx, "skopeo", "inspect", f"docker://{ctx.reg}/{image}"),
    )
    ctx.add(
        "registry-auth-pull",
        "skopeo-inspect-401",
        sh(ctx, "skopeo", "inspect", "--tls-verify=false", f"docker://{ctx.auth}/{image}"),
    )
    ctx.add(
        "registry-rate-limit",
        "skopeo-copy-429",
        sh(
            ctx,
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"docker://{ctx.limited}/{image}",
            f"oci:{ctx.lab.dir('oci-429')}:busybox",
        ),
    )
    buildah(ctx, "pull", "--tls-verify=false", ctx.busybox)
    ctx.add(
        "registry-auth-push",
        "buildah-push-401",
        buildah(ctx, "push", "--tls-verify=false", ctx.busybox, f"docker://{ctx.auth}/team/app:1"),
    )
    layout = ctx.lab.dir("oci-busybox")
    sh(ctx, "skopeo", "copy", "--src-tls-verify=false", f"docker://{ctx.busybox}", f"oci:{layout}:busybox")
    ctx.add(
        "registry-auth-push",
        "skopeo-copy-push-401",
        sh(
            ctx, "skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:busybox", f"docker://{ctx.auth}/team/app:2"
        ),
    )
    ctx.add(
        "registry-tls",
        "skopeo-copy-push-untrusted-ca",
        sh(ctx, "skopeo", "copy", f"oci:{layout}:busybox", f"docker://{ctx.tls}/team/app:2"),
    )


@group
def storage(ctx: Ctx) -> None:
    """Nested overlay (dockerd, containerd, buildah), a full tmpfs, /dev/fuse missing."""
    lab = ctx.lab
    merged = lab.mount_overlay("nested")
    data = merged / "docker"
    data.mkdir()
    _, log, up = lab.dockerd("nested", data_root=data, args=("--storage-driver", "overlay2"))
    text = log.read_text(errors="replace")
    ctx.add("nested-overlay", "dockerd-overlay2-on-overlay", text)
    ctx.add(
        "nested-overlay",
        "dockerd-overlay2-on-overlay-with-facts",
        text,
        facts={"docker.storage_driver": "overlay2", "docker.data_root_fs": "overlay", "docker.data_root": str(data)},
    )
    del up
    # (on this kernel buildah's and containerd's own overlay mounts on overlay succeed;
    #  their published wordings are fixtures marked -published)
    # a tmpfs that fills up
    small = lab.mount_tmpfs("small", "24m")
    fill = context(ctx, "buildah-fill", "FROM BASE\nRUN dd if=/dev/zero of=/fill bs=1M count=64\n")
    text = bud(ctx, fill, root=small)
    ctx.add("disk-full", "buildah-run-dd-on-small-tmpfs", text)
    ctx.add(
        "disk-full",
        "buildah-run-dd-on-small-tmpfs-with-facts",
        text,
        facts={"mounts": {"/": "ext4", str(small): "tmpfs"}},
    )
    tiny = lab.mount_tmpfs("tiny", "1m")
    big = lab.root / "big.bin"
    big.write_bytes(b"\0" * 3_000_000)
    ctx.add(
        "disk-full",
        "cp-to-full-tmpfs",
        sh(ctx, "cp", str(big), str(tiny / "big.bin")),
        facts={"mounts": {"/": "ext4", str(tiny): "tmpfs"}},
    )
    # /dev/fuse hidden behind an empty /dev in a private mount namespace
    fo = lab.dir("fuse")
    for part in ("lower", "upper", "work", "merged"):
        (fo / part).mkdir(exist_ok=True)
    opts = f"lowerdir={fo}/lower,upperdir={fo}/upper,workdir={fo}/work"
    hide_fuse = (
        f"mkdir -p {fo}/realdev && mount --bind /dev {fo}/realdev && mount -t tmpfs none /dev && "
        f"for n in null zero full random urandom; do touch /dev/$n; mount --bind {fo}/realdev/$n /dev/$n; done && "
    )
    ctx.add(
        "fuse-missing",
        "fuse-overlayfs-without-dev-fuse",
        sh(
            ctx,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            hide_fuse + f"fuse-overlayfs -o {opts} {fo}/merged",
        ),
    )
    (fo / "ctx").mkdir(exist_ok=True)
    (fo / "ctx" / "Dockerfile").write_text(f"FROM {ctx.busybox}\nRUN echo hi\n")
    ctx.add(
        "fuse-missing",
        "buildah-fuse-overlayfs-without-dev-fuse",
        sh(
            ctx,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            hide_fuse + f"buildah --root {fo}/broot --runroot {fo}/brun --storage-driver overlay "
            f"--storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs bud --tls-verify=false {fo}/ctx",
        ),
    )


@group
def namespaces(ctx: Ctx) -> None:
    """User namespaces refused: max_user_namespaces=0 in a child namespace, a chroot, no subuid."""
    ctx.add(
        "userns-refused",
        "unshare-max-user-namespaces-zero",
        sh(
            ctx,
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            "echo 0 > /proc/sys/user/max_user_namespaces && unshare --user --map-root-user id",
        ),
        near_miss_of="disk-full",
    )
    ctx.add(
        "userns-refused",
        "unshare-max-user-namespaces-zero-with-facts",
        sh(
            ctx,
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            "echo 0 > /proc/sys/user/max_user_namespaces && unshare -U -r -m true",
        ),
        facts={"kernel.max_user_namespaces": 0},
    )
    jail = ctx.lab.dir("jail")
    ctx.add(
        "userns-refused",
        "unshare-user-in-chroot",
        sh(
            ctx,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount --bind / {jail} && chroot {jail} unshare --user --map-root-user id",
        ),
    )
    ctx.add(
        "userns-refused",
        "newuidmap-without-subuid",
        sh(
            ctx,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            "unshare --user sleep 2 & sleep 0.5; newuidmap $! 0 100000 65536; wait",
        ),
    )
    rootless = context(
        ctx,
        "rootless",
        'FROM scratch\nCOPY notes.txt /notes.txt\nRUN ["/notes.txt"]\n',
        {"notes.txt": "not a program\n"},
    )
    os.chown(rootless, 65534, 65534)
    ctx.add(
        "run-nonzero",
        "buildah-rootless-no-subuid-warnings-then-run-fails",
        bud(ctx, rootless, *OCI, root=ctx.lab.dir("rootless"), user="65534"),
        near_miss_of="userns-refused",
    )


NPM_SCRIPT = {
    "name": "app",
    "version": "1.0.0",
    "private": True,
    "scripts": {
        "reinstall": "node -e \"require('fs').renameSync('node_modules/.staging/left-pad', 'node_modules/left-pad')\"",
        "clean": "node -e \"require('fs').rmSync('node_modules', {recursive: true})\"",
    },
}


@group
def node(ctx: Ctx) -> None:
    """npm on the host: renames into a non-empty node_modules dir, node_modules as a mount, no DNS."""
    lab = ctx.lab
    app = lab.dir("npm-app")
    (app / "package.json").write_text(json.dumps(NPM_SCRIPT))
    for rel in ("node_modules/.staging/left-pad/index.js", "node_modules/left-pad/index.js"):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text("module.exports = 1\n")
    text = sh(ctx, "npm", "run", "reinstall", cwd=app)
    ctx.add("npm-enotempty", "npm-run-rename-into-node-modules", text)
    ctx.add(
        "npm-enotempty",
        "npm-run-rename-into-node-modules-context-facts",
        text,
        facts={"context.has_node_modules": True, "dockerignore.excludes_node_modules": False},
    )
    ctx.add(
        "npm-enotempty",
        "npm-run-rename-into-node-modules-overlay-facts",
        text,
        facts={"docker.data_root_fs": "overlay", "docker.storage_driver": "overlay2"},
    )
    ctx.add(
        "npm-ebusy",
        "npm-run-clean-node-modules-mount",
        sh(
            ctx,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount -t tmpfs none {app}/node_modules && cd {app} && npm run clean",
        ),
    )
    ctx.add(
        "npm-ebusy",
        "node-rmdir-node-modules-mount",
        sh(
            ctx,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount -t tmpfs none {app}/node_modules && cd {app} && "
            "node -e \"require('fs').rmdirSync('node_modules')\"",
        ),
    )
    ctx.add(
        "network-dns",
        "npm-install-unresolvable-registry",
        sh(
            ctx,
            "npm",
            "install",
            "left-pad",
            "--registry",
            "http://registry.invalid/",
            "--fetch-retries",
            "0",
            "--no-audit",
            "--no-fund",
            cwd=lab.dir("npm-dns"),
            env={"npm_config_cache": str(lab.dir("npm-cache"))},
        ),
    )


@group
def red_herrings(ctx: Ctx) -> None:
    """Logs with a passing problem first and the real cause after, as CI jobs print them."""
    lab = ctx.lab
    retried = lab.too_many_requests(ctx.reg, refusals=1)
    first = sh(
        ctx,
        "skopeo",
        "copy",
        "--retry-times",
        "3",
        "--src-tls-verify=false",
        f"docker://{retried}/library/busybox:1.36",
        f"oci:{lab.dir('oci-retried')}:busybox",
    )
    merged = lab.mount_overlay("nested-2")
    (merged / "docker").mkdir()
    _, log, _ = lab.dockerd("nested-2", data_root=merged / "docker", args=("--storage-driver", "overlay2"))
    ctx.add(
        "nested-overlay",
        "ci-job-429-retried-then-nested-overlay",
        first + "$ dockerd --data-root /var/lib/docker --storage-driver overlay2\n" + log.read_text(errors="replace"),
        facts={"docker.data_root_fs": "overlay"},
    )
    env = ctx.docker_env
    pulls = sh(ctx, DOCKER, "pull", f"{ctx.limited}/library/busybox:1.36", env=env)
    pulls += sh(ctx, DOCKER, "pull", ctx.busybox, env=env)
    failing = context(ctx, "herring-run", "FROM BASE\nRUN echo compiling && exit 2\n")
    ctx.add("run-nonzero", "ci-job-429-then-pull-ok-then-run-fails", pulls + docker_build(ctx, "buildkit", failing))
    dns_then_oom = context(
        ctx,
        "herring-oom",
        "FROM BASE\nRUN (wget -q -O- http://deb.debian.org/ || true) && head -c 400m /dev/zero | tail > /dev/null\n",
    )
    ctx.add(
        "oom-killed",
        "docker-classic-dns-fails-then-oom",
        docker_build(ctx, "classic", dns_then_oom, "--network", "none", "--memory", "48m", "--memory-swap", "48m"),
    )


def classify(case: Case) -> tuple[str, list[str]]:
    diagnoses = diagnose_log(case.text.splitlines(), case.facts)
    fired = [d.rule_id for d in diagnoses]
    return (diagnoses[0].rule_id if diagnoses else "none"), fired


def write_fixture(case: Case) -> Path:
    if case.near_miss_of:
        path = FIXTURES / "near-miss" / f"{case.near_miss_of}--{case.name}.log"
    else:
        path = FIXTURES / case.expected / f"{case.name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(case.text)
    facts_path = path.with_suffix(".facts.json")
    if case.facts:
        facts_path.write_text(json.dumps(case.facts, indent=2) + "\n")
    return path


def score_threads(show_test: bool = False, as_json: bool = False) -> int:
    """Score the thread corpus; misses are listed for the tuning part only."""
    cases = load_corpus()
    report: dict[str, object] = {}
    for part in ("tuning", "test"):
        chosen = [c for c in cases if c.part == part]
        report[part] = _score_part(chosen, list_misses=(part == "tuning" or show_test), quiet=as_json)
    if as_json:
        print(json.dumps(report, indent=2))
    return 0


def _score_part(cases: list[ThreadCase], *, list_misses: bool, quiet: bool) -> dict[str, object]:
    families: dict[str, list[int]] = {}
    blamed = helps_right = helps_known = no_answer = 0
    misses: list[str] = []
    for case in cases:
        diagnoses = diagnose_log(case.log.splitlines())
        root = diagnoses[0] if diagnoses else None
        got = family_of(root.rule_id) if root else "none"
        if root is None or root.rule_id == "unrecognised":
            no_answer += root is None
        ok = got == case.family
        tally = families.setdefault(case.family, [0, 0])
        tally[0] += ok
        tally[1] += 1
        if case.family == "dockerfile" and root is not None and root.other_backend_helps:
            blamed += 1
        if case.other_backend_helps is not None and root is not None and root.rule_id != "unrecognised":
            helps_known += 1
            helps_right += root.other_backend_helps is case.other_backend_helps
        if not ok:
            misses.append(f"  {case.id}: {case.family} -> {root.rule_id if root else 'nothing'}  ({case.url})")
    total = len(cases)
    right = sum(t[0] for t in families.values())
    result = {
        "cases": total,
        "accuracy": right / total if total else 0.0,
        "families": {f: {"right": t[0], "cases": t[1]} for f, t in sorted(families.items())},
        "dockerfile_blamed_on_environment": blamed,
        "other_backend_helps": {"right": helps_right, "known": helps_known},
        "no_answer": no_answer,
    }
    if not quiet:
        part = cases[0].part if cases else "?"
        print(f"== {part} part: {total} cases, {len({c.url for c in cases})} threads")
        for family, (good, count) in sorted(families.items()):
            print(f"  {family:<20} {good:>3}/{count:<3} {100 * good / count:5.1f}%")
        print(f"  overall              {right:>3}/{total:<3} {100 * right / max(total, 1):5.1f}%")
        print(f"  Dockerfile mistakes blamed on the environment: {blamed}")
        print(f"  other_backend_helps right where the thread settles it: {helps_right}/{helps_known}")
        print(f"  no answer at all: {no_answer}/{total}")
        if list_misses and misses:
            print("  misses:")
            print("\n".join(misses))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lab", action="store_true", help="make logs with real tools instead (needs root)")
    parser.add_argument("--json", action="store_true", help="thread corpus figures as JSON")
    parser.add_argument("--show-test-misses", action="store_true",
                        help="also list test-part misses (record every case you look at in LOOKED_AT.md)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the logs (default: temporary)")
    parser.add_argument("--fixtures", action="store_true", help="also write tests/diagnose/logs fixtures")
    parser.add_argument("--only", nargs="*", choices=sorted(GROUPS), help="run only these groups")
    args = parser.parse_args()
    if not args.lab:
        return score_threads(show_test=args.show_test_misses, as_json=args.json)
    if os.geteuid() != 0:
        print("needs root (dockerd, mounts, namespaces)")
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="anybuild-corpus-logs-"))
    out.mkdir(parents=True, exist_ok=True)
    lab = Lab()
    ctx = Ctx(lab=lab)
    try:
        setup(ctx)
        for name, fn in GROUPS.items():
            if args.only and name not in args.only:
                continue
            print(f"-- {name}", flush=True)
            try:
                fn(ctx)
            except Exception:
                print(f"group {name} could not finish:\n{traceback.format_exc()}")
    finally:
        lab.close()
    for case in list(ctx.cases):
        for rule in EXTRA_NEAR_MISSES.get(case.name, ()):
            ctx.cases.append(Case(case.expected, case.name, case.text, case.facts, near_miss_of=rule))
    right, confusions = 0, []
    for case in ctx.cases:
        (out / f"{case.name}{'--not-' + case.near_miss_of if case.near_miss_of else ''}.log").write_text(case.text)
        root, fired = classify(case)
        ok = root == case.expected and (not case.near_miss_of or case.near_miss_of not in fired)
        right += ok
        if not ok:
            confusions.append(
                f"  {case.name}: expected {case.expected}, got {root} (fired: {', '.join(fired) or '-'})"
                + (f"; must not fire {case.near_miss_of}" if case.near_miss_of else "")
            )
        if args.fixtures:
            write_fixture(case)
    total = len(ctx.cases)
    unique = len({case.text for case in ctx.cases})
    print(f"\n{unique} distinct real logs, {total} cases (some logs double as near-misses) in {out}")
    print(f"accuracy: {right}/{total} = {100 * right / max(total, 1):.1f}%")
    print("confusions:" if confusions else "confusions: none")
    for line in confusions:
        print(line)
    return 0 if total and right == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
