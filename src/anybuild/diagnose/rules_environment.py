"""Rules for failures of the machine or the daemon: storage, namespaces, devices, memory."""

from __future__ import annotations

import re
from collections.abc import Mapping

from anybuild.diagnose.facts import Fact, fact_str, filesystem_of, storage_on_overlay
from anybuild.diagnose.model import Category, Matcher, Rule, RuleContext, Variant

__all__ = ["ENVIRONMENT_RULES"]

RUN_NONZERO = "run-nonzero"
BUILTIN = "`anybuild build` (its built-in builder needs no overlay mount and no daemon)"


def _on_overlay(ctx: RuleContext) -> bool:
    return storage_on_overlay(ctx.facts) is True


def _max_userns_zero(ctx: RuleContext) -> bool:
    return str(ctx.facts.get(Fact.KERNEL_MAX_USER_NAMESPACES, "")) == "0"


def _disk_where(ctx: RuleContext) -> Mapping[str, str]:
    path = ctx.fields.get("path", "")
    found = filesystem_of(path, ctx.facts) if path else None
    if found is not None:
        point, fstype = found
        return {"where": f"the {fstype} filesystem mounted at {point} (holding {path})"}
    data_root = fact_str(ctx.facts, Fact.DOCKER_DATA_ROOT)
    if data_root is not None:
        fstype = fact_str(ctx.facts, Fact.DOCKER_DATA_ROOT_FS) or "unknown type"
        return {"where": f"the daemon's data root {data_root} ({fstype})"}
    if path:
        return {"where": f"the filesystem holding {path}"}
    return {"where": "a filesystem the build writes to"}


NESTED_OVERLAY = Rule(
    id="nested-overlay",
    title="Overlayfs nested in overlayfs",
    category=Category.ENVIRONMENT,
    rank=95,
    matchers=(
        Matcher(
            pattern=r"(?:failed to mount overlay|mount source: \"?overlay|(?:error )?creating overlay "
            r"mount to|fstype: overlay|Type:overlay|rootfs component &\{overlay|failed to mount "
            r"/tmp/containerd-mount\d+)\b.*\binvalid argument\b",
            keywords=("invalid argument",),
            examples=(
                "failed to mount overlay: invalid argument",
                'ERROR: mount source: "overlay", target: "/var/lib/docker/overlay2/x/merged", '
                'fstype: overlay, flags: 0, data: "lowerdir=...", err: invalid argument',
                "error creating overlay mount to /var/lib/docker/overlay2/abc/merged: invalid argument",
            ),
        ),
        Matcher(  # an overlay mount(2) refused with EINVAL, in any tool's wording of the mount
            pattern=r"(?:\bmount(?:ing)? (?:an )?overlay\b|\bmount overlay:|lowerdir=).*\binvalid argument\b"
            r"|wrong fs type, bad option, bad superblock on overlay",
            keywords=("invalid argument", "bad superblock on overlay"),
            examples=(
                "Error: mounting an overlay over build context directory: creating overlay scaffolding for build "
                "context directory: mount overlay:/var/tmp/b/overlay/1/merge, data: lowerdir=/builds/x,upperdir="
                "/var/tmp/b/overlay/1/upper,workdir=/var/tmp/b/overlay/1/work: invalid argument",
                "mount: /tmp/t/temproot/bin: wrong fs type, bad option, bad superblock on overlay, missing "
                "codepage or helper program, or other error.",
            ),
        ),
        Matcher(
            pattern=r"not supported over overlayfs",
            keywords=("over overlayfs",),
            examples=(
                "Error: kernel does not support overlay fs: 'overlay' is not supported over "
                "overlayfs, a mount_program is required: backing file system is unsupported "
                "for this graph driver",
            ),
        ),
        Matcher(
            pattern=r"overlayfs: (?:filesystem on .* not supported as upperdir|"
            r"upper fs does not support|maximum fs stacking depth exceeded)",
            keywords=("overlayfs:",),
            examples=("overlayfs: filesystem on '/data/upper' not supported as upperdir",),
        ),
    ),
    cause="The builder's storage sits on overlayfs (a devpod or CI container whose own root is "
    "overlay) and the kernel refuses to mount overlayfs on top of it, so every layer mount "
    "fails with \"invalid argument\".",
    remedy="Give the builder storage that is not overlay: mount an emptyDir or volume at "
    "/var/lib/docker (or run dockerd with --storage-driver vfs or fuse-overlayfs), or build "
    f"with {BUILTIN}.",
    other_backend_helps=True,
    explains=("npm-enotempty", "npm-ebusy", "daemon-unreachable", "buildx-boot", RUN_NONZERO),
    variants=(
        Variant(
            name="confirmed-by-facts",
            when=_on_overlay,
            cause="The builder's storage is overlayfs nested in overlayfs: the facts show the data "
            "root on an overlay filesystem, and the kernel refuses to mount overlayfs on top of it, "
            "so every layer mount fails with \"invalid argument\".",
            remedy="Mount an emptyDir or volume at the data root (/var/lib/docker), or run the "
            f"daemon with --storage-driver vfs or fuse-overlayfs, or build with {BUILTIN}.",
            facts_used=(Fact.DOCKER_DATA_ROOT_FS, Fact.BUILD_STORAGE_FS),
        ),
    ),
)

