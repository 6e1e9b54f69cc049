"""Rules learnt from the tuning part of the thread corpus, and anybuild's own failures.

Each matches causal facts (errno names, exit statuses, the component that printed the
line, a mount's filesystem type) rather than one tool's sentence.
"""

from __future__ import annotations

from anybuild.diagnose.model import Category, Matcher, Rule, Variant

__all__ = ["MORE_RULES"]

RUN_NONZERO = "run-nonzero"
BUILTIN = "`anybuild build` (its built-in builder needs no daemon, no overlay mount and no user namespace)"

INTERNAL_ERROR = Rule(
    id="anybuild-internal-error",
    title="anybuild itself failed (internal error)",
    category=Category.TOOL,
    rank=99,
    matchers=(
        Matcher(
            pattern=r"internal error: (?P<exc>\w+(?:Error|Exception))\b(?P<detail>.*)",
            keywords=("internal error",),
            examples=("error: internal error: PermissionError: [Errno 1] Operation not permitted: 'srv'",),
        ),
    ),
    cause="anybuild itself failed with an internal error ({exc}{detail}), before or while running the "
    "step: this is a bug in anybuild, not a mistake in the Dockerfile.",
    remedy="Rerun with `--debug` (accepted after the subcommand) and report the traceback; meanwhile "
    "`anybuild doctor` shows which sandboxes work here, and `--backend` chooses another backend.",
    other_backend_helps=True,
    defaults={"exc": "an exception", "detail": ""},
    explains=(RUN_NONZERO,),
)

SANDBOX_SETUP = Rule(
    id="sandbox-setup",
    title="The RUN sandbox could not be set up",
    category=Category.ENVIRONMENT,
    rank=88,
    matchers=(
        Matcher(
            pattern=r"(?P<what>unable to apply cgroup configuration|mount(?:ing)? \"?proc\"? (?:on|to) \S+"
            r"|cgroups?: .*(?:read-only file system|permission denied))"
            r".*?(?P<errno>read-only file system|operation not permitted|permission denied)",
            keywords=("cgroup", "proc"),
            examples=(
                "runc create failed: unable to apply cgroup configuration: mkdir /sys/fs/cgroup/cpuset/"
                "anybuild-1: read-only file system",
                "PermissionError: mount proc on /tmp/x/proc: Operation not permitted",
            ),
        ),
    ),
    cause="The sandbox that runs RUN steps could not be set up here ({what}: {errno}): the container "
    "forbids the mounts or cgroups it needs. The command itself never ran.",
    remedy="Run `anybuild doctor` to see which sandbox works in this container, and build with "
    f"{BUILTIN} or another backend.",
    other_backend_helps=True,
    defaults={"what": "a mount", "errno": "refused"},
    explains=(RUN_NONZERO, "anybuild-internal-error"),
)

DAEMON_START = Rule(
    id="daemon-start-failed",
    title="The Docker daemon failed to start",
    category=Category.ENVIRONMENT,
    rank=92,
    matchers=(
        Matcher(
            pattern=r"Error starting daemon: (?P<detail>.*)|failed to start daemon: (?P<detail2>.*)"
            r"|exited: dockerd \(exit status \d+|docker\.service (?:failed|entered failed state)"
            r"|\bfailed_to_start\b",
            keywords=("starting daemon", "start daemon", "exited: dockerd", "docker.service", "failed_to_start"),
            examples=(
                "FATA[0000] Error starting daemon: error initializing graphdriver: driver not supported",
                "Dec 04 10:00:01 host systemd[1]: docker.service failed.",
            ),
        ),
    ),
    cause="The Docker daemon did not start ({detail}), so every client call after it fails with "
    "\"Cannot connect to the Docker daemon\".",
    remedy="Fix what stopped dockerd (its log says: storage driver, data root, iptables), then start it; "
    f"or build without a daemon: {BUILTIN}.",
    other_backend_helps=True,
    defaults={"detail": "see the daemon's log"},
    enrich=lambda ctx: {"detail": ctx.fields.get("detail") or ctx.fields.get("detail2")
                        or "see the daemon's log"},
    explains=("daemon-unreachable", "docker-socket-permission", "overlay-dtype", "nested-overlay"),
)

