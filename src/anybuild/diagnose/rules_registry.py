"""Rules for talking to registries and the network: limits, credentials, TLS, DNS."""

from __future__ import annotations

from collections.abc import Callable

from anybuild.diagnose.model import Category, Matcher, Phase, Rule, RuleContext, Variant

__all__ = ["REGISTRY_RULES"]

RUN_NONZERO = "run-nonzero"
DOCKER_HUB_HOSTS = ("docker.io", "registry-1.docker.io", "index.docker.io", "auth.docker.io")


def _registry_is(*hosts: str) -> Callable[[RuleContext], bool]:
    def check(ctx: RuleContext) -> bool:
        return ctx.fields.get("registry", "").lower() in hosts

    return check


def _names(ctx: RuleContext) -> dict[str, str]:
    """`` host`` and `` image`` suffixes for sentences, empty when the log did not say."""
    registry = ctx.fields.get("registry", "")
    image = ctx.fields.get("image", "")
    return {"host": f" {registry}" if registry else "", "of_image": f" of {image}" if image else ""}


def _docker_hub(ctx: RuleContext) -> bool:
    return (
        ctx.fields.get("registry", "").lower() in DOCKER_HUB_HOSTS
        or "hub" in ctx.fields.get("limit_text", "").lower()
        or "pull rate limit" in ctx.fields.get("limit_text", "").lower()
    )


RATE_LIMIT = Rule(
    id="registry-rate-limit",
    title="Registry rate limit (HTTP 429)",
    category=Category.REGISTRY,
    rank=70,
    matchers=(
        Matcher(
            pattern=r"toomanyrequests(?::\s*(?P<limit_text>[^.]*))?",
            keywords=("toomanyrequests",),
            examples=(
                "Error response from daemon: toomanyrequests: You have reached your pull rate "
                "limit. You may increase the limit by authenticating and upgrading",
            ),
        ),
        Matcher(
            pattern=r"\b429\b[\s:-]*too many requests|(?:status(?: code)?|HTTP|response)[:\s]+429\b"
            r"|\b429\b.*rate limit",
            keywords=("429",),
            examples=(
                "failed to copy: httpReadSeeker: failed open: unexpected status code "
                "https://registry-1.docker.io/v2/library/node/manifests/sha256:ab: 429 Too Many "
                "Requests",
                "Error: initializing source docker://127.0.0.1:5000/x:1: reading manifest 1 in "
                "127.0.0.1:5000/x: received unexpected HTTP status: 429 Too Many Requests",
            ),
        ),
    ),
    cause="The registry{host} refused with HTTP 429 (too many requests): its rate limit "
    "for this client was reached.",
    remedy="Wait and retry, authenticate (authenticated clients get higher limits), or pull "
    "through a mirror or a cache of the base images.",
    other_backend_helps=False,
    retryable=True,
    transient=True,
    defaults={"limit_text": ""},
    enrich=_names,
    variants=(
        Variant(
            name="docker-hub",
            title="Docker Hub rate limit (HTTP 429)",
            when=_docker_hub,
            cause="Docker Hub's pull rate limit was reached (HTTP 429 toomanyrequests): anonymous "
            "pulls are limited per IP address, and a cluster's nodes share one.",
            remedy="Log in to Docker Hub (`docker login`; anybuild reads ~/.docker/config.json), "
            "use a registry mirror or a copy of the base image in your own registry, or wait.",
        ),
        Variant(
            name="ghcr",
            title="GHCR rate limit (HTTP 429)",
            when=_registry_is("ghcr.io"),
            cause="GitHub Container Registry rate-limited the client (HTTP 429).",
            remedy="Authenticate with a token (GITHUB_TOKEN in Actions), reduce parallel pulls, "
            "or wait and retry.",
        ),
    ),
)

_AUTH_EXAMPLES_PULL = (
    "Error response from daemon: pull access denied for 127.0.0.1:5000/private/app, "
    "repository does not exist or may require 'docker login': denied: requested access to the "
    "resource is denied",
)


def _auth_matchers(phase: Phase) -> tuple[Matcher, ...]:
    verb = phase.value
    return (
        Matcher(
            pattern=r"\bunauthorized\b|\b401 Unauthorized\b|authentication required"
            r"|failed to (?:authorize|fetch (?:anonymous|oauth) token)|no basic auth credentials",
            keywords=("unauthorized", "401", "authentication required", "authorize", "basic auth"),
            examples=(f"Error: {verb}: unauthorized: authentication required",),
            phase=phase,
        ),
        Matcher(
            pattern=r"(?<!permission )\bdenied: |access to the resource is denied|\b403\W{1,2}Forbidden\b"
            r"|insufficient_scope|error parsing HTTP 403 response body",
            keywords=("denied", "403", "insufficient_scope"),
            examples=(f"{verb}: denied: requested access to the resource is denied",),
            phase=phase,
        ),
    )