OVERLAY_DTYPE = Rule(
    id="overlay-dtype",
    title="Overlay storage on a filesystem without d_type",
    category=Category.ENVIRONMENT,
    rank=96,  # above nested-overlay: its "invalid argument" mounts are this rule's symptom
    matchers=(
        Matcher(
            pattern=r"(?P<dtype>without d_type support|d_type (?:support )?is (?:not supported|disabled)"
            r"|does not support d_type|running without d_type|needs to support d_type"
            r"|not configured to support d_type|Supports d_type: false)"
            r"|/overlay2?/\w+-init/merged/dev/shm: invalid argument"
            r"|'overlay2?' is not supported over xfs\b",
            keywords=("d_type", "-init/merged/dev/shm", "not supported over xfs"),
            examples=(
                "level=error msg=\"overlay2: the backing xfs filesystem is formatted without "
                "d_type support, which leads to incorrect behavior.\"",
                "[  209.364018] overlayfs: upper fs needs to support d_type.",
                "docker: Error response from daemon: mkdir /var/lib/docker/overlay/a72-init/merged/dev/shm: "
                "invalid argument.",
                "kernel does not support overlay fs: 'overlay' is not supported over xfs at "
                "\"/var/lib/containers/storage/overlay\": backing file system is unsupported for this graph driver",
            ),
        ),
        Matcher(  # rm -r cannot empty a directory of a lower layer: the overlay shows what it cannot remove
            pattern=r"\brm: (?:cannot|can't) remove '(?P<dir>[^']+)': Directory not empty",
            keywords=("directory not empty",),
            examples=(
                "rm: cannot remove '/var/lib/yum/yumdb/a/85e19f5abe37': Directory not empty",
                "rm: can't remove '/go/src/app/.git/hooks': Directory not empty",
            ),
        ),
    ),
    cause="The storage driver needs a filesystem that reports file types (d_type), and the "
    "builder's storage is on one formatted without it (xfs with ftype=0).",
    remedy="Put the data root on a filesystem with d_type (xfs with ftype=1, ext4, or an "
    f"emptyDir), use the vfs storage driver, or build with {BUILTIN}.",
    other_backend_helps=True,
    explains=("nested-overlay", "daemon-unreachable", "npm-enotempty", "npm-exdev", "npm-ebusy", RUN_NONZERO),
    variants=(
        Variant(
            name="rm-not-empty-nested-overlay",
            when=lambda ctx: bool(ctx.fields.get("dir")) and not ctx.fields.get("dtype") and _on_overlay(ctx),
            title="Overlayfs nested in overlayfs",
            cause="rm could not empty {dir}, a directory of an earlier image layer: the builder's storage is "
            "overlayfs on overlayfs (the facts show it), where the lower layer's entries cannot be removed.",
            remedy=f"Give the builder storage that is not overlay (an emptyDir at /var/lib/docker), or build with "
            f"{BUILTIN}.",
            facts_used=(Fact.DOCKER_DATA_ROOT_FS, Fact.BUILD_STORAGE_FS),
        ),
        Variant(
            name="rm-not-empty",
            when=lambda ctx: bool(ctx.fields.get("dir")) and not ctx.fields.get("dtype"),
            title="A directory of an earlier layer cannot be removed",
            cause="rm could not empty {dir}, a directory created in an earlier image layer: `rm -r` only fails "
            "so when the filesystem keeps showing entries it has removed. Under overlay storage that is the "
            "sign of a backing filesystem without d_type (xfs formatted with ftype=0); overlay nested in "
            "overlay does the same. The RUN command is not at fault.",
            remedy="Check the daemon's storage: `docker info` (\"Supports d_type\") or `xfs_info <data root> | grep "
            f"ftype`; put the data root on ext4 or on xfs with ftype=1, or build with {BUILTIN}.",
        ),
    ),
)