ROOTLESS_OVERLAY = Rule(
    id="rootless-overlay",
    title="The kernel gives this (rootless or containerised) builder no overlay mounts",
    category=Category.ENVIRONMENT,
    rank=83,
    matchers=(
        Matcher(
            pattern=r"'overlay' is not supported over (?P<fs>(?!overlayfs|xfs\b)\w+)|'overlay' not found as a "
            r"supported filesystem|kernel does not support overlay fs"
            r"|overlay test mount .*operation not permitted"
            r"|failed to mount rootfs component &\{overlay .*operation not permitted",
            keywords=("overlay",),
            examples=(
                "Error: kernel does not support overlay fs: 'overlay' is not supported over btrfs at "
                "\"/home/u/.local/share/containers/storage/overlay\": backing file system is unsupported",
                "overlay test mount with a single lower failed mountfrom re-exec error: exit status 1: "
                "output: operation not permitted",
            ),
        ),
    ),
    cause="The builder cannot mount overlayfs here{over}: a rootless builder on a kernel without "
    "unprivileged overlay (before 5.11), a container or sandbox that forbids the mount, or a kernel "
    "without the overlay module.",
    remedy="Use fuse-overlayfs as mount_program (with /dev/fuse) or the vfs driver, or build with "
    f"{BUILTIN}.",
    other_backend_helps=True,
    enrich=lambda ctx: {"over": f" (over {ctx.fields['fs']})" if ctx.fields.get("fs") else ""},
    explains=(RUN_NONZERO,),
)

NPM_EXDEV = Rule(
    id="npm-exdev",
    title="Rename across overlay layers refused (EXDEV)",
    category=Category.ENVIRONMENT,
    rank=85,
    matchers=(
        Matcher(
            pattern=r"\bEXDEV\b(?:: cross-device link not permitted, rename '(?P<path>[^']+)')?"
            r"|cross-device link not permitted",
            keywords=("exdev", "cross-device"),
            examples=(
                "npm ERR! EXDEV: cross-device link not permitted, rename '/app/node_modules/a' -> "
                "'/app/node_modules/.a-x'",
            ),
        ),
    ),
    cause="rename() of a directory ({path}) that lives in a lower image layer failed with EXDEV: "
    "overlay storage (without redirect_dir) cannot rename such directories, and the tool did not "
    "fall back to copying.",
    remedy="Create and rename the directory in the same RUN step (or copy instead of rename), upgrade "
    f"npm (it copies on EXDEV), or build with storage that is not overlay: {BUILTIN}.",
    other_backend_helps=True,
    defaults={"path": "a directory"},
    explains=(RUN_NONZERO,),
)

KANIKO_FILESYSTEM = Rule(
    id="kaniko-filesystem",
    title="Kaniko could not unpack the base image",
    category=Category.ENVIRONMENT,
    rank=84,
    matchers=(
        Matcher(
            pattern=r"failed to get filesystem from image: (?P<detail>.+)",
            keywords=("filesystem from image",),
            examples=(
                "error building image: error building stage: failed to get filesystem from image: mkdir "
                "/usr/lib/terminfo: file exists",
            ),
        ),
    ),
    cause="Kaniko unpacks the base image over the root of the container it runs in, and that failed "
    "({detail}): the container is not Kaniko's own executor image, or something else shares it.",
    remedy="Run Kaniko from gcr.io/kaniko-project/executor in a pod of its own (anybuild's kubernetes "
    f"backend does), or build with {BUILTIN}.",
    other_backend_helps=True,
    variants=(
        Variant(
            name="download",
            when=lambda ctx: _is_transport(ctx.fields.get("detail", "")),
            title="Kaniko's download of the base image broke off",
            cause="Kaniko's download of the base image's layers broke off ({detail}); Kaniko does "
            "not retry it.",
            remedy="Retry; if it recurs, check the network path to the registry (proxy, MTU) or pull "
            "through a mirror.",
            other_backend_helps=False,
        ),
    ),
)


def _is_transport(detail: str) -> bool:
    low = detail.lower()
    return any(w in low for w in ("stream error", "timed out", "timeout", "connection reset",
                                  "error verifying size", "unexpected eof", "tcp "))


