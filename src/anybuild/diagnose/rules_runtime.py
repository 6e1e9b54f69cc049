"""Rules for the build's runtime: the daemon connection, memory, CPU architecture, clock."""

from __future__ import annotations

from anybuild.diagnose.model import Category, Matcher, Rule, Variant

__all__ = ["RUNTIME_RULES"]

RUN_NONZERO = "run-nonzero"

DAEMON_UNREACHABLE = Rule(
    id="daemon-unreachable",
    title="Docker daemon unreachable",
    category=Category.ENVIRONMENT,
    rank=60,
    matchers=(
        Matcher(
            pattern=r"Cannot connect to the Docker daemon at (?P<host>\S+?)\.? Is the docker daemon",
            keywords=("docker daemon at",),
            examples=(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
                "daemon running?",
            ),
        ),
        Matcher(  # the docker client's own wording: whatever follows is about reaching its daemon
            pattern=r"error during connect: (?:(?:Get|Post|Head|Put|Delete) \"?)?"
            r"(?:(?:https?|tcp|unix|npipe|ssh)://(?P<host>[^/\s\"]+))?"
            r"(?:.*?dial \w+(?::)? (?:lookup (?P<lookup>[\w.-]+)(?: on \S+)?: no such host)?)?",
            keywords=("error during connect",),
            examples=(
                'error during connect: Get "http://127.0.0.1:9/v1.24/version": dial tcp '
                "127.0.0.1:9: connect: connection refused",
                'error during connect: Post "http://docker:2375/v1.24/auth": dial tcp: lookup docker on '
                "169.254.169.254:53: no such host",
            ),
        ),
        Matcher(
            pattern=r"Cannot connect to the Docker daemon(?:\.|, is) (?:Is (?:the docker daemon|'docker -d') "
            r"running|on this host)|Couldn't connect to Docker daemon at (?P<host>\S+?) - is it running"
            r"|dial unix (?P<addr>\S*docker\.sock): (?:connect: )?(?:no such file|connection refused)",
            keywords=("docker daemon", "dial unix"),
            examples=(
                "Cannot connect to the Docker daemon. Is the docker daemon running on this host?",
                "Couldn't connect to Docker daemon at http://docker:2375 - is it running?",
            ),
        ),
        Matcher(
            pattern=r"failed to connect to the docker API at (?P<host>\S+)",
            keywords=("docker api",),
            examples=("ERROR: failed to connect to the docker API at unix:///x.sock: dial unix",),
        ),
    ),
    cause="No Docker daemon answers at {host}: it is not running, DOCKER_HOST points elsewhere, "
    "or this container has no daemon at all (usual in a devpod).",
    remedy="Start the daemon or fix DOCKER_HOST/the docker context; in a devpod or CI pod, build "
    "with `anybuild build`, which needs no daemon.",
    other_backend_helps=True,
    defaults={"host": "the configured address"},
    enrich=lambda ctx: {"host": ctx.fields.get("host") or ctx.fields.get("addr") or "the configured address"},
    # "dial tcp: lookup docker ...: no such host" inside the client's connect error is the
    # daemon's address not resolving, not the build's network
    suppresses=("network-dns",),
    explains=("network-dns",),
    variants=(
        Variant(
            name="daemon-host-unknown",
            when=lambda ctx: bool(ctx.fields.get("lookup")),
            title="Docker daemon's host name does not resolve (no dind service)",
            cause="The docker client's daemon address {host} does not resolve: the host `{lookup}` exists only "
            "while a docker:dind service runs beside the job, and none is running (not declared, failed to "
            "start, or not ready yet); or DOCKER_HOST names the wrong host.",
            remedy="Declare the docker:dind service (`services: [docker:dind]`), read the service's log for why "
            "it did not start, and wait for it before the first docker command; or build with `anybuild "
            "build`, which needs no daemon.",
        ),
    ),
)