_ENOTEMPTY_CONTEXT = Variant(
    name="node-modules-in-context",
    when=lambda ctx: ctx.facts.get(Fact.CONTEXT_HAS_NODE_MODULES) is True
    and ctx.facts.get(Fact.DOCKERIGNORE_EXCLUDES_NODE_MODULES) is not True,
    cause="npm could not replace node_modules ({path}) because the build context's own "
    "node_modules was copied into the image: it is not listed in .dockerignore.",
    remedy="Add `node_modules` to .dockerignore (and copy package*.json before `npm ci`); "
    "building elsewhere would fail the same way.",
    other_backend_helps=False,
    facts_used=(Fact.CONTEXT_HAS_NODE_MODULES, Fact.DOCKERIGNORE_EXCLUDES_NODE_MODULES),
)
_ENOTEMPTY_OVERLAY = Variant(
    name="nested-overlay",
    when=lambda ctx: _on_overlay(ctx) or "nested-overlay" in ctx.fired,
    cause="npm could not rename or remove a directory in node_modules ({path}): the builder's "
    "storage is overlayfs on overlayfs, where directory renames fail; node_modules is not corrupt.",
    remedy=f"Give the builder storage that is not overlay (an emptyDir at /var/lib/docker) or build "
    f"with {BUILTIN}; deleting node_modules or the lock file does not help.",
    other_backend_helps=True,
    facts_used=(Fact.DOCKER_DATA_ROOT_FS, Fact.BUILD_STORAGE_FS),
)

_ENOTEMPTY_STALE = Variant(
    name="stale-delete-directory",
    when=lambda ctx: ".DELETE" in ctx.fields.get("dest", "") or ctx.fields.get("path", "").endswith(".DELETE"),
    cause="npm could not move {path} aside: a {dest} directory left by an earlier, interrupted install "
    "is still there (npm 3 to 5 rename into it without clearing it first). Not the builder's storage.",
    remedy="Remove the leftover `node_modules/.*.DELETE` directories (or node_modules) and install again; "
    "a newer npm cleans them up itself.",
    other_backend_helps=False,
)


def _host_install(ctx: RuleContext) -> bool:
    """npm ran on a macOS or Windows file system (errno -66 is Darwin's ENOTEMPTY): no container build."""
    path = ctx.fields.get("path", "")
    return ctx.fields.get("darwin_errno") == "-66" or path.startswith("/Users/") or bool(
        re.match(r"[A-Za-z]:\\", path)
    )


_ENOTEMPTY_HOST = Variant(
    name="host-install",
    when=_host_install,
    cause="npm could not rename or remove {path} on this machine's own file system (macOS or Windows, "
    "not a container build): a node_modules left inconsistent by an earlier install, or a process "
    "(editor, watcher, antivirus) holding files in it.",
    remedy="Stop processes using the project, delete node_modules (and package-lock.json if it is "
    "inconsistent) and install again.",
    other_backend_helps=False,
)

NPM_ENOTEMPTY = Rule(
    id="npm-enotempty",
    title="npm/yarn ENOTEMPTY in node_modules",
    category=Category.ENVIRONMENT,
    rank=85,
    matchers=(
        Matcher(
            pattern=r"\bENOTEMPTY\b(?:: directory not empty, \w+ '(?P<path>[^']+)'(?: -> '(?P<dest>[^']+)')?)?",
            keywords=("enotempty",),
            examples=(
                "npm ERR! code ENOTEMPTY",
                "npm error ENOTEMPTY: directory not empty, rename '/app/node_modules/a' -> "
                "'/app/node_modules/.a-x'",
                'error An unexpected error occurred: "ENOTEMPTY: directory not empty, rmdir '
                "'/app/node_modules/b'\".",
            ),
        ),
        Matcher(  # npm's errno line: -66 is ENOTEMPTY on macOS (Linux says -39)
            pattern=r"npm ERR! errno (?P<darwin_errno>-66)\b",
            keywords=("errno -66",),
            examples=("npm ERR! errno -66",),
            primary=False,
        ),
    ),
    cause="npm (or yarn) could not rename or remove a directory in node_modules ({path}); this "
    "happens when the context's node_modules is copied into the image, or when the builder's "
    "storage is overlayfs nested in overlayfs.",
    remedy="Add `node_modules` to .dockerignore; if it is already there, the builder's storage "
    f"is nested overlay: build with {BUILTIN}. `anybuild doctor` tells which.",
    other_backend_helps=True,
    defaults={"path": "node_modules"},
    explains=(RUN_NONZERO,),
    variants=(_ENOTEMPTY_CONTEXT, _ENOTEMPTY_OVERLAY, _ENOTEMPTY_STALE, _ENOTEMPTY_HOST),
)