GHA_CACHE = Rule(
    id="gha-cache",
    title="GitHub Actions cache service failed",
    category=Category.TOOL,
    rank=80,
    matchers=(
        Matcher(
            pattern=r"GitHub Actions is temporarily unavailable|failed to parse error response \d{3}: <"
            r"|(?:error|ERROR|failed).*(?:artifactcache\.actions|_apis/artifactcache|/actions-cache/"
            r"|CacheService/)",
            keywords=("github actions is temporarily", "error response", "artifactcache", "actions-cache",
                      "cacheservice"),
            examples=(
                "#18 ERROR: GitHub Actions is temporarily unavailable. Please visit https://www."
                "githubstatus.com/ for the status of our services.",
                "ERROR: failed to push ghcr.io/a/b:1: failed to copy: GET https://productionresultssa0."
                "blob.core.windows.net/actions-cache/65d-2859: RESPONSE 403",
                'Error: buildx failed with: ERROR: failed to solve: Get "https://x.actions.githubusercontent.com'
                '/y/_apis/artifactcache/cache?keys=buildkit-blob-1-sha256": net/http: TLS handshake timeout',
            ),
        ),
        Matcher(  # BuildKit lost a blob of the cache it exports (or imported): the cache, not the image
            pattern=r"failed to solve: (?P<blob>blob (?:sha256:[0-9a-f]+ )?not found)",
            keywords=("failed to solve: blob",),
            examples=(
                "error: failed to solve: blob sha256:1fb11dfd9b348fa84eaf1fafa57a7ee992b6d010f1df82ada3ccd39984"
                "5fc37f not found",
            ),
        ),
        Matcher(
            pattern=r"^\s*(?:#\d+ )?>? ?exporting cache\b",
            keywords=("exporting cache",),
            examples=(" > exporting cache:",),
            primary=False,
        ),
    ),
    cause="The GitHub Actions cache (type=gha) failed: its service was unavailable or refused the "
    "request, and the cache step failed the build.",
    remedy="Rerun later; make the cache optional (cache-to: type=gha,ignore-error=true), or drop "
    "cache-from/cache-to while the service is degraded.",
    other_backend_helps=False,
    retryable=True,
    suppresses=("network-dns", "registry-auth-push"),
    explains=("network-dns", "registry-auth-push"),
    variants=(
        Variant(
            name="cache-blob-missing",
            when=lambda ctx: bool(ctx.fields.get("blob")),
            title="Build cache export failed on a missing blob",
            cause="Exporting the build cache (cache-to) failed: BuildKit no longer had a blob of the cache it "
            "was writing or had imported ({blob}), a known BuildKit cache problem; the image itself was built.",
            remedy="Rerun; set ignore-error=true on cache-to so that a cache failure does not fail the build; if "
            "it recurs, delete this workflow's GitHub Actions cache entries (or use mode=min).",
        ),
    ),
)

BUILDX_CACHE_DRIVER = Rule(
    id="buildx-docker-driver-cache",
    title="Cache export with buildx's docker driver",
    category=Category.TOOL,
    rank=90,
    matchers=(
        Matcher(
            pattern=r"cache export (?:feature )?is (?:currently )?not supported for (?:the )?docker driver",
            keywords=("not supported for",),
            examples=("ERROR: cache export feature is currently not supported for docker driver. Please "
                      "switch to a different driver (eg. \"docker buildx create --use\")",),
        ),
    ),
    cause="The build asks for a cache export (cache-to), but buildx runs with its default `docker` "
    "driver, which cannot export cache.",
    remedy="Add docker/setup-buildx-action (a docker-container builder) before the build, turn on the "
    "containerd image store, or drop cache-to.",
    other_backend_helps=False,
)

GHA_LOGIN = Rule(
    id="gha-login-credentials",
    title="Registry login got empty credentials",
    category=Category.REGISTRY,
    rank=85,
    matchers=(
        Matcher(
            pattern=r"Username and password required|Cannot perform an interactive login from a non TTY",
            keywords=("username and password", "non tty"),
            examples=("Error: Username and password required",),
        ),
    ),
    cause="The registry login step received no credentials: the secrets it names are empty in this "
    "run (pull requests from forks get no secrets, or the secret is not defined for this repository "
    "or environment).",
    remedy="Skip the login and push on pull requests from forks (if: github.event.pull_request.head."
    "repo.full_name == github.repository), or define the secrets where this workflow can read them.",
    other_backend_helps=False,
)