SOCKET_PERMISSION = Rule(
    id="docker-socket-permission",
    title="No permission on the Docker socket",
    category=Category.ENVIRONMENT,
    rank=75,
    matchers=(
        Matcher(
            pattern=r"permission denied while trying to connect to the Docker daemon socket at "
            r"(?P<host>\S+?):?\s",
            keywords=("daemon socket",),
            examples=(
                "permission denied while trying to connect to the Docker daemon socket at "
                'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.24/'
                'version": dial unix /var/run/docker.sock: connect: permission denied',
            ),
        ),
    ),
    cause="The daemon runs, but this user may not open its socket {host}.",
    remedy="Add the user to the socket's group (usually `docker`) and log in again, use a "
    "rootless daemon, or build with `anybuild build`, which needs no daemon.",
    other_backend_helps=True,
    defaults={"host": "/var/run/docker.sock"},
    suppresses=("daemon-unreachable",),
)

BUILDX_BOOT = Rule(
    id="buildx-boot",
    title="buildx builder failed to boot",
    category=Category.ENVIRONMENT,
    rank=70,
    matchers=(
        Matcher(
            pattern=r"failed to initialize builder (?P<builder>\S+)",
            keywords=("initialize builder",),
            examples=(
                "ERROR: failed to initialize builder mybuilder (mybuilder0): context deadline "
                "exceeded",
            ),
        ),
        Matcher(
            pattern=r"ERROR \[internal\] booting buildkit|> \[internal\] booting buildkit"
            r"|failed to (?:bootstrap|boot) builder|no valid drivers found"
            r"|(?P<missing>BuildKit is enabled but the buildx component is missing or broken"
            r"|unknown command: docker buildx|'buildx' is not a docker command)",
            keywords=("booting buildkit", "builder", "drivers found", "buildx"),
            examples=(
                " => ERROR [internal] booting buildkit                           1.3s",
                "error: no valid drivers found: unable to find docker driver",
                "ERROR: BuildKit is enabled but the buildx component is missing or broken.",
                "docker: unknown command: docker buildx",
            ),
        ),
    ),
    cause="The buildx builder {builder} could not start its BuildKit daemon (a docker-container "
    "or kubernetes driver needs a working daemon or cluster, privileges and the buildkit image).",
    remedy="Inspect it with `docker buildx inspect --bootstrap`, fall back to the default "
    "`docker` driver (`docker buildx use default`), or build with `anybuild build`.",
    other_backend_helps=True,
    defaults={"builder": ""},
    variants=(
        Variant(
            name="buildx-missing",
            when=lambda ctx: "missing" in ctx.fields,
            cause="The docker client has no buildx plugin, so it cannot build with BuildKit "
            "(Docker 23+ needs buildx for `docker build` when BuildKit is on).",
            remedy="Install the buildx plugin (the docker-buildx package, or the binary in "
            "~/.docker/cli-plugins/), or build with `anybuild build`.",
        ),
    ),
)

OOM_KILLED = Rule(
    id="oom-killed",
    title="Killed for lack of memory",
    category=Category.RESOURCE,
    rank=82,
    matchers=(
        Matcher(
            pattern=r"(?:exit code|exit status|non-zero code)[:\s]+137\b",
            keywords=("137",),  # its lines hold "err" or "non-zero" (anchors)
            examples=(
                'ERROR: process "/bin/sh -c npm run build" did not complete successfully: '
                "exit code: 137",
                "The command '/bin/sh -c make' returned a non-zero code: 137",
            ),
        ),
        Matcher(
            pattern=r"^\s*Killed\s*$|\bline \d+:\s+\d+ Killed\b|\bsignal: killed\b|\bOOMKilled\b"
            r"|Out of memory: Killed process|JavaScript heap out of memory|Killed signal terminated program"
            r"|internal compiler error: Killed|fatal error: runtime: out of memory"
            r"|<--- Last few GCs --->",  # V8 prints its last collections just before a heap OOM
            keywords=("killed", "out of memory", "last few gcs"),
            examples=(
                "Killed",
                "/bin/sh: line 1:    12 Killed                  node build.js",
                "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
                "c++: fatal error: Killed signal terminated program cc1plus",
                "44.35 <--- Last few GCs --->",
            ),
        ),
    ),
    cause="A build process ran out of memory: it was killed (SIGKILL, exit status 137, the kernel's "
    "OOM killer) or hit its own heap limit; the container's, the VM's or the pod's memory was not "
    "enough for the step.",
    remedy="Give the build more memory (the pod's limit, Docker Desktop's VM, `docker build "
    "--memory`), or make the step lighter (NODE_OPTIONS=--max-old-space-size, fewer parallel jobs: "
    "make -j2); another backend would run out the same way.",
    other_backend_helps=False,
    exit_codes=(137,),
    explains=(RUN_NONZERO,),
)