AUTH_PULL = Rule(
    id="registry-auth-pull",
    title="Registry refused the pull (401/403)",
    category=Category.REGISTRY,
    rank=72,
    matchers=(
        Matcher(
            pattern=r"pull access denied for (?P<image>[^,\s]+)",
            keywords=("pull access denied",),
            examples=_AUTH_EXAMPLES_PULL,
        ),
        *_auth_matchers(Phase.PULL),
    ),
    cause="The registry{host} refused the pull{of_image}: no credentials, wrong ones, or no "
    "read access (a private or misspelled repository looks the same).",
    remedy="Check the image name, then log in (`docker login{host}`; anybuild reads "
    "~/.docker/config.json and credential helpers) with an account that can read it.",
    other_backend_helps=False,
    enrich=_names,
)

AUTH_PUSH = Rule(
    id="registry-auth-push",
    title="Registry refused the push (401/403)",
    category=Category.REGISTRY,
    rank=74,
    matchers=_auth_matchers(Phase.PUSH),
    cause="The registry{host} refused the push: the credentials are missing, wrong, or "
    "lack write access to the repository.",
    remedy="Log in with an account or token that may push there (`docker login{host}`), "
    "and check the repository name in the tag.",
    other_backend_helps=False,
    enrich=_names,
)

GHCR_PERMISSION = Rule(
    id="ghcr-package-permission",
    title="GHCR: token may not write this package",
    category=Category.REGISTRY,
    rank=86,
    matchers=(
        Matcher(
            pattern=r"permission_denied: (?P<detail>write_package|The token provided does not "
            r"match expected scopes)|installation not allowed to (?:Write|Create) organization "
            r"package",
            keywords=("permission_denied", "installation not allowed"),
            examples=(
                "#15 ERROR: denied: permission_denied: write_package",
                "denied: installation not allowed to Write organization package",
            ),
        ),
    ),
    cause="GitHub Container Registry refused the push: the token may not write this package "
    "(the workflow lacks `packages: write`, or the package is not linked to this repository).",
    remedy="Give the job `permissions: packages: write`; in the package's settings, under "
    "\"Manage Actions access\", add this repository with the Write role (or link the package "
    "to the repository); or push with a token that has write:packages.",
    other_backend_helps=False,
    suppresses=("registry-auth-push", "registry-auth-pull"),
)

KANIKO_PUSH = Rule(
    id="kaniko-push-permission",
    title="Kaniko's push-permission check failed",
    category=Category.REGISTRY,
    rank=86,
    matchers=(
        Matcher(
            pattern=r"error checking push permissions(?!.*dial tcp).*?(?:checking push permission for "
            r"\"(?P<image>[^\"]+)\")?(?:.*?(?P<status>\b[45]\d\d\b[^:]*|UNAUTHORIZED|DENIED))?",
            keywords=("checking push permission",),
            examples=(
                "error checking push permissions -- make sure you entered the correct tag name, "
                "and that you are authenticated correctly, and try again: checking push "
                'permission for "ghcr.io/acme/api:1": POST https://ghcr.io/v2/acme/api/blobs/'
                "uploads/: UNAUTHORIZED: authentication required",
            ),
        ),
    ),
    cause="Kaniko checks that it may push {image} before it builds, and the registry said no "
    "({status}).",
    remedy="Mount registry credentials at /kaniko/.docker/config.json (a docker-registry "
    "secret), check the destination's spelling, or pass --no-push to build without pushing.",
    other_backend_helps=False,
    defaults={"image": "the destination", "status": "refused"},
    suppresses=("registry-auth-push", "registry-auth-pull"),
)