STAGE_NAME = Rule(
    id="dockerfile-stage-name",
    title="COPY --from names no stage",
    category=Category.DOCKERFILE,
    rank=92,
    matchers=(
        Matcher(
            pattern=r"invalid from flag value (?P<stage>[^:]*): (?:pull access denied|invalid reference"
            r"|repository does not exist)|failed to solve: (?P<stage2>[\w.-]+): pull access denied.*did you "
            r"mean",
            keywords=("from flag", "did you mean"),
            examples=("invalid from flag value bulid: pull access denied for bulid, repository does not "
                      "exist or may require 'docker login'",),
        ),
    ),
    cause="COPY --from={stage} names no stage of this Dockerfile, so the builder looked for an image "
    "of that name: a misspelt or missing stage name, not a registry problem.",
    remedy="Spell the stage name as its `FROM ... AS name`, or name a real image.",
    other_backend_helps=False,
    enrich=lambda ctx: {"stage": ctx.fields.get("stage") or ctx.fields.get("stage2") or "?"},
    suppresses=("registry-auth-pull",),
)

SCRIPT_CRLF = Rule(
    id="script-crlf",
    title="Script with Windows (CRLF) line endings",
    category=Category.DOCKERFILE,
    rank=88,
    matchers=(
        Matcher(
            pattern=r"\$'\\r': command not found|/bin/(?:ba)?sh\^M: bad interpreter"
            r"|exec (?P<script>\S+\.sh)(?:: no such file or directory| failed: No such file or directory)"
            r"|\bset: (?:line \d+: )?(?:Illegal option -\s*$|-\s*: invalid option)",
            keywords=("command not found", "^m", ".sh", "illegal option", "invalid option"),
            examples=(
                "/app/entrypoint.sh: line 3: $'\\r': command not found",
                "exec /entrypoint.sh: no such file or directory",
                "/config/entrypoint.sh: set: line 2: illegal option -",
            ),
        ),
    ),
    cause="A shell script{named} has Windows (CRLF) line endings: the kernel looks for the interpreter "
    "`/bin/sh\\r`, or the shell reads `\\r` as part of each command. This is the source, not the "
    "environment.",
    remedy="Store shell scripts with LF endings (`*.sh text eol=lf` in .gitattributes), or strip them "
    "in the Dockerfile: `RUN sed -i 's/\\r$//' /path/script.sh`.",
    other_backend_helps=False,
    enrich=lambda ctx: {"named": f" ({ctx.fields['script']})" if ctx.fields.get("script") else ""},
    explains=(RUN_NONZERO, "exec-format"),
)

COMMAND_NOT_FOUND = Rule(
    id="command-not-found",
    title="A command the Dockerfile runs does not exist (exit 127)",
    category=Category.DOCKERFILE,
    rank=30,
    matchers=(
        Matcher(
            pattern=r"(?:exit code|exit status|non-zero code)[:\s]+127\b",
            keywords=("127",),
            examples=("The command '/bin/sh -c make' returned a non-zero code: 127",),
        ),
        Matcher(
            pattern=r"/bin/(?:ba)?sh: (?:\d+: |line \d+: )?(?P<command>[^:\s]+(?: [^:]*)?): (?:command )?not "
            r"found\s*$",
            keywords=("not found",),
            examples=("/bin/sh: 1: make: not found",),
        ),
    ),
    cause="A command{named} run by the Dockerfile does not exist in the image (exit status 127): a "
    "missing package or a typo in the RUN line, not the environment.",
    remedy="Install the tool in an earlier step (or fix its name/path in the RUN line).",
    other_backend_helps=False,
    enrich=lambda ctx: {"named": f" (`{ctx.fields['command']}`)" if ctx.fields.get("command") else ""},
    explains=(RUN_NONZERO,),
)




MORE_RULES: tuple[Rule, ...] = (
    INTERNAL_ERROR,
    SANDBOX_SETUP,
    DAEMON_START,
    ROOTLESS_OVERLAY,
    NPM_EXDEV,
    KANIKO_FILESYSTEM,
    GHA_CACHE,
    BUILDX_CACHE_DRIVER,
    GHA_LOGIN,
    STAGE_NAME,
    SCRIPT_CRLF,
    COMMAND_NOT_FOUND,
)