EXEC_FORMAT = Rule(
    id="exec-format",
    title="A program could not be executed (exec format error)",
    category=Category.ENVIRONMENT,
    rank=85,
    matchers=(
        Matcher(
            pattern=r"(?:exec (?P<binary>\S+?): )?exec format error|cannot execute binary file",
            keywords=("exec format", "cannot execute binary"),
            examples=(
                "exec /bin/sh: exec format error",
                "/bin/sh: 1: ./tool: cannot execute binary file: Exec format error",
            ),
        ),
        Matcher(
            pattern=r"platform \((?P<image_platform>[\w/.-]+)\) does not match the detected host platform"
            r" \((?P<host_platform>[\w/.-]+)\)",
            keywords=("does not match the detected host platform",),
            examples=(
                "WARNING: The requested image's platform (linux/arm64) does not match the detected host "
                "platform (linux/amd64) and no specific platform was requested",
            ),
            primary=False,
        ),
    ),
    cause="The kernel refused to execute {binary} (ENOEXEC): either a binary built for another CPU "
    "architecture, or a script whose first line is not a valid `#!` line (Windows CRLF line endings, a "
    "byte-order mark, no shebang at all).",
    remedy="Look at the file: `file` names a binary's architecture, `head -1 | od -c` shows a script's "
    "first line (`\\r` or a BOM). Fix the script's line endings or shebang, or build for this machine's "
    "platform; another backend on this machine runs the same kernel and fails the same way.",
    other_backend_helps=False,
    defaults={"binary": "a program"},
    explains=(RUN_NONZERO,),
    variants=(
        Variant(
            name="foreign-platform",
            when=lambda ctx: bool(ctx.fields.get("image_platform")),
            title="Binary for another CPU architecture",
            cause="A program in the image ({binary}) is built for {image_platform}, but this machine is "
            "{host_platform} and no emulator (binfmt/QEMU) is registered.",
            remedy="Build for this machine's platform (`--platform {host_platform}` or a base image for "
            "it), or register QEMU emulation (`docker run --privileged tonistiigi/binfmt --install all`).",
        ),
    ),
)

CLOCK_SKEW = Rule(
    id="clock-skew",
    title="Clock skew",
    category=Category.ENVIRONMENT,
    rank=80,
    matchers=(
        Matcher(
            pattern=r"current time (?P<now>\S+) is before (?P<valid_from>\S+)",
            keywords=("is before",),
            examples=(
                "tls: failed to verify certificate: x509: certificate has expired or is not yet "
                "valid: current time 2019-01-01T00:00:00Z is before 2024-03-01T00:00:00Z",
            ),
        ),
        Matcher(
            pattern=r"is not valid yet \(invalid for another|clock skew detected|certificate is "
            r"not yet valid|token used before issued",
            keywords=("valid yet", "skew", "not yet valid", "before issued"),
            examples=(
                "E: Release file for http://deb.debian.org/debian/dists/bookworm/InRelease is not "
                "valid yet (invalid for another 2d 3h 1min 2s).",
            ),
        ),
    ),
    cause="The clock of the machine running the build is wrong (behind the real time), so "
    "certificates and signed repository files look not yet valid.",
    remedy="Fix the clock (NTP on the host; a container shares the host's clock) and build again.",
    other_backend_helps=True,
    suppresses=("registry-tls",),
    explains=(RUN_NONZERO, "registry-tls"),
)

RUNTIME_RULES: tuple[Rule, ...] = (
    SOCKET_PERMISSION,
    DAEMON_UNREACHABLE,
    BUILDX_BOOT,
    OOM_KILLED,
    EXEC_FORMAT,
    CLOCK_SKEW,
)