NPM_EBUSY = Rule(
    id="npm-ebusy",
    title="npm/yarn EBUSY on node_modules",
    category=Category.ENVIRONMENT,
    rank=85,
    matchers=(
        Matcher(
            pattern=r"\bEBUSY\b(?:: resource busy or locked, \w+ '(?P<path>[^']+)')?",
            keywords=("ebusy",),
            examples=(
                "npm ERR! code EBUSY",
                "npm ERR! EBUSY: resource busy or locked, rmdir '/app/node_modules'",
            ),
        ),
    ),
    cause="npm (or yarn) tried to remove or rename {path}, which is busy: a mount point (a "
    "volume or a `RUN --mount=type=cache` target on node_modules) or a file held open.",
    remedy="Do not mount over node_modules itself: mount the cache at ~/.npm (npm ci "
    "--cache) instead, or remove the volume on node_modules.",
    other_backend_helps=False,
    defaults={"path": "node_modules"},
    explains=(RUN_NONZERO,),
    variants=(
        Variant(
            name="nested-overlay",
            when=lambda ctx: _on_overlay(ctx) or "nested-overlay" in ctx.fired,
            cause="npm could not remove {path} (\"resource busy\") on the builder's nested "
            "overlay storage.",
            remedy=f"Give the builder storage that is not overlay, or build with {BUILTIN}.",
            other_backend_helps=True,
            facts_used=(Fact.DOCKER_DATA_ROOT_FS, Fact.BUILD_STORAGE_FS),
        ),
    ),
)

USERNS_REFUSED = Rule(
    id="userns-refused",
    title="User namespaces refused",
    category=Category.ENVIRONMENT,
    rank=85,
    matchers=(
        Matcher(
            pattern=r"unshare(?: failed)?: (?:Operation not permitted|No space left on device|"
            r"Invalid argument)",
            keywords=("unshare",),
            examples=(
                "unshare: unshare failed: Operation not permitted",
                "unshare: unshare failed: No space left on device",
            ),
        ),
        Matcher(
            pattern=r"new[ug]idmap:? .*(?:failed|not permitted|not allowed)"
            r"|cannot set ?up namespace using \\?\"?\S*new[ug]idmap",
            keywords=("newuidmap", "newgidmap"),
            examples=(
                "newuidmap: write to uid_map failed: Operation not permitted",
                "Error: cannot setup namespace using newuidmap: exit status 1",
            ),
        ),
        Matcher(
            pattern=r"no sub[ug]id ranges found|cannot find mappings for user|not enough IDs "
            r"available in the namespace|there might not be enough IDs",
            keywords=("subuid", "subgid", "mappings for user", "enough ids"),
            examples=('Error: cannot find mappings for user "ci": No subuid ranges found for user',),
        ),
        Matcher(
            pattern=r"user namespaces? (?:are|is) not (?:enabled|supported)"
            r"|CLONE_NEWUSER.*(?:not permitted|EPERM|no space)|cannot clone: (?:Operation not permitted"
            r"|Invalid argument)|\\?\"new[ug]idmap\\?\": executable file not found"
            r"|[ug]id_map`?: Operation not permitted",
            keywords=("namespace", "clone", "newuidmap", "id_map"),
            examples=(
                "Error during unshare(CLONE_NEWUSER): Operation not permitted",
                "error: user namespaces are not enabled in /proc/sys/user/max_user_namespaces",
            ),
        ),
    ),
    cause="The kernel or the container refused to create a user namespace (seccomp, "
    "max_user_namespaces, or missing /etc/subuid ranges), so rootless isolation cannot start.",
    remedy="Run `anybuild build`, which falls back to chroot or proot when user namespaces are "
    "refused; or allow them (sysctl user.max_user_namespaces > 0, add subuid/subgid ranges, a "
    "pod securityContext without the seccomp block).",
    other_backend_helps=True,
    suppresses=("disk-full",),
    explains=(RUN_NONZERO,),
    variants=(
        Variant(
            name="max-user-namespaces-zero",
            when=_max_userns_zero,
            cause="User namespaces are disabled: user.max_user_namespaces is 0, so every "
            "unshare(CLONE_NEWUSER) fails (it reports ENOSPC, not a full disk).",
            remedy="Run `anybuild build` (it falls back to chroot or proot), or raise the sysctl "
            "user.max_user_namespaces on the host.",
            facts_used=(Fact.KERNEL_MAX_USER_NAMESPACES,),
        ),
    ),
)

