"""Access to remote builders and registries: Kubernetes, GitHub, registry credentials.

Presence only, never a secret's value; no network unless ``ctx.online``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, FactKey, FactValue, Topic, registry_credentials_key
from anybuild.errors import BackendError

__all__ = ["github_repository", "probe_access", "registry_credentials"]

_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_GITHUB_REMOTE = re.compile(r"github\.com[:/]([^/\s]+)/([^/\s]+?)(?:\.git)?/?$")
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


def _fact(key: str, value: FactValue, evidence: str) -> Fact:
    return Fact(key=key, value=value, evidence=evidence, topic=Topic.ACCESS)


def probe_access(ctx: ProbeContext) -> list[Fact]:
    facts = [*_kubernetes(ctx), *_github(ctx)]
    facts += [registry_credentials(ctx, host) for host in ctx.registries]
    if ctx.online:
        facts += [_kube_online(ctx, facts), *_github_online(ctx, facts)]
    return facts


def _kube_online(ctx: ProbeContext, facts: list[Fact]) -> Fact:
    known = {f.key: f.value for f in facts}
    if known.get(FactKey.KUBE_CREDENTIALS) is None:
        return _fact(FactKey.KUBE_CAN_CREATE_JOBS, None, "no Kubernetes credentials")
    kubectl = ctx.which("kubectl")
    if kubectl is None:
        return _fact(FactKey.KUBE_CAN_CREATE_JOBS, None, "kubectl not on PATH")
    namespace = str(known.get(FactKey.KUBE_NAMESPACE) or "default")
    argv = [kubectl, "auth", "can-i", "create", "jobs", "--namespace", namespace, "--request-timeout=3s"]
    command = f"kubectl auth can-i create jobs --namespace {namespace}"
    try:
        done = ctx.runner.run(argv, env=ctx.env, timeout=4.0)
    except BackendError as exc:
        return _fact(FactKey.KUBE_CAN_CREATE_JOBS, None, f"{command}: {exc.message}")
    answer = (done.output.strip().splitlines() or [""])[0]
    if answer in ("yes", "no"):
        return _fact(FactKey.KUBE_CAN_CREATE_JOBS, answer == "yes", f"{command}: {answer}")
    return _fact(FactKey.KUBE_CAN_CREATE_JOBS, None, f"{command}: exit {done.returncode} {answer[:160]}")


def _github_online(ctx: ProbeContext, facts: list[Fact]) -> list[Fact]:
    """What GitHub's API says about the token, the repository, the workflow and Actions (doctor --online)."""
    from anybuild.backends.github.probe import probe_github_online  # the REST client: --online only

    return probe_github_online(ctx, {f.key: f.value for f in facts})


def _kubernetes(ctx: ProbeContext) -> list[Fact]:
    token = ctx.path(f"{_SA_DIR}/token")
    if token.exists() and ctx.env.get("KUBERNETES_SERVICE_HOST"):
        namespace = (ctx.read(f"{_SA_DIR}/namespace") or "").strip() or "default"
        return [
            _fact(FactKey.KUBE_CREDENTIALS, "in-cluster", f"{_SA_DIR}/token and KUBERNETES_SERVICE_HOST"),
            _fact(FactKey.KUBE_NAMESPACE, namespace, f"{_SA_DIR}/namespace"),
        ]
    configs = [Path(p) for p in ctx.env.get("KUBECONFIG", "").split(":") if p]
    source = "KUBECONFIG" if configs else "default"
    configs = configs or [ctx.home / ".kube" / "config"]
    present = [p for p in configs if p.is_file()]
    if not present:
        where = ", ".join(str(p) for p in configs)
        return [
            _fact(FactKey.KUBE_CREDENTIALS, None, f"no service account token; no kubeconfig at {where}"),
            _fact(FactKey.KUBE_NAMESPACE, None, "no credentials"),
        ]
    namespace, evidence = _kube_namespace(ctx, present[0])
    return [
        _fact(FactKey.KUBE_CREDENTIALS, "kubeconfig", f"{present[0]} ({source})"),
        _fact(FactKey.KUBE_NAMESPACE, namespace, evidence),
    ]