REGISTRY_TLS = Rule(
    id="registry-tls",
    title="Registry TLS / certificate error",
    category=Category.REGISTRY,
    rank=75,
    matchers=(
        Matcher(
            pattern=r"x509: (?P<detail>certificate signed by unknown authority|certificate is "
            r"valid for [^,\"]+|certificate has expired|cannot validate certificate[^,\"]*|"
            r"certificate relies on legacy Common Name)",
            keywords=("x509",),
            examples=(
                'Get "https://127.0.0.1:5443/v2/": tls: failed to verify certificate: x509: '
                "certificate signed by unknown authority",
            ),
        ),
        Matcher(
            pattern=r"(?P<plain>http: server gave HTTP response to HTTPS client)|first record does not look "
            r"like a TLS handshake|SSL certificate problem|tls: handshake failure",
            keywords=("https client", "tls handshake", "ssl certificate", "handshake failure"),
            examples=(
                'Error: pinging container registry 127.0.0.1:5000: Get "https://127.0.0.1:5000/v2/": '
                "http: server gave HTTP response to HTTPS client",
            ),
        ),
    ),
    cause="The TLS connection to the registry{host} failed: {detail}.",
    remedy="Trust the registry's CA (copy it to /etc/docker/certs.d/HOST/ca.crt, or the "
    "system store), or, for a plain-HTTP registry, declare it insecure (dockerd "
    "--insecure-registry, registries.conf `insecure = true`, anybuild.toml `insecure = true`).",
    other_backend_helps=False,
    defaults={"detail": "the certificate was not accepted"},
    enrich=_names,
    variants=(
        Variant(
            name="plain-http",
            when=lambda ctx: "plain" in ctx.fields,
            cause="The client spoke HTTPS to the registry{host}, which answers plain HTTP (or the "
            "other way round).",
            remedy="Declare the registry insecure (dockerd --insecure-registry HOST, "
            "registries.conf `insecure = true`, anybuild.toml `insecure = true`), or serve it "
            "with TLS.",
        ),
    ),
)

NETWORK_DNS = Rule(
    id="network-dns",
    title="DNS or network failure",
    category=Category.NETWORK,
    rank=70,
    matchers=(
        Matcher(
            pattern=r"Temporary failure (?:in name resolution|resolving '(?P<host>[^']+)')"
            r"|Could not resolve (?:host:?\s*)?'?(?P<host2>[\w.-]+)",
            keywords=("temporary failure", "could not resolve"),
            examples=(
                "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  "
                "Temporary failure resolving 'deb.debian.org'",
                "curl: (6) Could not resolve host: example.invalid",
            ),
        ),
        Matcher(
            pattern=r"getaddrinfo (?:EAI_AGAIN|ENOTFOUND)\s*(?P<host>[\w.-]+)?|bad address "
            r"'(?P<host2>[^']+)'|lookup (?P<host3>[\w.-]+)(?: on \S+)?: (?:.*?)(?:no such host|server "
            r"misbehaving|i/o timeout)|Name or service not known|Name does not resolve"
            r"|dial tcp [\d.]+:\d+: (?:i/o timeout|connect: (?:connection refused|no route to host))"
            r"|read udp \S+->\S+:53: i/o timeout"
            r"|read tcp \S+: read: connection timed out",
            keywords=("getaddrinfo", "bad address", "lookup", "not known", "does not resolve", "dial tcp",
                      "read tcp", "read udp"),
            examples=(
                "npm ERR! request to https://registry.npmjs.org/x failed, reason: getaddrinfo "
                "EAI_AGAIN registry.npmjs.org",
                "wget: bad address 'example.invalid'",
            ),
        ),
        Matcher(
            pattern=r"no servers could be reached",
            keywords=("no servers",),
            examples=(";; connection timed out; no servers could be reached",),
        ),
        Matcher(
            pattern=r"Network is unreachable|No route to host",
            keywords=("unreachable", "no route"),
            examples=("wget: can't connect to remote host: Network is unreachable (connect failed)",),
        ),
    ),
    cause="A network lookup or connection failed ({host}): the build had no working DNS or "
    "route to the internet.",
    remedy="Check the network the build runs in: DNS (`--dns`, dockerd's daemon.json \"dns\", the "
    "pod's dnsPolicy), a proxy (HTTP_PROXY build args), or `--network host`; then retry. Another "
    "backend on the same network would fail the same way.",
    other_backend_helps=False,
    retryable=True,
    transient=True,
    enrich=lambda ctx: {
        "host": ctx.fields.get("host") or ctx.fields.get("host2") or ctx.fields.get("host3") or "a host"
    },
    explains=(RUN_NONZERO,),
)

REGISTRY_RULES: tuple[Rule, ...] = (
    GHCR_PERMISSION,
    KANIKO_PUSH,
    RATE_LIMIT,
    AUTH_PULL,
    AUTH_PUSH,
    REGISTRY_TLS,
    NETWORK_DNS,
)