FUSE_MISSING = Rule(
    id="fuse-missing",
    title="/dev/fuse missing",
    category=Category.ENVIRONMENT,
    rank=85,
    matchers=(
        Matcher(
            pattern=r"fuse: device not found|/dev/fuse\b.*(?:no such file|not permitted|denied)"
            r"|(?:cannot|failed to) open /dev/fuse|fuse: failed to open",
            keywords=("fuse",),
            examples=(
                "fuse: device not found, try 'modprobe fuse' first",
                "fuse-overlayfs: cannot mount: failed to open /dev/fuse: No such file or directory",
            ),
        ),
    ),
    cause="The build needs FUSE (fuse-overlayfs or a FUSE mount) but /dev/fuse is not available "
    "in this container.",
    remedy="Expose /dev/fuse to the pod (a device plugin or `--device /dev/fuse`), use the vfs "
    f"storage driver, or build with {BUILTIN}.",
    other_backend_helps=True,
    explains=(RUN_NONZERO,),
)

KANIKO_NOT_IN_CONTAINER = Rule(
    id="kaniko-not-in-container",
    title="Kaniko run outside its container",
    category=Category.ENVIRONMENT,
    rank=90,
    matchers=(
        Matcher(
            pattern=r"kaniko should only be run inside of a container",
            keywords=("kaniko should only",),
            examples=(
                "kaniko should only be run inside of a container, run with the --force flag if "
                "you are sure you want to continue",
            ),
        ),
    ),
    cause="Kaniko's executor refused to start because it did not detect a container: it "
    "unpacks the image over its own root filesystem, so it insists on its own disposable "
    "container.",
    remedy="Run Kaniko as the gcr.io/kaniko-project/executor image in a pod (anybuild's "
    "kubernetes backend does this), or set container=docker / pass --force only in a throwaway "
    "container.",
    other_backend_helps=True,
)

DISK_FULL = Rule(
    id="disk-full",
    title="Disk full",
    category=Category.RESOURCE,
    rank=80,
    matchers=(
        Matcher(
            pattern=r"(?P<path>/[^\s:'\"]+)[^/]*?\bno space left on device",
            keywords=("no space left",),
            examples=(
                "failed to register layer: write /usr/lib/x.so: no space left on device",
                "tar: /var/lib/docker/tmp/x: Cannot write: No space left on device",
            ),
        ),
        Matcher(
            pattern=r"no space left on device|\bENOSPC\b|disk quota exceeded",
            keywords=("no space left", "enospc", "quota"),
            examples=("npm ERR! code ENOSPC", "Error: no space left on device"),
        ),
    ),
    cause="The disk filled up: {where} has no space left.",
    remedy="Free space there (`docker system prune`, `buildah rm --all`, remove old caches) or "
    "give the build a bigger volume (an emptyDir with a larger sizeLimit), then build again; "
    "another backend would fill the same disk.",
    other_backend_helps=False,
    enrich=_disk_where,
    explains=(RUN_NONZERO, "daemon-unreachable"),
)

ENVIRONMENT_RULES: tuple[Rule, ...] = (
    NESTED_OVERLAY,
    OVERLAY_DTYPE,
    NPM_ENOTEMPTY,
    NPM_EBUSY,
    USERNS_REFUSED,
    FUSE_MISSING,
    KANIKO_NOT_IN_CONTAINER,
    DISK_FULL,
)