def _kube_namespace(ctx: ProbeContext, config: Path) -> tuple[str, str]:
    kubectl = ctx.which("kubectl")
    if kubectl is None:
        return "default", f"kubectl not on PATH; {config} not parsed; assuming default"
    argv = [kubectl, "config", "view", "--minify", "-o", "jsonpath={..namespace}"]
    try:
        done = ctx.runner.run(argv, env=ctx.env, timeout=ctx.timeout)
    except BackendError as exc:
        return "default", f"kubectl config view: {exc.message}"
    namespace = done.stdout.strip() if done.ok else ""
    return (namespace or "default"), "kubectl config view --minify: current context's namespace"


def github_repository(cwd: Path) -> tuple[str | None, str]:
    """owner/name of the github.com 'origin' remote of the repository holding *cwd*."""
    for directory in (cwd, *cwd.parents):
        config = directory / ".git" / "config"
        try:
            text = config.read_text()
        except OSError:
            continue
        section = re.search(r'(?ms)^\[remote "origin"\](.*?)(?=^\[|\Z)', text)
        url_match = re.search(r"(?m)^\s*url\s*=\s*(\S+)", section.group(1)) if section else None
        if url_match is None:
            return None, f"{config}: no origin remote"
        found = _GITHUB_REMOTE.search(url_match.group(1))
        if found is None:
            return None, f"{config}: origin is not on github.com"
        return f"{found.group(1)}/{found.group(2)}", f"{config}: remote origin"
    return None, f"no git repository at or above {cwd}"


def _github(ctx: ProbeContext) -> list[Fact]:
    from anybuild.backends.github.token import gh_hosts_file  # a small module: paths only

    names = [v for v in ("GH_TOKEN", "GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN")
             if ctx.env.get(v)]
    if names:
        token = _fact(FactKey.GITHUB_TOKEN, True, f"{names[0]} is set (value not shown)")
    else:
        hosts = gh_hosts_file(ctx.env)
        try:  # the hosts gh is logged in to are the top-level keys ("github.com:", "ghe.example.com:")
            logged_in = bool(re.search(r"(?m)^[^\s#][^\s]*:\s*$", hosts.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            logged_in = False
        token = _fact(FactKey.GITHUB_TOKEN, logged_in,
                      f"gh is logged in ({hosts}; token not read)" if logged_in
                      else f"GH_TOKEN and GITHUB_TOKEN unset, gh not logged in (no {hosts})")
    if ctx.github is not None and ctx.github.repository:
        return [token, _fact(FactKey.GITHUB_REPOSITORY, ctx.github.repository,
                             "anybuild.toml [backend.github] repository")]
    repo_env = ctx.env.get("GITHUB_REPOSITORY")
    if repo_env:
        return [token, _fact(FactKey.GITHUB_REPOSITORY, repo_env, "GITHUB_REPOSITORY")]
    repo, evidence = github_repository(ctx.cwd)
    return [token, _fact(FactKey.GITHUB_REPOSITORY, repo, evidence)]


def _auth_files(ctx: ProbeContext) -> list[Path]:
    files = [Path(ctx.env.get("DOCKER_CONFIG") or ctx.home / ".docker") / "config.json"]
    if ctx.env.get("REGISTRY_AUTH_FILE"):
        files.insert(0, Path(ctx.env["REGISTRY_AUTH_FILE"]))
    if ctx.env.get("XDG_RUNTIME_DIR"):
        files.append(Path(ctx.env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(ctx.home / ".config" / "containers" / "auth.json")
    return files


def registry_credentials(ctx: ProbeContext, host: str) -> Fact:
    """Whether credentials for *host* are configured (a file entry or a helper); never the value."""
    keys: tuple[str, ...] = (host, f"https://{host}", f"http://{host}")
    if host in _DOCKER_HUB_KEYS:
        keys += _DOCKER_HUB_KEYS
    for path in _auth_files(ctx):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        auths = data.get("auths")
        auths = auths if isinstance(auths, dict) else {}
        helpers = data.get("credHelpers")
        helpers = helpers if isinstance(helpers, dict) else {}
        for key in keys:
            if key in auths:
                return _fact(registry_credentials_key(host), True, f"{path}: auths[{key!r}] (value not shown)")
            if key in helpers:
                return _fact(registry_credentials_key(host), True, f"{path}: credHelpers[{key!r}]")
        if isinstance(data.get("credsStore"), str):
            store = data["credsStore"]
            return _fact(registry_credentials_key(host), None, f"{path}: credsStore {store} (not queried)")
    where = ", ".join(str(p) for p in _auth_files(ctx))
    return _fact(registry_credentials_key(host), False, f"no entry for {host} in {where}")
